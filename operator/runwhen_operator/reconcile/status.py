"""The status recorder: what a status subresource write sends, decided without any I/O.

``record(current_status, desired, model)`` is the one call a handler makes before writing a status:
it returns the JSON merge patch (RFC 7386) to send, and ``{}`` when there is nothing to write (an
idle resync makes no write at all). It is ``status_patch(current_status, clamp(model, desired))``:

``clamp(model, desired)``
    Fits remote values into the bounded status schema, so that one oversized value never gets the
    whole patch rejected (422) at every check. It walks ``desired`` with the field metadata of the
    pydantic status model (the source of the CRD schema, see ``runwhen_operator.crdgen``), by the
    camelCase wire names:

    - a string longer than its ``max_length`` is cut with ``"..."`` (``truncate``); a string with a
      ``pattern`` (names, reasons, condition types) is an identifier, so it is never marked: it is cut
      to the longest prefix within ``max_length`` that still matches the pattern;
    - a list is cut to its ``max_length`` items (the first ones: order means rank); a map to its
      ``max_length`` keys (the first ones in key order, so the choice does not depend on the order the
      server sent them in); items and entries that cannot be made valid are left out;
    - a number is clamped into ``ge``/``le`` (``gt``/``lt``); an integral float of an integer field
      becomes an int, a numeric string a number; NaN is never valid, infinity only where bounded;
    - a number given for a string field becomes its text;
    - an enum (``Literal``) value matches its members case-insensitively (``"healthy"`` is
      ``Healthy``); an unmatched value is ``Unknown`` where that is a member;
    - a timestamp is written as Kubernetes writes times (``format_time``: RFC 3339, UTC, seconds);
    - nested models are clamped the same way, and get the defaults the CRD schema would give them
      (``message: ""`` of a condition) so that the object read back equals what was sent;
    - a value that still cannot be made valid (unparseable time, a bool for a number...) is dropped
      when its field is optional and kept, for validation to report, when it is required;
    - unknown keys, ``None`` values and free-form (``Any``) values are left as they are.

``status_patch(current, desired)``
    The merge patch from the current status to the desired one:

    - the top-level keys of ``desired`` are the keys its writer owns: keys it does not name are left
      as they are, and a key whose desired value is ``None`` is removed;
    - below the top level a desired value is complete: a key it lacks (or holds as ``None``), at any
      depth, is removed with ``null`` (``status.health.details`` that disappears, a key of
      ``status.openIssues`` gone), and unchanged keys are not sent;
    - lists are replaced whole when they differ;
    - ``conditions`` compare by type without ``lastTransitionTime``: re-stating an unchanged
      condition is no change;
    - ``True`` is not ``1`` and ``1`` is ``1.0``, as in JSON.

``merge_patch`` (a plain RFC 7386 diff of two whole documents) and ``apply_patch`` (RFC 7386
application, to keep a local copy of an object in step with a patch just sent) are the two halves
underneath. ``truncate``, ``now`` and ``format_time`` are the package's one text cutter and one
clock and time format for statuses.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
import types
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from runwhen_operator.runwhen import models

__all__ = [
    "DEFAULT_LIMIT",
    "ELLIPSIS",
    "apply_patch",
    "clamp",
    "format_time",
    "merge_patch",
    "now",
    "record",
    "same_conditions",
    "status_patch",
    "truncate",
]

Body = dict[str, Any]

#: What marks a cut string.
ELLIPSIS = "..."
#: The default limit of ``truncate`` (messages of conditions and events).
DEFAULT_LIMIT = 1024

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_CONDITIONS = "conditions"
_TRANSITION = "lastTransitionTime"
_UNKNOWN = "Unknown"


# --- text and time ------------------------------------------------------------------------------


def truncate(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked with ``"..."``.

    The result is never longer than ``limit`` (a limit under 3 cuts without a mark), and a text
    already within the limit comes back unchanged, so truncating twice is truncating once.
    """
    limit = max(limit, 0)
    if len(text) <= limit:
        return text
    if limit < len(ELLIPSIS):
        return text[:limit]
    return text[: limit - len(ELLIPSIS)] + ELLIPSIS


def now() -> str:
    """The current time as a status writes it (``2026-03-01T12:00:00Z``)."""
    return datetime.now(UTC).strftime(_TIME_FORMAT)


