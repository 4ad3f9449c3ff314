"""The contract validator on hand-made exchanges: what must pass passes, what must fail fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.contract.validator import ContractValidator

OPERATOR = "runwhen-operator"
OTHER = "python-httpx/0.28.1"


@pytest.fixture(scope="module")
def validator() -> ContractValidator:
    return ContractValidator()


def exchange(
    method: str,
    path: str,
    status: int | None,
    response: Any = None,
    *,
    request: Any = None,
    query: Any = "",
    agent: str = OPERATOR,
    fault: str | None = None,
    dialect: str = "platform",
) -> dict[str, Any]:
    def text(value: Any) -> str | None:
        return value if value is None or isinstance(value, str) else json.dumps(value)

    return {
        "dialect": dialect,
        "method": method,
        "path": path,
        "query": query,
        "requestContentType": "application/json" if request is not None else None,
        "userAgent": agent,
        "requestBody": text(request),
        "status": status,
        "responseContentType": "application/json" if response is not None else None,
        "responseBody": text(response),
        "fault": fault,
    }


WORKSPACE_STATUS = {"workspace": True, "sync": False}
WORKFLOW_UPSERT = {
    "payload": {
        "name": "demo--restart",
        "definition": {"fromActivities": [{"name": "a", "actions": [{"tasks": {"slx": "demo--slx"}}]}]},
    }
}
PERSONA_UPSERT = {"payload": {"name": "demo--eager-edgar", "fullName": "Eager Edgar", "anyExtra": 1}}
VALIDATION_ERROR = {"detail": [{"loc": ["body", "payload"], "msg": "Field required", "type": "missing"}]}
RUN_SESSION = {
    "id": 7,
    "name": "run-1",
    "source": "direct",
    "workspaceId": 1,
    "workspace": 1,
    "active": True,
    "escalated": False,
    "created": "2026-01-01T00:00:00Z",
    "modified": "2026-01-01T00:00:00Z",
    "eol": None,
    "runRequests": [{"id": 1, "slxName": "demo--slx", "taskTitles": "a||b", "responseTime": None}],
}

SYNC_TYPED = "/api/v4/workspaces/demo/workflows/sync-typed"
#: the client left before its request arrived in full: no body, nobody answered
LEFT_MID_BODY = {**exchange("POST", SYNC_TYPED, 0), "clientGone": True}

MUST_PASS: dict[str, dict[str, Any]] = {
    "a client that left mid-body": LEFT_MID_BODY,
    "workspace status": exchange("GET", "/api/v3/workspaces/demo/status", 200, WORKSPACE_STATUS),
    "the operator's dialect probe, redirected": exchange("GET", "/api/v3/workspaces/", 307, None),
    "token login": exchange(
        "POST",
        "/api/v3/token/",
        200,
        {"access": "a", "refresh": "r"},
        request={"username": "u", "password": "p"},
    ),
    "bad login": exchange(
        "POST",
        "/api/v3/token/",
        401,
        {"detail": "No active account found with the given credentials"},
        request={"username": "u", "password": "x"},
    ),
    "workspace create": exchange(
        "POST",
        "/api/v3/workspaces",
        201,
        {"name": "demo-2", "repo_url": "https://git/x", "status": "ready", "renamed_from": "demo"},
        request={"name": "demo"},
    ),
    "workspace patch (snake_case)": exchange(
        "PATCH", "/api/v3/workspaces/demo", 422, VALIDATION_ERROR, request={"alias": "Demo"}
    ),
    "workflow upsert": exchange(
        "POST",
        "/api/v4/workspaces/demo/workflows/sync-typed",
        200,
        {"status": "created", "name": "demo--restart", "resourceId": 1},
        request=WORKFLOW_UPSERT,
    ),
    "persona upsert, extra keys inside payload": exchange(
        "POST",
        "/api/v4/workspaces/demo/personas/sync-typed",
        200,
        {"status": "updated"},
        request=PERSONA_UPSERT,
    ),
    "a bad body from another agent, answered 422": exchange(
        "POST",
        "/api/v4/workspaces/demo/workflows/sync-typed",
        422,
        VALIDATION_ERROR,
        request={"payload": {"name": "x", "definition": {}}, "surprise": True},
        agent=OTHER,
    ),
    "not found, undocumented 404": exchange(
        "GET", "/api/v3/workspaces/nope", 404, {"detail": "Workspace 'nope' not found"}
    ),
    "issues with a valid query": exchange(
        "GET",
        "/api/v3/workspaces/demo/issues",
        200,
        {"results": [], "count": 0, "limit": 10, "offset": 0, "next": None, "previous": None},
        query="closed=false&severity__lte=4&limit=10&offset=0",
    ),
    "query as a mapping": exchange(
        "GET",
        "/api/v3/workspaces/demo/runsessions",
        200,
        {"results": [RUN_SESSION], "count": 1, "limit": 100, "offset": 0, "next": None, "previous": None},
        query={"page": "1", "page-size": ["100"]},
    ),
    "run session created, 201 has no schema": exchange(
        "POST",
        "/api/v3/workspaces/demo/runsessions",
        201,
        RUN_SESSION,
        request={"source": "direct", "runRequests": [{"slxName": "demo--slx", "taskTitles": None}]},
    ),
    "run session merged, 200": exchange(
        "POST",
        "/api/v3/workspaces/demo/runsessions",
        200,
        RUN_SESSION,
        request={"source": "webhook", "runRequests": [{"slxName": "demo--slx"}]},
    ),
    "fault: injected 503": exchange("GET", "/api/v3/workspaces", 503, {"detail": "injected"}, fault="error"),
    "fault: dropped connection": exchange("GET", "/api/v3/workspaces", None, fault="dropped"),
    "fault: rate limited": exchange(
        "POST",
        "/api/v4/workspaces/demo/personas/sync-typed",
        429,
        {"detail": "Too Many Requests"},
        request={"no": "payload"},
        fault="rateLimit",
    ),
    "documented dialect is not checked": exchange(
        "GET", "/api/v3/workspaces/", 200, [{"anything": 1}], dialect="documented"
    ),
    "another agent probing an unknown route": exchange(
        "GET", "/api/v3/workspaces/demo/health", 404, {"detail": "Not Found"}, agent=OTHER
    ),
    "another agent with the wrong method": exchange(
        "PUT", "/api/v3/workspaces/demo", 405, {"detail": "Method Not Allowed"}, agent=OTHER
    ),
    "a path segment holding a question mark": exchange(
        "POST",
        "/api/v4/workspaces/?d#/personas/sync-typed",
        404,
        {"detail": "Workspace '?d#' not found"},
        request={"payload": {"name": "x"}},
    ),
    "a percent-encoded slash inside a segment (raw path recorded)": exchange(
        "GET", "/api/v3/workspaces/a%2Fb/status", 404, {"detail": "Workspace 'a/b' not found"}, agent=OTHER
    ),
    "another agent with the other slash form": exchange("GET", "/api/v3/workspaces/", 307, None, agent=OTHER),
    "token read once, then 409": exchange(
        "GET",
        "/api/v3/workspaces/demo/workflows/restart/token",
        409,
        {"detail": "The webhook token was already retrieved; rotate it to read a new one"},
    ),
    "rotate token 202 {}": exchange(
        "PATCH", "/api/v3/workspaces/demo/workflows/restart/rotate-token", 202, {}
    ),
}

MUST_FAIL = {
    "a 500 to a request whose body never came: the required body is missing": (
        exchange("POST", SYNC_TYPED, 500, {"detail": "Internal server error."}),
        "request",
    ),
    "a client gone on an operation the document does not have": (
        {**LEFT_MID_BODY, "path": "/api/v4/workspaces/demo/nothing"},
        "operation",
    ),
    "operator sends an unknown top-level key": (
        exchange(
            "POST",
            "/api/v4/workspaces/demo/workflows/sync-typed",
            422,
            VALIDATION_ERROR,
            request={**WORKFLOW_UPSERT, "modified_by": "me"},
        ),
        "request",
    ),
    "operator sends a non-integer limit": (
        exchange(
            "GET",
            "/api/v3/workspaces",
            200,
            {"results": [], "count": 0, "next": None, "previous": None},
            query="limit=many",
        ),
        "request",
    ),
    "operator sends a workspace name that is not a DNS label": (
        exchange(
            "POST",
            "/api/v3/workspaces",
            201,
            {"name": "x", "repo_url": "u", "status": "ready"},
            request={"name": "Not_A_Label"},
        ),
        "request",
    ),
    "response misses a required field": (
        exchange("GET", "/api/v3/workspaces/demo/status", 200, {"workspace": True}),
        "response",
    ),
    "response status outside the enum": (
        exchange(
            "POST",
            "/api/v3/workspaces",
            201,
            {"name": "demo", "repo_url": "u", "status": "created"},
            request={"name": "demo"},
        ),
        "response",
    ),
    "response is not JSON": (
        exchange("GET", "/api/v3/workspaces/demo/status", 200, "<html>"),
        "response",
    ),
    "error without FastAPI's shape": (
        exchange("GET", "/api/v3/workspaces/nope", 404, {"error": "not found"}),
        "response",
    ),
    "validation error items without loc": (
        exchange("GET", "/api/v3/workspaces/nope", 400, {"detail": [{"msg": "x", "type": "y"}]}),
        "response",
    ),
    "error without a body": (exchange("DELETE", "/api/v3/workspaces/demo", 500, None), "response"),
    "undocumented success status": (exchange("DELETE", "/api/v3/workspaces/demo", 204, None), "response"),
    "documented 422 that is not HTTPValidationError": (
        exchange("PATCH", "/api/v3/workspaces/demo", 422, {"detail": "bad"}, request={}),
        "response",
    ),
    "operator on an operation the document lacks": (
        exchange("GET", "/api/v3/workspaces/demo/health", 404, {"detail": "Not Found"}),
        "operation",
    ),
    "operator on the other slash form": (
        exchange("GET", "/api/v3/workspaces/demo/workflows/", 307, None),
        "operation",
    ),
    "operator's dialect probe served as if it were an operation": (
        exchange("GET", "/api/v3/workspaces/", 200, {"results": [], "count": 0}),
        "operation",
    ),
    "another agent served an undocumented operation": (
        exchange("GET", "/api/v3/workspaces/demo/health", 200, {"status": "ok"}, agent=OTHER),
        "operation",
    ),
    "deactivate where the document has none": (
        exchange("POST", "/api/v3/workspaces/demo/runsessions/7/deactivate", 200, RUN_SESSION, agent=OTHER),
        "operation",
    ),
    "fault with a body that is not the error shape": (
        exchange("GET", "/api/v3/workspaces", 500, "Internal Server Error", fault="error"),
        "response",
    ),
    "no status and no fault": (exchange("GET", "/api/v3/workspaces", None), "response"),
    "unknown dialect": (exchange("GET", "/api/v3/workspaces", 200, {}, dialect="klingon"), "record"),
}


@pytest.mark.parametrize("name", sorted(MUST_PASS))
def test_must_pass(validator: ContractValidator, name: str) -> None:
    report = validator.validate(MUST_PASS[name])
    assert report.violations == [], [str(v) for v in report.violations]


@pytest.mark.parametrize("name", sorted(MUST_FAIL))
def test_must_fail(validator: ContractValidator, name: str) -> None:
    record, kind = MUST_FAIL[name]
    report = validator.validate(record, where="x.jsonl:1")
    assert report.violations, name
    assert {v.kind for v in report.violations} == {kind}, [str(v) for v in report.violations]
    assert str(report.violations[0]).startswith("x.jsonl:1: " + kind)


def test_request_checked_only_for_the_operator(validator: ContractValidator) -> None:
    bad = {**WORKFLOW_UPSERT, "modified_by": "me"}
    url = "/api/v4/workspaces/demo/workflows/sync-typed"
    mine = validator.validate(exchange("POST", url, 422, VALIDATION_ERROR, request=bad))
    theirs = validator.validate(exchange("POST", url, 422, VALIDATION_ERROR, request=bad, agent=OTHER))
    assert (mine.operator_requests, len(mine.violations)) == (1, 1)
    assert "modified_by" in mine.violations[0].message
    assert (theirs.operator_requests, len(theirs.violations)) == (0, 0)


def test_concrete_path_wins_over_a_template(validator: ContractValidator) -> None:
    upsert = validator.find("POST", "/api/v4/workspaces/demo/workflows/sync-typed")
    read = validator.find("GET", "/api/v4/workspaces/demo/workflows/sync-typed")
    assert upsert is not None
    assert upsert.template.endswith("/sync-typed")
    assert read is not None
    assert read.template.endswith("/{workflow_name}")
    patch = validator.find("PATCH", "/api/v3/workspaces/demo")
    get = validator.find("GET", "/api/v3/workspaces/demo")
    assert patch is not None
    assert patch.template == "/api/v3/workspaces/{workspace_name}"
    assert get is not None
    assert get.template == "/api/v3/workspaces/{workspace_short_name}"
    assert validator.find("PUT", "/api/v3/workspaces/demo") is None


def test_counts_and_summary_over_a_file(validator: ContractValidator, tmp_path: Path) -> None:
    lines = [
        MUST_PASS["workspace status"],
        MUST_PASS["bad login"],
        exchange("GET", "/api/v3/workspaces/demo/status", 200, {"workspace": True}, agent=OTHER),
        MUST_PASS["fault: injected 503"],
        MUST_PASS["fault: dropped connection"],
        MUST_PASS["documented dialect is not checked"],
    ]
    path = tmp_path / "exchanges-1.jsonl"
    text = "".join(json.dumps(line) + "\n" for line in lines)
    path.write_text(text + "{not json\n\n" + '{"half": ', encoding="utf-8")
    report = validator.validate_file(path)
    assert report.exchanges == 5
    assert report.operator_requests == 2
    assert report.responses == 4  # the dropped connection has none
    assert report.faults == 2
    assert report.documented == 1
    assert [(v.kind, v.where) for v in report.violations] == [
        ("response", "exchanges-1.jsonl:3"),
        ("record", "exchanges-1.jsonl:7"),
    ]
    assert (
        report.summary() == "contract: 5 exchanges checked (2 operator requests, 4 responses), 2 violations"
    )
