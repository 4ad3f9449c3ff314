"""The status recorder: RFC 7386 merge patches, clamping to the status schemas, one clock and cutter."""

from __future__ import annotations

import copy
import enum
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from runwhen_operator import crdgen
from runwhen_operator.api import common, connection, kinds, workflowrun, workspace
from runwhen_operator.reconcile import status

Node = dict[str, Any]

T0 = "2026-03-01T12:00:00Z"
T1 = "2026-03-01T12:05:00Z"


# --- text and time ---------------------------------------------------------------------------------


def test_truncate_marks_the_cut_and_never_exceeds_the_limit() -> None:
    assert status.truncate("short", 10) == "short"
    assert status.truncate("x" * 10, 10) == "x" * 10
    cut = status.truncate("x" * 20, 10)
    assert cut == "x" * 7 + "..."
    assert status.truncate(cut, 10) == cut
    assert status.truncate("x" * 2000) == "x" * 1021 + "..."
    assert status.truncate("abcdef", 2) == "ab"
    assert status.truncate("abcdef", 3) == "..."
    assert status.truncate("abcdef", 0) == ""
    assert status.truncate("abcdef", -1) == ""


def test_now_is_a_status_timestamp() -> None:
    text = status.now()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", text)
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - moment) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 3, 1, 12, 0, 0, 999999, tzinfo=UTC), T0),
        (datetime(2026, 3, 1, 12, 0, 0), T0),  # naive: UTC
        (datetime(2026, 3, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))), T0),
        (T0, T0),
        ("2026-03-01T12:00:00.123456Z", T0),
        ("2026-03-01T13:00:00+01:00", T0),
        ("2026-03-01T12:00:00", T0),
        (None, None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_format_time(value: Any, expected: str | None) -> None:
    assert status.format_time(value) == expected


# --- merge patches ---------------------------------------------------------------------------------

#: RFC 7386 Appendix A, the cases where both documents are objects: (target, patch, result).
RFC_7386_EXAMPLES: list[tuple[Node, Node, Node]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    (
        {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
         "tags": ["example", "sample"], "content": "This will be unchanged"},
        {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None},
         "tags": ["example"]},
        {"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
         "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7386_EXAMPLES)
def test_apply_patch_follows_rfc_7386(target: Node, patch: Node, result: Node) -> None:
    before = copy.deepcopy((target, patch))
    assert status.apply_patch(target, patch) == result
    assert (target, patch) == before


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7386_EXAMPLES)
def test_merge_patch_reaches_the_rfc_7386_results(target: Node, patch: Node, result: Node) -> None:
    made = status.merge_patch(target, result)
    assert status.apply_patch(target, made) == result
    assert status.merge_patch(result, result) == {}


def test_merge_patch_is_minimal_and_recursive() -> None:
    current = {"a": {"b": 1, "c": {"d": 2, "e": 3}, "f": [1, 2]}, "g": "same"}
    desired = {"a": {"b": 1, "c": {"d": 2}, "f": [1, 2, 3]}, "g": "same"}
    assert status.merge_patch(current, desired) == {"a": {"c": {"e": None}, "f": [1, 2, 3]}}


def test_merge_patch_json_equality() -> None:
    # booleans are not numbers; ints and floats of equal value are the same JSON number
    assert status.merge_patch({"x": 1}, {"x": True}) == {"x": True}
    assert status.merge_patch({"x": True}, {"x": 1}) == {"x": 1}
    assert status.merge_patch({"x": [0]}, {"x": [False]}) == {"x": [False]}
    assert status.merge_patch({"x": 1}, {"x": 1.0}) == {}
    assert status.merge_patch({"x": "1"}, {"x": 1}) == {"x": 1}
    assert status.merge_patch({"x": (1, 2)}, {"x": [1, 2]}) == {}

    class Reason(enum.StrEnum):
        SYNCED = "Synced"

    assert status.merge_patch({"reason": "Synced"}, {"reason": Reason.SYNCED}) == {}


def test_merge_patch_never_writes_null_into_a_list_or_a_new_object() -> None:
    patch = status.merge_patch({}, {"top": [{"id": 1, "slxName": None}, None], "new": {"a": None, "b": 1}})
    assert patch == {"top": [{"id": 1}], "new": {"b": 1}}


def test_merge_patch_ignores_nulls_of_the_current_document() -> None:
    assert status.merge_patch({"a": None}, {}) == {}
    assert status.merge_patch({"a": None}, {"a": None}) == {}
    assert status.merge_patch({"a": {"b": None}}, {"a": {}}) == {}


_json_scalars = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text("xy", max_size=2)
)
_keys = st.sampled_from(["a", "b", "c", "d"])
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
_objects = st.dictionaries(_keys, _json, max_size=4)


def _normal(value: Any) -> Any:
    """A document as the server keeps it: no nulls in objects (nor, after our pruning, in lists)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normal(v) for v in value if v is not None]
    return value


@settings(max_examples=300, database=None, derandomize=True, deadline=None)
@given(_objects, _objects)
def test_merge_patch_applied_gives_the_desired_document(current: Node, desired: Node) -> None:
    stored = _normal(current)
    patch = status.merge_patch(stored, desired)
    result = status.apply_patch(stored, patch)
    assert result == _normal(desired)
    assert status.merge_patch(result, desired) == {}
    if _normal(desired) == stored:
        assert patch == {}


@settings(max_examples=300, database=None, derandomize=True, deadline=None)
@given(_objects, _objects)
def test_status_patch_touches_only_the_keys_it_is_given(current: Node, desired: Node) -> None:
    stored = _normal(current)
    patch = status.status_patch(stored, desired)
    result = status.apply_patch(stored, patch)
    expected = dict(stored)
    for key, value in desired.items():
        if value is None:
            expected.pop(key, None)
        else:
            expected[key] = _normal(value)
    assert result == expected
    assert status.status_patch(result, desired) == {}


# --- status patches: the defects -----------------------------------------------------------------


def _condition(type_: str, state: str = "True", reason: str = "Synced", ltt: str = T0, **extra: Any) -> Node:
    return {
        "type": type_,
        "status": state,
        "reason": reason,
        "message": "",
        "lastTransitionTime": ltt,
        **extra,
    }


def _health(**extra: Any) -> Node:
    return {
        "state": "Healthy",
        "reason": "Healthy",
        "message": "workspace is healthy",
        "checkedAt": T0,
        **extra,
    }


def test_a_nested_key_that_disappears_is_removed() -> None:
    current = {
        "health": _health(details=[{"component": "db", "status": "ok", "message": ""}], metrics={"cpu": 0.5}),
        "openIssues": {"count": 1, "bySeverity": {"critical": 1}, "top": [{"id": 1, "title": "t"}]},
    }
    assert status.status_patch(current, {"health": _health()}) == {
        "health": {"details": None, "metrics": None}
    }
    assert status.status_patch(current, {"health": _health(details=current["health"]["details"])}) == {
        "health": {"metrics": None}
    }
    assert status.status_patch(current, {"health": {**current["health"], "metrics": {"mem": 1}}}) == {
        "health": {"metrics": {"cpu": None, "mem": 1}}
    }
    assert status.status_patch(current, {"openIssues": {"count": 1, "bySeverity": {"critical": 1}}}) == {
        "openIssues": {"top": None}
    }


def test_lists_are_replaced_whole() -> None:
    top = [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}]
    current = {"openIssues": {"count": 2, "top": top}}
    changed = [{"id": 1, "title": "a"}, {"id": 2, "title": "B"}]
    assert status.status_patch(current, {"openIssues": {"count": 2, "top": changed}}) == {
        "openIssues": {"top": changed}
    }
    assert status.status_patch(current, {"openIssues": {"count": 2, "top": list(reversed(top))}}) == {
        "openIssues": {"top": list(reversed(top))}
    }


def test_top_level_keys_not_named_are_left_alone_and_none_removes() -> None:
    current = {"observedGeneration": 3, "remoteName": "ws", "health": _health()}
    assert status.status_patch(current, {"observedGeneration": 3}) == {}
    assert status.status_patch(current, {"observedGeneration": 4}) == {"observedGeneration": 4}
    assert status.status_patch(current, {"health": None}) == {"health": None}
    assert status.status_patch(current, {"createPending": None}) == {}
    assert status.status_patch(None, {"remoteName": "ws"}) == {"remoteName": "ws"}
    assert status.status_patch({}, {}) == {}


def test_conditions_compare_without_the_transition_time() -> None:
    current = {"conditions": [_condition("Ready"), _condition("Synced", observedGeneration=2)]}
    restated = [_condition("Synced", ltt=T1, observedGeneration=2), _condition("Ready", ltt=T1)]
    assert status.status_patch(current, {"conditions": restated}) == {}
    changed = [
        _condition("Ready", "False", "Unauthorized", ltt=T1),
        _condition("Synced", observedGeneration=2),
    ]
    assert status.status_patch(current, {"conditions": changed}) == {"conditions": changed}
    newer = [_condition("Ready"), _condition("Synced", observedGeneration=3)]
    assert status.status_patch(current, {"conditions": newer}) == {"conditions": newer}
    fewer = [_condition("Ready")]
    assert status.status_patch(current, {"conditions": fewer}) == {"conditions": fewer}
    more = [*current["conditions"], _condition("Stalled")]
    assert status.status_patch(current, {"conditions": more}) == {"conditions": more}
    assert status.status_patch({}, {"conditions": []}) == {}
    assert status.status_patch(current, {"conditions": None}) == {"conditions": None}


def test_same_conditions() -> None:
    ready = _condition("Ready")
    assert status.same_conditions([ready], [{**ready, "lastTransitionTime": T1}])
    assert status.same_conditions(None, [])
    assert not status.same_conditions([ready], [ready, ready])  # a duplicate is not the same list
    assert not status.same_conditions([ready], [{**ready, "message": "x"}])
    assert not status.same_conditions([ready], "Ready")


def test_inputs_are_not_changed() -> None:
    current = {"health": _health(details=[{"component": "db", "status": "ok"}])}
    desired = {"health": _health(details=[{"component": "db", "status": "down", "extra": None}])}
    before = copy.deepcopy((current, desired))
    patch = status.record(current, desired, workspace.WorkspaceStatus)
    patch["health"]["details"][0]["status"] = "mutated"
    assert (current, desired) == before


# --- clamping --------------------------------------------------------------------------------------


def test_clamp_fits_remote_values_into_the_workspace_status() -> None:
    desired = {
        "health": {
            "state": "healthy",
            "checkedAt": "2026-03-01T13:00:00.5+01:00",
            "reason": "R" * 2000,
            "message": "m" * 10000,
            "details": [
                {"component": f"c{i}", "status": "s" * 100, "message": "d" * 5000} for i in range(60)
            ],
            "metrics": {f"m{i:03d}": i for i in reversed(range(150))} | {"nan": math.nan, "inf": math.inf},
        },
        "openIssues": {
            "count": -1,
            "bySeverity": {"critical": 2},
            "top": [
                {"id": 1, "title": "t" * 2000, "severity": 9, "slxName": "x" * 300, "openSince": "soon"},
                {"id": "2", "title": "ok", "severity": 0, "openSince": datetime(2026, 3, 1, 12, tzinfo=UTC)},
                {"id": 3.0, "title": 404, "severity": "3"},
                "not an issue",
            ],
        },
        "conditions": [_condition("Ready", state="true", reason="Remote Error: 500", message="x" * 40000)],
        "remoteName": "Not A DNS Label",
        "lastHandledReconcileAt": "z" * 300,
        "createPending": "yes",
        "observedGeneration": -2,
        "notInTheSchema": "x" * 100000,
    }
    before = copy.deepcopy(desired)
    out = status.clamp(workspace.WorkspaceStatus, desired)
    assert desired == before
    workspace.WorkspaceStatus.model_validate(out)

    health = out["health"]
    assert health["state"] == "Healthy"
    assert health["checkedAt"] == T0
    assert health["reason"] == "R" * 1021 + "..."
    assert len(health["message"]) == workspace.MAX_SHORT_TEXT
    assert len(health["details"]) == workspace.MAX_HEALTH_DETAILS
    assert [d["component"] for d in health["details"]] == [f"c{i}" for i in range(50)]  # the first ones
    assert {len(d["status"]) for d in health["details"]} == {64}
    # the first keys in key order, whatever order the server sent them in; NaN and infinity left out
    assert list(health["metrics"]) == [f"m{i:03d}" for i in reversed(range(100))]

    issues = out["openIssues"]
    assert issues["count"] == 0
    assert issues["bySeverity"] == {"critical": 2, "major": 0, "minor": 0, "warning": 0}  # CRD defaults
    first, second, third = issues["top"]
    assert first == {"id": 1, "title": "t" * 1021 + "...", "severity": 4, "slxName": "x" * 250 + "..."}
    assert second == {"id": 2, "title": "ok", "severity": 1, "openSince": T0}
    assert third == {"id": 3, "title": "404", "severity": 3}

    (cond,) = out["conditions"]
    assert cond["status"] == "True"
    assert cond["reason"] == "Remote"  # an identifier: the longest prefix that is still one, unmarked
    assert len(cond["message"]) == common.MAX_MESSAGE_LENGTH

    assert "remoteName" not in out  # optional and no valid prefix: dropped rather than 422
    assert "createPending" not in out
    assert out["lastHandledReconcileAt"] == "z" * 253 + "..."
    assert out["observedGeneration"] == 0
    assert out["notInTheSchema"] == "x" * 100000  # unknown keys are left alone
    assert status.clamp(workspace.WorkspaceStatus, out) == out  # clamping twice is clamping once


@pytest.mark.parametrize(
    ("state", "expected"),
    [("Healthy", "Healthy"), ("  DEGRADED ", "Degraded"), ("unhealthy", "Unhealthy"), ("on fire", "Unknown"),
     (3, "Unknown")],
)  # fmt: skip
def test_clamp_matches_enums_case_insensitively(state: Any, expected: str) -> None:
    out = status.clamp(workspace.WorkspaceStatus, {"health": {"state": state}})
    assert out == {"health": {"state": expected}}


def test_clamp_drops_an_unknown_enum_value_without_unknown_member_when_optional() -> None:
    out = status.clamp(workflowrun.WorkflowRunStatus, {"phase": "running", "message": None})
    assert out == {"message": None}
    assert status.clamp(workflowrun.WorkflowRunStatus, {"phase": "completedwitherrors"}) == {
        "phase": "CompletedWithErrors"
    }
    assert status.clamp(connection.ConnectionStatus, {"authMode": "Token", "apiDialect": "graphql"}) == {
        "authMode": "token"
    }


def test_clamp_numbers() -> None:
    def severity(value: Any) -> Any:
        out = status.clamp(workspace.IssueSummary, {"id": 1, "title": "t", "severity": value})
        return out.get("severity", "dropped")

    assert [severity(v) for v in (1, 4, 0, -7, 5, 99, "2", "9", 2.0, 7.5)] == [1, 4, 1, 1, 4, 4, 2, 4, 2, 4]
    bad: Any
    for bad in (2.5, "two", True, math.nan, [], {}):
        assert severity(bad) == "dropped"
    metrics = status.clamp(
        workspace.WorkspaceHealth, {"state": "Healthy", "metrics": {"a": "1.5", "b": 2, "c": "x"}}
    )
    assert metrics["metrics"] == {"a": 1.5, "b": 2}
    assert status.clamp(workspace.OpenIssues, {"count": math.inf}) == {"count": math.inf}  # required: kept


def test_clamp_keeps_what_it_cannot_fix_when_required() -> None:
    cond = {"type": "Ready", "status": "True", "reason": " leading space", "lastTransitionTime": "later"}
    out = status.clamp(common.Condition, cond)
    assert out == cond  # no valid prefix, no time: kept for validation to report (a bug of the writer)
    assert status.clamp(workspace.IssueSummary, {"id": "one", "title": "t"}) == {"id": "one", "title": "t"}


def test_clamp_identifiers_are_cut_to_a_valid_prefix_without_a_mark() -> None:
    out = status.clamp(workspace.WorkspaceStatus, {"remoteName": "a" * 62 + "-bcdef"})
    assert out == {"remoteName": "a" * 62}  # cut at 63 it would end with '-'
    assert status.clamp(workspace.WorkspaceStatus, {"remoteName": "team-a"}) == {"remoteName": "team-a"}
    assert status.clamp(workspace.WorkspaceStatus, {"remoteName": "team-a\n"}) == {"remoteName": "team-a"}


def test_clamp_fills_the_crd_defaults_of_nested_objects_only() -> None:
    out = status.clamp(workspace.WorkspaceStatus, {"conditions": [{**_condition("Ready"), "message": None}]})
    assert out["conditions"][0]["message"] == ""
    assert status.clamp(workspace.IssueCounts, {}) == {}  # the object given is a (partial) status


def test_clamp_leaves_free_form_values_alone() -> None:
    value = {"anything": [1, {"b": None}], "x": "y" * 10}
    out = status.clamp(workflowrun.WorkflowRunSpec, {"context": value})
    assert out == {"context": {"anything": [1, {"b": None}], "x": "y" * 10}}
    assert out["context"] is not value


# --- clamp against every status model and its CRD schema --------------------------------------------

RFC_3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def status_schema(info: kinds.KindInfo) -> Node:
    root = crdgen.crd_document(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema: Node = root["properties"]["status"]
    return schema


def schema_problems(value: Any, node: Node, path: str = "status") -> list[tuple[str, str]]:
    """What the API server's structural schema validation would reject in ``value`` (a subset of it
    that covers every keyword the status schemas use): empty when it would accept it."""
    out: list[tuple[str, str]] = []
    if value is None:
        return [(path, "null")]
    if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
        return out
    kind = node.get("type")
    if "enum" in node and value not in node["enum"]:
        out.append((path, f"{value!r} not in enum"))
    if kind == "object":
        if not isinstance(value, dict):
            return [(path, "not an object")]
        out += [(f"{path}.{k}", "required") for k in node.get("required", []) if k not in value]
        if "maxProperties" in node and len(value) > node["maxProperties"]:
            out.append((path, "maxProperties"))
        for key, item in value.items():
            if key in node.get("properties", {}):
                out += schema_problems(item, node["properties"][key], f"{path}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                out += schema_problems(item, node["additionalProperties"], f"{path}.*")
    elif kind == "array":
        if not isinstance(value, list):
            return [(path, "not an array")]
        if "maxItems" in node and len(value) > node["maxItems"]:
            out.append((path, "maxItems"))
        if "minItems" in node and len(value) < node["minItems"]:
            out.append((path, "minItems"))
        keys = node.get("x-kubernetes-list-map-keys")
        if keys and len({tuple(str(i.get(k)) for k in keys) for i in value}) != len(value):
            out.append((path, "duplicate map keys"))
        for item in value:
            out += schema_problems(item, node["items"], f"{path}[]")
    elif kind == "string":
        if not isinstance(value, str):
            return [(path, "not a string")]
        if "maxLength" in node and len(value) > node["maxLength"]:
            out.append((path, "maxLength"))
        if "minLength" in node and len(value) < node["minLength"]:
            out.append((path, "minLength"))
        if "pattern" in node and not re.fullmatch(node["pattern"], value):
            out.append((path, "pattern"))
        if node.get("format") == "date-time" and not RFC_3339.match(value):
            out.append((path, "format"))
    elif kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int if kind == "integer" else int | float):
            return [(path, f"not an {kind}")]
        if not math.isfinite(value):
            return [(path, "not finite")]
        if "minimum" in node and (
            value <= node["minimum"] if node.get("exclusiveMinimum") else value < node["minimum"]
        ):
            out.append((path, "minimum"))
        if "maximum" in node and (
            value >= node["maximum"] if node.get("exclusiveMaximum") else value > node["maximum"]
        ):
            out.append((path, "maximum"))
    elif kind == "boolean" and not isinstance(value, bool):
        out.append((path, "not a boolean"))
    return out


def oversized(node: Node, low: bool, tag: str = "") -> Any:
    """A value of the schema ``node`` that breaks every bound it has: strings and lists too long, maps
    with too many keys, numbers beyond their ``maximum`` (``low``: under their ``minimum``), numbers
    as text where a side is unbounded, enums off the list. List items differ (by ``tag``) so that a
    list keyed by a field has no duplicates."""
    if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
        return {"free": ["form", 1]}
    kind = node["type"]
    if kind == "object":
        if "properties" in node:
            return {k: oversized(v, low, tag) for k, v in node["properties"].items()}
        if isinstance(node.get("additionalProperties"), dict):
            count = node.get("maxProperties", 2) + 5
            return {f"k{i:03d}": oversized(node["additionalProperties"], low, tag) for i in range(count)}
        return {"free": 1}
    if kind == "array":
        count = node.get("maxItems", 2) + 3
        return [oversized(node["items"], low, tag + _letters(i)) for i in range(count)]
    if kind == "string":
        if "enum" in node:
            return f"Not One Of Them {tag}"
        if node.get("format") == "date-time":
            return "2026-03-01T13:00:00.123456+01:00"
        return tag + "a" * (node.get("maxLength", 40) + 10)
    if kind in ("integer", "number"):
        if low and "minimum" in node:
            return node["minimum"] - 5
        if not low and "maximum" in node:
            return node["maximum"] + 5
        return "42" if kind == "integer" else "1.5"
    if kind == "boolean":
        return True
    raise AssertionError(f"no generator for {node}")


def _letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(ord("a") + rest) + out
    return out


def bounded_paths(node: Node, path: str = "status") -> set[str]:
    """Paths of the schema nodes that carry a bound or an enum."""
    out: set[str] = set()
    bounds = {"maxLength", "maxItems", "maxProperties", "minimum", "maximum", "enum"}
    if bounds & set(node):
        out.add(path)
    for name, prop in node.get("properties", {}).items():
        out |= bounded_paths(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out |= bounded_paths(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out |= bounded_paths(node["additionalProperties"], f"{path}.*")
    return out


def not_tight(value: Any, node: Node, low: bool, path: str = "status") -> list[str]:
    """Where the clamped ``value`` of ``oversized`` was cut further than its bound (strings, lists and
    maps are cut to exactly their maximum, numbers clamped exactly to the bound they broke)."""
    out: list[str] = []
    if isinstance(value, dict):
        if "maxProperties" in node and len(value) != node["maxProperties"]:
            out.append(path)
        for key, item in value.items():
            if key in node.get("properties", {}):
                out += not_tight(item, node["properties"][key], low, f"{path}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                out += not_tight(item, node["additionalProperties"], low, f"{path}.*")
    elif isinstance(value, list):
        if "maxItems" in node and len(value) != node["maxItems"]:
            out.append(path)
        for item in value:
            out += not_tight(item, node["items"], low, f"{path}[]")
    elif isinstance(value, str) and "maxLength" in node and "enum" not in node and "format" not in node:
        if len(value) != node["maxLength"]:
            out.append(path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        broken = "minimum" if low else "maximum"
        if broken in node and value != node[broken]:
            out.append(path)
    return out


@pytest.mark.parametrize("low", [False, True], ids=["above", "below"])
@pytest.mark.parametrize("info", kinds.KINDS, ids=[k.kind for k in kinds.KINDS])
def test_clamp_makes_an_oversized_status_valid_for_the_model_and_the_crd(
    info: kinds.KindInfo, low: bool
) -> None:
    model: type[BaseModel] = info.status_model
    schema = status_schema(info)
    value = oversized(schema, low)

    problems = schema_problems(value, schema)
    assert bounded_paths(schema) <= {path for path, _ in problems}, "the value must break every bound"

    clamped = status.clamp(model, value)
    model.model_validate(clamped)
    assert schema_problems(clamped, schema) == []
    assert not_tight(clamped, schema, low) == []
    assert status.clamp(model, clamped) == clamped

    # written once, then nothing more to write
    patch = status.record({}, value, model)
    stored = status.apply_patch({}, patch)
    assert schema_problems(stored, schema) == []
    assert status.record(stored, value, model) == {}


def test_every_status_model_is_covered() -> None:
    models = {info.status_model for info in kinds.KINDS}
    assert models == {
        connection.ConnectionStatus,
        workspace.WorkspaceStatus,
        kinds.by_kind("Workflow").status_model,
        kinds.by_kind("Persona").status_model,
        workflowrun.WorkflowRunStatus,
        kinds.by_kind("RunnerLocation").status_model,
    }


# --- record: a Workspace monitor's life ---------------------------------------------------------


def test_record_writes_once_then_only_what_changed() -> None:
    model = workspace.WorkspaceStatus
    server: Node = {"observedGeneration": 0}

    def write(desired: Node) -> Node:
        nonlocal server
        patch = status.record(server, desired, model)
        server = status.apply_patch(server, patch)
        assert schema_problems(server, status_schema(kinds.by_kind("Workspace"))) == []
        return patch

    details = [{"component": "runner", "status": "healthy", "message": ""}]
    desired = {
        "health": _health(details=details, metrics={"cpu": 0.25}),
        "workspaceStatus": {"workspace": True, "sync": True},
        "openIssues": {
            "count": 1,
            "bySeverity": {"critical": 0, "major": 1, "minor": 0, "warning": 0},
            "top": [{"id": 7, "title": "disk full " * 200, "severity": 2}],
        },
        "conditions": [_condition("Ready")],
    }
    first = write(desired)
    assert first["openIssues"]["top"][0]["title"].endswith("...")
    assert server["observedGeneration"] == 0  # a key nobody named stays

    # an idle resync: the same values, a condition re-stated with a new time
    assert write({**desired, "conditions": [_condition("Ready", ltt=T1)]}) == {}

    # metrics switched off, issues resolved
    calmer = {
        **desired,
        "health": _health(details=details),
        "openIssues": {"count": 0, "bySeverity": {}, "top": []},
    }
    assert write(calmer) == {
        "health": {"metrics": None},
        "openIssues": {"count": 0, "bySeverity": {"major": 0}, "top": []},
    }
    assert "metrics" not in server["health"]
    assert write(calmer) == {}

    # details switched off
    assert write({"health": _health()}) == {"health": {"details": None}}
    assert write({"health": _health()}) == {}
