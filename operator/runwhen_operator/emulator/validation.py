"""Request-body validation with Django REST Framework style field errors.

Errors are collected into a flat field map ``{"path": ["message", ...]}``. Nested fields use dotted
paths with list indexes (``definition.fromActivities.0.name``); errors that belong to no field go under
``non_field_errors``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NON_FIELD",
    "Errors",
    "Field",
    "Invalid",
    "Validator",
    "bool_field",
    "dns_label",
    "duration",
    "enum",
    "integer",
    "is_dns_label",
    "list_of",
    "nested",
    "number",
    "object_field",
    "parse_body",
    "string",
    "string_list",
    "type_name",
]

NON_FIELD = "non_field_errors"

Errors = dict[str, list[str]]
Validator = Callable[[Any, str, Errors], Any]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d))+$")

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
UNKNOWN = "Unknown field."


class Invalid(Exception):
    """A 400 answer: ``errors`` is the field map to send."""

    def __init__(self, errors: Errors) -> None:
        super().__init__(errors)
        self.errors = errors


class _Missing:
    """Marks a value that failed validation (the error is already recorded)."""


MISSING: Any = _Missing()


def add_error(errors: Errors, path: str, message: str) -> Any:
    errors.setdefault(path or NON_FIELD, []).append(message)
    return MISSING


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "str"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


def is_dns_label(value: str) -> bool:
    return 1 <= len(value) <= 63 and _DNS_LABEL.match(value) is not None


# --- leaf validators ----------------------------------------------------------------------------


def string(*, allow_blank: bool = True, max_length: int | None = None) -> Validator:
    def check(value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            return add_error(errors, path, "Not a valid string.")
        if not allow_blank and not value.strip():
            return add_error(errors, path, "This field may not be blank.")
        if max_length is not None and len(value) > max_length:
            return add_error(errors, path, f"Ensure this field has no more than {max_length} characters.")
        return value

    return check


def dns_label() -> Validator:
    def check(value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            return add_error(errors, path, "Not a valid string.")
        if not is_dns_label(value):
            return add_error(
                errors,
                path,
                "Enter a valid DNS label: 1 to 63 lowercase letters, digits or '-', "
                "starting and ending with a letter or digit.",
            )
        return value

    return check


def duration() -> Validator:
    def check(value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            return add_error(errors, path, "Not a valid string.")
        if _DURATION.match(value) is None:
            return add_error(errors, path, "Enter a valid duration such as '20m', '1h' or '1h30m'.")
        return value

    return check


def bool_field() -> Validator:
    def check(value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, bool):
            return add_error(errors, path, "Must be a valid boolean.")
        return value

    return check


def number(
    *, minimum: float | None = None, maximum: float | None = None, exclusive_minimum: bool = False
) -> Validator:
    def check(value: Any, path: str, errors: Errors) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return add_error(errors, path, "A valid number is required.")
        result = float(value)
        if not math.isfinite(result):
            return add_error(errors, path, "A valid number is required.")
        if minimum is not None:
            if exclusive_minimum and result <= minimum:
                return add_error(errors, path, f"Ensure this value is greater than {minimum:g}.")
            if result < minimum:
                return add_error(errors, path, f"Ensure this value is greater than or equal to {minimum:g}.")
        if maximum is not None and result > maximum:
            return add_error(errors, path, f"Ensure this value is less than or equal to {maximum:g}.")
        return result

    return check


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Validator:
    def check(value: Any, path: str, errors: Errors) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return add_error(errors, path, "A valid integer is required.")
        if minimum is not None and value < minimum:
            return add_error(errors, path, f"Ensure this value is greater than or equal to {minimum}.")
        if maximum is not None and value > maximum:
            return add_error(errors, path, f"Ensure this value is less than or equal to {maximum}.")
        return value

    return check


def enum(choices: tuple[str, ...]) -> Validator:
    def check(value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, str) or value not in choices:
            shown = value if isinstance(value, str) else type_name(value)
            return add_error(errors, path, f'"{shown}" is not a valid choice (one of {", ".join(choices)}).')
        return value

    return check


def object_field(values: Validator | None = None) -> Validator:
    """A JSON object; ``values`` validates every value (keys are always strings in JSON)."""

    def check(value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, dict):
            return add_error(
                errors, path, f'Expected a dictionary of items but got type "{type_name(value)}".'
            )
        if values is None:
            return value
        result: dict[str, Any] = {}
        failed = False
        for key, item in value.items():
            checked = _check_value(values, item, f"{path}.{key}", errors)
            if checked is MISSING:
                failed = True
            result[key] = checked
        return MISSING if failed else result

    return check


def list_of(item: Validator) -> Validator:
    def check(value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, list):
            return add_error(errors, path, f'Expected a list of items but got type "{type_name(value)}".')
        result = []
        failed = False
        for index, element in enumerate(value):
            checked = _check_value(item, element, f"{path}.{index}", errors)
            if checked is MISSING:
                failed = True
            result.append(checked)
        return MISSING if failed else result

    return check


def string_list() -> Validator:
    return list_of(string())


def nested(fields: Mapping[str, Field], *, ignore: frozenset[str] = frozenset()) -> Validator:
    """A nested object validated field by field; given keys are kept as they are, nothing is added."""

    def check(value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, dict):
            return add_error(
                errors, path, f'Expected a dictionary of items but got type "{type_name(value)}".'
            )
        return _parse_fields(value, fields, ignore, path, errors, fill_defaults=False)

    return check


# --- objects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One writable field: its validator, whether a create needs it, and its default otherwise."""

    validator: Validator
    required: bool = False
    default: Callable[[], Any] | None = None
    nullable: bool = False


