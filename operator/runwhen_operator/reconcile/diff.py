"""Desired-vs-remote comparison that ignores what the server adds or reorders.

The desired body holds only what the user said. A remote object is in sync when every field of the
desired body matches: objects are compared key by key on the desired keys only (server defaults and
read-only fields never count as drift), lists of objects element by element, and lists of plain
values as sets where the API treats them as sets (the caller names those keys).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

_NUMBER = (int, float)


def matches(
    desired: Any,
    remote: Any,
    set_keys: Collection[str] = (),
    key: str = "",
    exact_keys: Collection[str] = (),
) -> bool:
    """True when `remote` agrees with everything `desired` states.

    Values under `exact_keys` (free-form maps the user owns whole) must be equal, not a superset.
    """
    if key in exact_keys:
        same: bool = _normal(desired) == _normal(remote)
        return same
    if isinstance(desired, Mapping):
        if not isinstance(remote, Mapping):
            return False
        return all(matches(v, remote.get(k), set_keys, k, exact_keys) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(remote, list) or len(desired) != len(remote):
            return False
        if key in set_keys and all(not isinstance(v, Mapping | list) for v in desired):
            return _as_set(desired) == _as_set(remote)
        return all(matches(d, r, set_keys, key, exact_keys) for d, r in zip(desired, remote, strict=True))
    if isinstance(desired, bool) or isinstance(remote, bool):
        return desired is remote
    if isinstance(desired, _NUMBER) and isinstance(remote, _NUMBER):
        return abs(float(desired) - float(remote)) <= 1e-9 * max(1.0, abs(float(desired)))
    equal: bool = desired == remote
    return equal


def _as_set(values: list[Any]) -> set[Any]:
    return {repr(v) for v in values}


def _normal(value: Any) -> Any:
    """Integral floats as ints, so `1.0` from one side equals `1` from the other."""
    if isinstance(value, Mapping):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def drifted_fields(
    desired: Mapping[str, Any],
    remote: Mapping[str, Any],
    set_keys: Collection[str] = (),
    exact_keys: Collection[str] = (),
) -> dict[str, Any]:
    """The top-level fields of `desired` whose value the remote object does not match."""
    return {k: v for k, v in desired.items() if not matches(v, remote.get(k), set_keys, k, exact_keys)}