def format_time(value: Any) -> str | None:
    """A timestamp (datetime or RFC 3339 text) as the status writes it, or None.

    RFC 3339 in UTC with second precision; a naive time is taken as UTC; None for an empty or
    unreadable value.
    """
    parsed = models.parse_time(value)
    return parsed.astimezone(UTC).strftime(_TIME_FORMAT) if parsed else None


# --- merge patches ------------------------------------------------------------------------------


def merge_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> Body:
    """The RFC 7386 merge patch that turns the whole document ``current`` into ``desired``.

    Recursive for objects, ``null`` for every key ``desired`` lacks (or holds as ``None``) at any
    depth, lists and scalars replaced whole when they differ, nothing for what is equal; ``{}`` when
    the two are the same. ``None`` inside a list of ``desired`` is left out (JSON merge patches
    cannot write a null there).
    """
    patch: Body = {}
    for key, old in current.items():
        if old is not None and desired.get(key) is None:
            patch[key] = None
    for key, value in desired.items():
        if value is None:
            continue
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            sub = merge_patch(old, value)
            if sub:
                patch[key] = sub
        elif old is None or not _same(old, value):
            patch[key] = _pruned(value)
    return patch


def apply_patch(target: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> Body:
    """``target`` with the RFC 7386 merge patch applied (a new dict; neither input is changed)."""
    out: Body = dict(target or {})
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            old = out.get(key)
            out[key] = apply_patch(old if isinstance(old, Mapping) else None, value)
        else:
            out[key] = _pruned(value)
    return out


def same_conditions(current: Any, desired: Any) -> bool:
    """Two ``conditions`` lists say the same: the same types, each with the same fields apart from
    ``lastTransitionTime`` (order does not matter; ``None`` fields count as absent)."""
    old, new = _conditions_by_type(current), _conditions_by_type(desired)
    return old is not None and new is not None and old.keys() == new.keys() and _same(old, new)


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> Body:
    """The merge patch that turns ``current`` into ``desired`` on the top-level keys ``desired`` names.

    A top-level key whose desired value is ``None`` is removed; below the top level ``desired`` is
    complete (see the module docstring). Conditions compare without ``lastTransitionTime``.
    """
    current = current or {}
    target: Body = dict(current)
    for key, value in desired.items():
        if value is None:
            target.pop(key, None)
        elif key == _CONDITIONS and same_conditions(current.get(key), value):
            continue
        else:
            target[key] = value
    return merge_patch(current, target)


def record(
    current_status: Mapping[str, Any] | None, desired: Mapping[str, Any], model: type[BaseModel]
) -> Body:
    """The status patch to send: ``desired`` clamped to ``model``'s bounds, diffed against the current
    status; ``{}`` when nothing changed."""
    return status_patch(current_status, clamp(model, desired))


def _conditions_by_type(conditions: Any) -> dict[Any, Any] | None:
    if conditions is None:
        conditions = []
    if not isinstance(conditions, list | tuple) or not all(isinstance(c, Mapping) for c in conditions):
        return None
    by_type = {c.get("type"): {k: v for k, v in c.items() if k != _TRANSITION} for c in conditions}
    return by_type if len(by_type) == len(conditions) else None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``None`` fields and items are absent, booleans are not numbers, ints equal floats."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = {k for k, v in a.items() if v is not None}
        if keys != {k for k, v in b.items() if v is not None}:
            return False
        return all(_same(a[k], b[k]) for k in keys)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        a = [x for x in a if x is not None]
        b = [y for y in b if y is not None]
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b  # a StrEnum member is its text
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _pruned(value: Any) -> Any:
    """A deep copy of ``value`` without ``None`` (in objects and lists), tuples as lists."""
    if isinstance(value, Mapping):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_pruned(v) for v in value if v is not None]
    return copy.deepcopy(value)


# --- clamping -----------------------------------------------------------------------------------


class _Invalid:
    """A value that cannot be made to fit its field."""


_INVALID = _Invalid()