def _check_value(validator: Validator, value: Any, path: str, errors: Errors) -> Any:
    if value is None:
        return add_error(errors, path, NOT_NULL)
    return validator(value, path, errors)


def _parse_fields(
    body: Mapping[str, Any],
    fields: Mapping[str, Field],
    ignore: frozenset[str],
    prefix: str,
    errors: Errors,
    *,
    fill_defaults: bool,
    partial: bool = False,
) -> Any:
    result: dict[str, Any] = {}
    failed = False
    for key, value in body.items():
        path = f"{prefix}.{key}" if prefix else key
        if key in ignore:
            continue
        spec = fields.get(key)
        if spec is None:
            add_error(errors, path, UNKNOWN)
            failed = True
            continue
        if value is None and spec.nullable:
            result[key] = None
            continue
        checked = _check_value(spec.validator, value, path, errors)
        if checked is MISSING:
            failed = True
        else:
            result[key] = checked
    if not partial:
        for key, spec in fields.items():
            if key in body:
                continue
            path = f"{prefix}.{key}" if prefix else key
            if spec.required:
                add_error(errors, path, REQUIRED)
                failed = True
            elif fill_defaults and spec.default is not None:
                result[key] = spec.default()
    return MISSING if failed else result


def parse_body(
    body: Any,
    fields: Mapping[str, Field],
    *,
    read_only: frozenset[str] = frozenset(),
    partial: bool = False,
    fill_defaults: bool = True,
) -> dict[str, Any]:
    """Validate a write body. ``partial`` (PATCH) checks only the fields given; otherwise required
    fields must be present and, with ``fill_defaults`` (POST and PUT), omitted ones take their default.
    Read-only fields are ignored. Raises :class:`Invalid` with every error found."""
    errors: Errors = {}
    if not isinstance(body, dict):
        raise Invalid({NON_FIELD: [f"Invalid data. Expected a dictionary, but got {type_name(body)}."]})
    result = _parse_fields(body, fields, read_only, "", errors, fill_defaults=fill_defaults, partial=partial)
    if errors or result is MISSING:
        raise Invalid(errors or {NON_FIELD: ["Invalid data."]})
    assert isinstance(result, dict)
    return result
