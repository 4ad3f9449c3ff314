"""Validation with FastAPI / pydantic v2 style errors, for the platform dialect.

Errors are a list of ``{"loc": [...], "msg": ..., "type": ..., "input": ...}`` where ``loc`` starts with
``"body"``, ``"query"`` or ``"path"``; :class:`Unprocessable` carries them to a 422 answer. Checkers
are ``check(value, loc, errors) -> value`` and return :data:`MISSING` after recording an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "MISSING",
    "Checker",
    "ErrorList",
    "Loc",
    "PField",
    "Unprocessable",
    "add",
    "boolean",
    "datetime_text",
    "integer",
    "list_of",
    "literal",
    "model",
    "nullable",
    "number",
    "obj",
    "string",
]

Loc = tuple[str | int, ...]
ErrorList = list[dict[str, Any]]
Checker = Callable[[Any, Loc, ErrorList], Any]


class Unprocessable(Exception):
    """A 422 answer: ``errors`` is the ``detail`` list."""

    def __init__(self, errors: ErrorList) -> None:
        super().__init__(errors)
        self.errors = errors


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def add(errors: ErrorList, loc: Loc, msg: str, type_: str, value: Any = MISSING) -> Any:
    error: dict[str, Any] = {"loc": list(loc), "msg": msg, "type": type_}
    if value is not MISSING:
        error["input"] = value
    errors.append(error)
    return MISSING


def string(
    *, min_length: int | None = None, max_length: int | None = None, pattern: str | None = None
) -> Checker:
    compiled = re.compile(pattern) if pattern is not None else None

    def check(value: Any, loc: Loc, errors: ErrorList) -> Any:
        if not isinstance(value, str):
            return add(errors, loc, "Input should be a valid string", "string_type", value)
        if min_length is not None and len(value) < min_length:
            plural = "character" if min_length == 1 else "characters"
            return add(
                errors, loc, f"String should have at least {min_length} {plural}", "string_too_short", value
            )
        if max_length is not None and len(value) > max_length:
            return add(
                errors, loc, f"String should have at most {max_length} characters", "string_too_long", value
            )
        if compiled is not None and compiled.search(value) is None:
            return add(
                errors, loc, f"String should match pattern '{pattern}'", "string_pattern_mismatch", value
            )
        return value

    return check


def _bounds(value: float, loc: Loc, errors: ErrorList, ge: float | None, le: float | None) -> bool:
    if ge is not None and value < ge:
        add(errors, loc, f"Input should be greater than or equal to {ge:g}", "greater_than_equal", value)
        return False
    if le is not None and value > le:
        add(errors, loc, f"Input should be less than or equal to {le:g}", "less_than_equal", value)
        return False
    return True


def integer(*, ge: int | None = None, le: int | None = None, from_text: bool = False) -> Checker:
    """An integer (an integral float too); ``from_text`` parses query and path strings."""

    def check(value: Any, loc: Loc, errors: ErrorList) -> Any:
        result: int
        if from_text and isinstance(value, str):
            text = value.strip()
            if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
                return add(
                    errors,
                    loc,
                    "Input should be a valid integer, unable to parse string as an integer",
                    "int_parsing",
                    value,
                )
            result = int(text)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return add(errors, loc, "Input should be a valid integer", "int_type", value)
        elif isinstance(value, float):
            if not value.is_integer():
                return add(
                    errors,
                    loc,
                    "Input should be a valid integer, got a number with a fractional part",
                    "int_from_float",
                    value,
                )
            result = int(value)
        else:
            result = value
        return result if _bounds(result, loc, errors, ge, le) else MISSING

    return check


def number(*, ge: float | None = None, le: float | None = None) -> Checker:
    def check(value: Any, loc: Loc, errors: ErrorList) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return add(errors, loc, "Input should be a valid number", "float_type", value)
        return float(value) if _bounds(float(value), loc, errors, ge, le) else MISSING

    return check


_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})


def boolean(*, from_text: bool = False) -> Checker:
    def check(value: Any, loc: Loc, errors: ErrorList) -> Any:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            return add(
                errors,
                loc,
                "Input should be a valid boolean, unable to interpret input",
                "bool_parsing",
                value,
            )
        return add(errors, loc, "Input should be a valid boolean", "bool_type", value)

    return check


def literal(choices: tuple[str, ...]) -> Checker:
    shown = ", ".join(f"'{choice}'" for choice in choices[:-1])
    message = (
        f"Input should be {shown} or '{choices[-1]}'"
        if len(choices) > 1
        else f"Input should be '{choices[0]}'"
    )

    def check(value: Any, loc: Loc, errors: ErrorList) -> Any:
        if not isinstance(value, str) or value not in choices:
            return add(errors, loc, message, "literal_error", value)
        return value

    return check


def datetime_text(*, aware: bool = False) -> Checker:
    """An ISO 8601 date-time string -> POSIX seconds (naive means UTC unless ``aware`` is required)."""

    def check(value: Any, loc: Loc, errors: ErrorList) -> Any:
        if not isinstance(value, str):
            return add(errors, loc, "Input should be a valid datetime", "datetime_type", value)
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
        except ValueError:
            return add(
                errors, loc, "Input should be a valid datetime, invalid format", "datetime_parsing", value
            )
        if parsed.tzinfo is None:
            if aware:
                return add(errors, loc, "Input should have timezone info", "timezone_aware", value)
            parsed = parsed.replace(tzinfo=datetime.now().astimezone().tzinfo)
        try:
            return parsed.timestamp()
        except (OverflowError, ValueError):
            return add(
                errors, loc, "Input should be a valid datetime, invalid format", "datetime_parsing", value
            )

    return check


def obj() -> Checker:
    """Any JSON object."""

    def check(value: Any, loc: Loc, errors: ErrorList) -> Any:
        if not isinstance(value, dict):
            return add(errors, loc, "Input should be a valid dictionary", "dict_type", value)
        return value

    return check


def list_of(item: Checker, *, min_items: int | None = None) -> Checker:
    def check(value: Any, loc: Loc, errors: ErrorList) -> Any:
        if not isinstance(value, list):
            return add(errors, loc, "Input should be a valid list", "list_type", value)
        result = [item(element, (*loc, index), errors) for index, element in enumerate(value)]
        if any(element is MISSING for element in result):
            return MISSING
        if min_items is not None and len(result) < min_items:
            plural = "item" if min_items == 1 else "items"
            return add(
                errors,
                loc,
                f"List should have at least {min_items} {plural} after validation, not {len(result)}",
                "too_short",
                value,
            )
        return result

    return check


def nullable(inner: Checker) -> Checker:
    def check(value: Any, loc: Loc, errors: ErrorList) -> Any:
        return None if value is None else inner(value, loc, errors)

    return check


@dataclass(frozen=True)
class PField:
    """One field of a model: its checker, whether it is required, its default otherwise."""

    checker: Checker
    required: bool = False
    default: Callable[[], Any] | None = None


def model(
    fields: Mapping[str, PField],
    *,
    extra: Literal["ignore", "forbid"] = "ignore",
    fill_defaults: bool = False,
) -> Checker:
    """An object validated field by field. Unknown keys are dropped (``ignore``) or errors
    (``forbid``); ``fill_defaults`` gives omitted fields their default."""

    def check(value: Any, loc: Loc, errors: ErrorList) -> Any:
        if not isinstance(value, dict):
            return add(
                errors,
                loc,
                "Input should be a valid dictionary or object to extract fields from",
                "model_attributes_type",
                value,
            )
        result: dict[str, Any] = {}
        failed = False
        for key, spec in fields.items():
            if key in value:
                checked = spec.checker(value[key], (*loc, key), errors)
                if checked is MISSING:
                    failed = True
                else:
                    result[key] = checked
            elif spec.required:
                add(errors, (*loc, key), "Field required", "missing", value)
                failed = True
            elif fill_defaults and spec.default is not None:
                result[key] = spec.default()
        if extra == "forbid":
            for key in value:
                if key not in fields:
                    add(errors, (*loc, key), "Extra inputs are not permitted", "extra_forbidden", value[key])
                    failed = True
        return MISSING if failed else result

    return check


def validate(checker: Checker, value: Any, loc: Loc) -> Any:
    """``checker(value)`` or :class:`Unprocessable` with every error found."""
    errors: ErrorList = []
    result = checker(value, loc, errors)
    if errors or result is MISSING:
        raise Unprocessable(errors or [{"loc": list(loc), "msg": "Invalid input", "type": "value_error"}])
    return result