@dataclasses.dataclass(frozen=True)
class _Bounds:
    min_length: int | None = None
    max_length: int | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    pattern: str | None = None

    def merged(self, other: Any) -> _Bounds:
        """These bounds narrowed by one constraint object (annotated_types or pydantic metadata)."""
        changes: dict[str, Any] = {}
        for name in ("min_length", "ge", "gt"):
            value = _number_attr(other, name)
            if value is not None:
                old = getattr(self, name)
                changes[name] = value if old is None else max(old, value)
        for name in ("max_length", "le", "lt"):
            value = _number_attr(other, name)
            if value is not None:
                old = getattr(self, name)
                changes[name] = value if old is None else min(old, value)
        pattern = getattr(other, "pattern", None)
        if isinstance(pattern, str):
            changes["pattern"] = pattern
        return dataclasses.replace(self, **changes) if changes else self


def _number_attr(obj: Any, name: str) -> float | None:
    value = getattr(obj, name, None)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bounds_of(metadata: Iterable[Any], start: _Bounds | None = None) -> _Bounds:
    bounds = start or _Bounds()
    for item in metadata:
        # A Field() inside Annotated carries its constraints in its own metadata.
        bounds = _bounds_of(item.metadata, bounds) if isinstance(item, FieldInfo) else bounds.merged(item)
    return bounds


@dataclasses.dataclass(frozen=True)
class _Field:
    annotation: Any
    bounds: _Bounds
    required: bool
    #: The default the CRD schema gives an absent field, if any (``...`` when none).
    default: Any


@functools.cache
def _fields(model: type[BaseModel]) -> dict[str, _Field]:
    """The model's fields by wire name (the alias, else the field name)."""
    out: dict[str, _Field] = {}
    for name, info in model.model_fields.items():
        default: Any = ...
        if (
            info.default_factory is None
            and info.default is not PydanticUndefined
            and info.default is not None
            and isinstance(info.default, str | int | float | bool)
        ):
            default = info.default
        out[info.alias or name] = _Field(
            info.annotation, _bounds_of(info.metadata), info.is_required(), default
        )
    return out


def clamp(model: type[BaseModel], value: Mapping[str, Any]) -> Body:
    """``value`` (a status, or part of one, by wire names) fitted into ``model``'s bounds.

    The result validates against ``model`` (and so against the CRD schema made from it) whenever
    that is possible without inventing required values; see the module docstring for the rules.
    ``value`` is not changed.
    """
    return _clamp_model(model, value, fill_defaults=False)


def _clamp_model(model: type[BaseModel], value: Mapping[str, Any], *, fill_defaults: bool) -> Body:
    fields = _fields(model)
    out: Body = {}
    for key, item in value.items():
        spec = fields.get(key)
        if spec is None or item is None:
            out[key] = copy.deepcopy(item)
            continue
        fixed = _clamp_value(spec.annotation, spec.bounds, item)
        if isinstance(fixed, _Invalid):
            if spec.required:
                out[key] = copy.deepcopy(item)
            continue
        out[key] = fixed
    if fill_defaults:
        for key, spec in fields.items():
            if spec.default is not ... and out.get(key) is None:
                out[key] = spec.default
    return out


