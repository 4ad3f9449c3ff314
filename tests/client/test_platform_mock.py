"""The platform dialect's edge cases on a scripted server: what the emulator is not made to do (a
server that caps page sizes, lies about counts, hands out the webhook token once, renames a
workspace, answers with FastAPI validation errors). The emulator-backed and contract tests prove
the ordinary paths."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from runwhen_operator.runwhen import apis, auth, client, dialect, errors, platform
from tests.client.mockapi import BASE, Recorder, json_response, token_pair


def make(handler: Any, credentials: Any = None) -> tuple[platform.PlatformApi, Recorder]:
    recorder = Recorder(handler)
    rw = client.RunWhenClient(
        BASE,
        credentials or auth.TokenCredentials("static-token-value"),
        transport=httpx.MockTransport(recorder),
        backoff_base=0.001,
        backoff_cap=0.05,
        requests_per_second=10_000.0,
        burst=10_000,
    )
    return platform.PlatformApi(rw), recorder


def body(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


def page(items: list[Any], count: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"results": items, "next": None, "previous": None}
    if count is not None:
        out["count"] = count
    return out


async def test_paths_have_no_trailing_slash_and_pages_are_computed() -> None:
    names = [f"ws-{i}" for i in range(7)]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v3/workspaces"
        offset = int(request.url.params["offset"])
        # The server caps the page at 3 whatever was asked, and sends a next link on another host.
        items = [{"id": i, "name": n} for i, n in enumerate(names)][offset : offset + 3]
        return json_response(200, {**page(items, len(names)), "next": "https://evil.example/x"})

    api, rec = make(handler)
    listed = await api.workspace_listing()
    assert [w["name"] for w in listed] == names
    assert [r.url.params["offset"] for r in rec.requests] == ["0", "3", "6"]
    assert {r.url.host for r in rec.requests} == {httpx.URL(BASE).host}


async def test_a_server_that_ignores_the_offset_cannot_loop_the_client() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(200, page([{"id": 1, "name": "same"}], 10))

    api, rec = make(handler)
    listed = await api.workspace_listing()
    # Ten items were promised; the same one came ten times: the listing ends with the count.
    assert len(rec.requests) == 10
    assert len(listed) == 10


async def test_fastapi_validation_errors_name_the_field() -> None:
    detail = {
        "detail": [
            {"loc": ["body", "payload", "definition", "fromActivities", 0, "name"], "msg": "Field required"},
            {"loc": ["body", "payload", "bogus"], "msg": "Extra inputs are not permitted", "type": "x"},
        ]
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(422, detail)

    api, _ = make(handler)
    with pytest.raises(errors.InvalidRequestError) as caught:
        await api.new_child(dialect.WORKFLOW, "ws", {"name": "wf", "definition": {"fromActivities": [{}]}})
    assert caught.value.field_errors == {
        "payload.definition.fromActivities[0].name": ["Field required"],
        "payload.bogus": ["Extra inputs are not permitted"],
    }
    assert "payload.definition.fromActivities[0].name: Field required" in str(caught.value)


async def test_workspace_patch_is_snake_case_and_maps_lists() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "PATCH"
        sent = body(request)
        return json_response(
            200,
            {
                "id": 1,
                "name": "ws",
                "alias": sent["alias"],
                "configProvided": sent["config_provided"],
                "slxGroups": sent["slx_groups"],
                "enabledLocations": sent["enabled_locations"],
            },
        )

    api, rec = make(handler)
    item = await api.change_workspace(
        "ws",
        {
            "displayName": "Shop",
            "configProvided": {"env": "prod"},
            "slxGroups": {"platform": ["a", "b"]},
            "enabledLocations": ["loc-1"],
        },
    )
    assert body(rec.requests[0]) == {
        "alias": "Shop",
        "config_provided": [{"name": "env", "value": "prod"}],
        "slx_groups": [{"name": "platform", "slxs": ["a", "b"]}],
        "enabled_locations": ["loc-1"],
    }
    assert item["displayName"] == "Shop"
    # The canonical form the engine compares with is the list form on both sides.
    assert api.workspace_body({"configProvided": {"env": "prod"}})["configProvided"] == item["configProvided"]


async def test_a_renamed_workspace_is_deleted_again_and_never_adopted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return json_response(
                201, {"name": "shop-2", "repo_url": "", "status": "ready", "renamed_from": "shop"}
            )
        assert (request.method, request.url.path) == ("DELETE", "/api/v3/workspaces/shop-2")
        return json_response(200, {"workspace": "shop-2", "status": "deleted", "steps": []})

    api, rec = make(handler)
    with pytest.raises(errors.WorkspaceRenamedError) as caught:
        await api.new_workspace("shop", {"displayName": "Shop"})
    assert (caught.value.requested, caught.value.given) == ("shop", "shop-2")
    assert '"shop-2" was deleted again' in str(caught.value)
    assert [r.method for r in rec.requests] == ["POST", "DELETE"]


@pytest.mark.parametrize("renamed_from", [None, "someone-else"])
async def test_a_create_answered_with_another_workspace_deletes_nothing(renamed_from: str | None) -> None:
    """Only an answer that says it auto-suffixed this name is a rename; any other name is an answer
    about another workspace (which may be someone's), refused without a DELETE."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST", "nothing but the create is sent"
        return json_response(
            201, {"name": "decoy", "repo_url": "", "status": "ready", "renamed_from": renamed_from}
        )

    api, rec = make(handler)
    with pytest.raises(errors.IdentityMismatchError) as caught:
        await api.new_workspace("shop", {"displayName": "Shop"})
    assert (caught.value.expected, caught.value.given) == ("shop", "decoy")
    assert [r.method for r in rec.requests] == ["POST"]


async def test_upserts_send_the_full_name_and_are_replayed_after_a_lost_answer() -> None:
    attempts = {"sync": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/sync-typed"):
            attempts["sync"] += 1
            assert body(request) == {"payload": {"name": "ws--triage", "definition": {"fromActivities": []}}}
            if attempts["sync"] == 1:
                return json_response(503, {"detail": "try again"})
            return json_response(200, {"status": "created"})
        assert request.url.path == "/api/v4/workspaces/ws/workflows/triage"
        return json_response(
            200,
            {"id": 4, "name": "ws--triage", "shortName": "triage", "workspaceId": 1, "definition": {}},
        )

    api, _ = make(handler)
    item = await api.new_child(
        dialect.WORKFLOW, "ws", {"name": "triage", "definition": {"fromActivities": []}, "ignored": 1}
    )
    assert attempts["sync"] == 2  # a POST, but an upsert by name: safe to send again
    # The answer named no id: the object was read back.
    assert (item["name"], item["id"], item["serverName"]) == ("triage", 4, "ws--triage")


async def test_an_upsert_answer_with_the_id_needs_no_read_back() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/personas/sync-typed")
        return json_response(200, {"status": "created", "name": "ws--sre", "resourceId": 12})

    api, rec = make(handler)
    item = await api.new_child(dialect.PERSONA, "ws", {"name": "sre", "fullName": "SRE"})
    assert item == {"name": "sre", "fullName": "SRE", "id": 12, "serverName": "ws--sre"}
    assert len(rec.requests) == 1


async def test_the_webhook_token_is_rotated_when_it_was_read_before() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path.rsplit('/', 1)[-1]}")
        if request.method == "PATCH":
            return json_response(202, {})
        if calls.count("GET token") == 1:
            return json_response(409, {"detail": "already retrieved"})
        return json_response(200, {"webhook_url": "https://hook/x", "webhook_token": "s3cr3t"})

    api, _ = make(handler)
    token = await api.webhook_token("ws", "triage", rotate=False)
    assert token.token.get_secret_value() == "s3cr3t"
    assert calls == ["GET token", "PATCH rotate-token", "GET token"]
    assert "s3cr3t" not in repr(token)


async def test_email_logins_are_sent_as_email() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/token/":
            sent = body(request)
            assert set(sent) == {"email", "password"}
            return json_response(200, token_pair())
        return json_response(200, page([], 0))

    api, rec = make(handler, auth.PasswordCredentials("ops@example.com", "pw"))
    await api.verify()
    assert [r.url.path for r in rec.requests] == ["/api/v3/token/", "/api/v3/workspaces"]


@pytest.mark.parametrize(
    ("answer", "expected", "probes"),
    [
        # A platform server redirects the slashed path (or has no such path); its own probe follows.
        (httpx.Response(307, headers={"Location": "/api/v3/workspaces"}), dialect.Dialect.PLATFORM, 2),
        (httpx.Response(404, json={"detail": "Not Found"}), dialect.Dialect.PLATFORM, 2),
        # A documented server answers the slashed path.
        (httpx.Response(200, json=page([], 0)), dialect.Dialect.DOCUMENTED, 1),
    ],
)
async def test_detection_probes_the_documented_path_first(
    answer: httpx.Response, expected: dialect.Dialect, probes: int
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/workspaces/":
            return answer
        assert request.url.path == "/api/v3/workspaces"
        return json_response(200, page([], 0))

    api, rec = make(handler)
    detected = await apis.verify(api.client, None)
    assert detected.api_dialect is expected
    assert len(rec.requests) == probes


async def test_detection_does_not_hide_refused_credentials() -> None:
    api, _ = make(lambda request: json_response(401, {"detail": "Invalid token"}))
    with pytest.raises(errors.AuthenticationError):
        await apis.verify(api.client, None)


def _session(requests: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": 9, "name": "k8s-workflowrun-u1", "active": True, "runRequests": requests, **extra}


@pytest.mark.parametrize(
    ("session", "phase"),
    [
        (_session([{"id": 1}]), "Queued"),
        (_session([{"id": 1}], active=False), "Canceled"),
        (_session([{"id": 1, "requestTime": "2026-12-01T10:00:00Z"}]), "Started"),
        (
            _session(
                [
                    {
                        "id": 1,
                        "requestTime": "2026-12-01T10:00:00Z",
                        "responseTime": "2026-12-01T10:01:00Z",
                        "passedTitles": "a||b",
                    }
                ]
            ),
            "Completed",
        ),
        (
            _session(
                [
                    {"id": 1, "responseTime": "2026-12-01T10:01:00Z", "passedTitles": "a"},
                    {"id": 2, "responseTime": "2026-12-01T10:02:00Z", "failedTitles": "b"},
                ],
                hasFailures=True,
            ),
            "CompletedWithErrors",
        ),
        (_session([{"id": 1, "responseTime": "2026-12-01T10:01:00Z", "failedTitles": "a"}]), "Failed"),
    ],
)
async def test_run_phases_come_from_the_run_requests(session: dict[str, Any], phase: str) -> None:
    api, _ = make(lambda request: json_response(200, session))
    state = await api.get_run(dialect.WorkflowTarget("ws", 1, "triage"), 9)
    assert state.phase == phase
    if phase in ("Completed", "CompletedWithErrors", "Failed"):
        assert state.completed_at is not None


async def test_a_run_is_a_named_session_of_the_workflow_tasks_and_is_found_again() -> None:
    definition = {
        "fromActivities": [
            {
                "name": "a",
                "actions": [
                    {"tasks": {"slx": "k8s-health", "persona": "eager-edgar", "titles": ["Check pods"]}},
                    {"tasks": {"slx": "k8s-health", "titles": ["Check nodes"]}},
                    {"tasks": {"slx": "ws--db", "titles": []}},
                ],
            }
        ]
    }
    created: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v4/workspaces/ws/workflows/triage":
            return json_response(
                200, {"id": 4, "name": "ws--triage", "shortName": "triage", "definition": definition}
            )
        if request.method == "POST":
            created.append(body(request))
            return json_response(201, _session([{"id": 1}], id=9))
        assert path == "/api/v3/workspaces/ws/runsessions"
        assert set(request.url.params) == {"created__gte", "page", "page-size"}
        return json_response(
            200, page([_session([{"id": 1}], id=9, name="other"), _session([{"id": 1}], id=9)], 2)
        )

    api, _ = make(handler)
    target = await api.resolve_workflow(dialect.WorkflowTarget("ws", None, "triage"))
    assert (target.id, target.definition) == (4, definition)
    state = await api.start_run(target, "u1", {"alert": "x"})
    assert state.session_id == 9
    sent = created[0]
    assert sent["name"] == "k8s-workflowrun-u1"
    assert sent["dedupe"] == {"enabled": False}
    assert sent["personaName"] == "ws--eager-edgar"
    assert [(r["slxName"], r["taskTitles"]) for r in sent["runRequests"]] == [
        ("ws--k8s-health", ["Check pods", "Check nodes"]),
        ("ws--db", None),
    ]
    found = await api.find_run(target, "u1", datetime(2026, 12, 1, tzinfo=UTC))
    assert found is not None
    assert found.session_id == 9
    assert await api.find_run(target, "u2", datetime(2026, 12, 1, tzinfo=UTC)) is None


async def test_health_is_built_from_status_and_runners() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status"):
            return json_response(200, {"workspace": True, "sync": True})
        return json_response(
            200,
            [
                {"name": "loc-1", "value": "u-1", "health": "online", "secondsSinceHeartbeat": 4},
                {"name": "loc-2", "value": "u-2", "health": "stale", "secondsSinceHeartbeat": 900},
            ],
        )

    api, _ = make(handler)
    report = await api.workspace_report("ws", include_details=True, include_metrics=False)
    assert report.health.status == "degraded"
    assert [(d.component, d.status) for d in report.health.details or []] == [
        ("runner/loc-1", "healthy"),
        ("runner/loc-2", "degraded"),
    ]


async def test_a_server_without_runner_listing_is_not_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status"):
            return json_response(200, {"workspace": True, "sync": True})
        return json_response(404, {"detail": "Not Found"})

    api, _ = make(handler)
    report = await api.workspace_report("ws", include_details=True, include_metrics=False)
    assert report.health.status == "healthy"
    assert report.health.details == []


async def test_issues_with_null_fields_and_closed_ones() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert int(request.url.params["limit"]) <= 250
        items = [
            {"id": 1, "title": None, "taskTitle": "Check pods", "severity": None, "workspaceId": 1},
            {"id": 2, "title": "Disk", "severity": 2, "closedAt": "2026-12-01T10:00:00Z"},
            {"id": 3, "title": "CPU", "severity": 1, "slxName": "ws--k8s"},
        ]
        return json_response(200, {**page(items, 3), "limit": 250, "offset": 0})

    api, _ = make(handler)
    issues = await api.open_issues("ws", max_severity=4)
    assert [(i.id, i.title, i.severity) for i in issues] == [(1, "Check pods", None), (3, "CPU", 1)]


async def test_fields_the_document_would_refuse_are_refused_before_anything_is_sent() -> None:
    api, rec = make(lambda request: json_response(500, {"detail": "must not be called"}))
    with pytest.raises(errors.InvalidRequestError) as caught:
        await api.new_workspace("ws", {"slxGroups": ["k8s-health"], "enabledLocations": [1]})
    assert caught.value.field_errors == {
        "slxGroups[0]": ["must be an object"],
        "enabledLocations": ["must be a list of strings"],
    }
    assert rec.requests == []


async def test_fields_refused_after_the_create_leave_the_workspace_ours() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return json_response(201, {"name": "ws", "repo_url": "", "status": "ready", "renamed_from": None})
        detail = [{"loc": ["body", "enabled_locations", 0], "msg": "unknown location", "type": "value_error"}]
        return json_response(422, {"detail": detail})

    api, _ = make(handler)
    with pytest.raises(errors.RejectedAfterCreateError) as caught:
        await api.new_workspace("ws", {"enabledLocations": ["nowhere"]})
    assert caught.value.external_id == "ws"
    assert caught.value.field_errors == {"enabledLocations[0]": ["unknown location"]}
    assert "enabledLocations[0]: unknown location" in str(caught.value)