def _unwrap(annotation: Any, bounds: _Bounds) -> tuple[Any, _Bounds]:
    """The type under ``Annotated`` and ``Optional``, with the bounds collected on the way."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            base, *metadata = get_args(annotation)
            annotation, bounds = base, _bounds_of(metadata, bounds)
        elif origin is Union or origin is types.UnionType:
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation, bounds
            annotation = options[0]
        else:
            return annotation, bounds


def _clamp_value(annotation: Any, bounds: _Bounds, value: Any) -> Any:
    """``value`` fitted to its type and bounds, or ``_INVALID``."""
    annotation, bounds = _unwrap(annotation, bounds)
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(value, Mapping):
            return _INVALID
        return _clamp_model(annotation, value, fill_defaults=True)
    if origin is list:
        return _clamp_list(get_args(annotation), bounds, value)
    if origin is dict and get_args(annotation)[1:] != (Any,):
        return _clamp_map(get_args(annotation), bounds, value)
    if origin is Literal:
        return _clamp_literal(get_args(annotation), value)
    if annotation is bool:
        return value if isinstance(value, bool) else _INVALID
    if annotation is int or annotation is float:
        return _clamp_number(annotation, bounds, value)
    if annotation is str:
        return _clamp_text(bounds, value)
    if annotation is datetime:
        return format_time(value) or _INVALID
    return copy.deepcopy(value)


def _clamp_list(args: tuple[Any, ...], bounds: _Bounds, value: Any) -> Any:
    if not isinstance(value, list | tuple):
        return _INVALID
    item_type = args[0] if args else Any
    items = [_clamp_value(item_type, _Bounds(), v) for v in value if v is not None]
    kept = [v for v in items if not isinstance(v, _Invalid)]
    if bounds.max_length is not None:
        kept = kept[: bounds.max_length]
    if bounds.min_length is not None and len(kept) < bounds.min_length:
        return _INVALID
    return kept


def _clamp_map(args: tuple[Any, ...], bounds: _Bounds, value: Any) -> Any:
    if not isinstance(value, Mapping):
        return _INVALID
    value_type = args[1] if len(args) == 2 else Any
    entries = {k: _clamp_value(value_type, _Bounds(), v) for k, v in value.items() if v is not None}
    kept = {str(k): v for k, v in entries.items() if not isinstance(v, _Invalid)}
    if bounds.max_length is not None and len(kept) > bounds.max_length:
        chosen = set(sorted(kept)[: bounds.max_length])
        kept = {k: v for k, v in kept.items() if k in chosen}
    if bounds.min_length is not None and len(kept) < bounds.min_length:
        return _INVALID
    return kept


def _clamp_literal(members: tuple[Any, ...], value: Any) -> Any:
    for member in members:
        if type(member) is type(value) and member == value:
            return member
    if isinstance(value, str | bool | int | float):
        text = str(value).strip().casefold()
        for member in members:
            if isinstance(member, str) and member.casefold() == text:
                return member
    return _UNKNOWN if _UNKNOWN in members else _INVALID


def _clamp_number(kind: type, bounds: _Bounds, value: Any) -> Any:
    parsed: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        parsed = value
    elif isinstance(value, str):
        parsed = _parse_number(value)
    if parsed is None or math.isnan(parsed):
        return _INVALID
    number = parsed
    low, high = _range(bounds, kind)
    if low is not None and number < low:
        number = low
    if high is not None and number > high:
        number = high
    if math.isinf(number):
        return _INVALID
    if kind is int and isinstance(number, float):
        if not number.is_integer():
            return _INVALID
        number = int(number)
    return number


def _parse_number(text: str) -> float | None:
    """A number written as text (``"42"`` exactly as an int), or None."""
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        return float(text.strip())
    except ValueError:
        return None


def _range(bounds: _Bounds, kind: type) -> tuple[float | None, float | None]:
    """The smallest and largest value a number field accepts (whole numbers for an int field)."""
    lows: list[float] = []
    highs: list[float] = []
    if bounds.ge is not None:
        lows.append(math.ceil(bounds.ge) if kind is int else bounds.ge)
    if bounds.gt is not None:
        lows.append(math.floor(bounds.gt) + 1 if kind is int else math.nextafter(bounds.gt, math.inf))
    if bounds.le is not None:
        highs.append(math.floor(bounds.le) if kind is int else bounds.le)
    if bounds.lt is not None:
        highs.append(math.ceil(bounds.lt) - 1 if kind is int else math.nextafter(bounds.lt, -math.inf))
    return (max(lows) if lows else None), (min(highs) if highs else None)


def _clamp_text(bounds: _Bounds, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return _INVALID
    if isinstance(value, float) and not math.isfinite(value):
        return _INVALID
    text = value if isinstance(value, str) else str(value)
    if bounds.pattern is not None:
        return _identifier(text, bounds)
    if bounds.max_length is not None:
        text = truncate(text, bounds.max_length)
    if bounds.min_length is not None and len(text) < bounds.min_length:
        return _INVALID
    return text


def _identifier(text: str, bounds: _Bounds) -> Any:
    """The longest prefix of ``text`` within the bounds that matches the pattern, or ``_INVALID``."""
    assert bounds.pattern is not None
    matches = _matcher(bounds.pattern)
    low = max(bounds.min_length or 0, 0)
    end = len(text) if bounds.max_length is None else min(len(text), bounds.max_length)
    for size in range(end, low - 1, -1):
        candidate = text[:size]
        if matches(candidate):
            return candidate
    return _INVALID


@functools.cache
def _matcher(pattern: str) -> Any:
    """How the API server reads a schema pattern: anchored patterns match the whole text (Python's
    ``$`` would also accept a trailing newline), others anywhere in it."""
    compiled = re.compile(pattern)
    if pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$"):
        return lambda text: compiled.fullmatch(text) is not None
    return lambda text: compiled.search(text) is not None
