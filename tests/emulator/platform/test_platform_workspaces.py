"""Platform dialect: workspaces (create with auto-suffix, PATCH, delete cascade), paging, status,
index health, runners, issues."""

from __future__ import annotations

import httpx
import pytest

from tests.emulator.platform.conftest import conform
from tests.support.emulator import EmulatorError, EmulatorProcess

WS = "/api/v3/workspaces/{workspace_name}"
WSS = "/api/v3/workspaces/{workspace_short_name}"


def test_create_answers_the_create_response(api: httpx.Client) -> None:
    created = api.post(
        "v3/workspaces", json={"name": "demo", "spec": {"configProvided": [{"name": "a", "value": "1"}]}}
    )
    assert created.status_code == 201
    assert conform(created, "/api/v3/workspaces") == {
        "name": "demo",
        "repo_url": "https://git.emulator.invalid/workspaces/demo.git",
        "status": "ready",
        "renamed_from": None,
    }
    body = conform(api.get("v3/workspaces/demo"), WSS)
    assert body["name"] == "demo"
    assert body["configProvided"] == [{"name": "a", "value": "1"}]
    assert body["owner"] == {"id": 1, "email": "admin@example.com", "fullName": "admin"}
    assert body["openIssuesCount"] == 0


def test_taken_and_reserved_names_are_suffixed(api: httpx.Client, emulator: EmulatorProcess) -> None:
    assert api.post("v3/workspaces", json={"name": "myws"}).json()["renamed_from"] is None
    second = api.post("v3/workspaces", json={"name": "myws"}).json()
    assert (second["name"], second["renamed_from"]) == ("myws-2", "myws")
    assert emulator.reserve_names("hidden", "hidden-2") == ["hidden", "hidden-2"]
    third = api.post("v3/workspaces", json={"name": "hidden"}).json()
    assert (third["name"], third["renamed_from"]) == ("hidden-3", "hidden")
    assert api.get("v3/workspaces/hidden").status_code == 404
    assert emulator.state()["reservedNames"] == ["hidden", "hidden-2"]


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"name": "a"}, ["body", "name"], "string_too_short"),
        ({"name": "x" * 64}, ["body", "name"], "string_too_long"),
        ({"name": "Bad_Name"}, ["body", "name"], "string_pattern_mismatch"),
        ({"name": 5}, ["body", "name"], "string_type"),
        ({"name": "ok", "spec": []}, ["body", "spec"], "model_attributes_type"),
        ([], ["body"], "model_attributes_type"),
    ],
)
def test_create_validation(api: httpx.Client, body: object, loc: list[str], kind: str) -> None:
    response = api.post("v3/workspaces", json=body)
    assert response.status_code == 422
    detail = conform(response, "/api/v3/workspaces")["detail"]
    assert [(error["loc"], error["type"]) for error in detail] == [(loc, kind)]


def test_unknown_create_keys_are_ignored(api: httpx.Client) -> None:
    assert api.post("v3/workspaces", json={"name": "extra", "displayName": "X"}).status_code == 201


def test_limit_offset_paging(api: httpx.Client) -> None:
    for index in range(5):
        api.post("v3/workspaces", json={"name": f"w{index}"})
    page = conform(api.get("v3/workspaces", params={"limit": 2, "offset": 2}), "/api/v3/workspaces")
    assert [w["name"] for w in page["results"]] == ["w2", "w3"]
    assert page["count"] == 5
    assert "offset=4" in page["next"]
    assert page["next"].startswith("http")
    assert "offset=0" in page["previous"]
    last = api.get("v3/workspaces", params={"limit": 2, "offset": 4}).json()
    assert (len(last["results"]), last["next"]) == (1, None)
    assert api.get("v3/workspaces", params={"offset": 10}).json()["results"] == []
    assert len(api.get("v3/workspaces").json()["results"]) == 5
    assert api.get("v3/workspaces", params={"limit": 1001}).status_code == 422
    assert api.get("v3/workspaces", params={"limit": "x"}).json()["detail"][0]["type"] == "int_parsing"
    assert api.get("v3/workspaces", params={"unknown": "1"}).status_code == 200


def test_patch_applies_snake_case_and_ignores_the_rest(api: httpx.Client, workspace: str) -> None:
    response = api.patch(
        f"v3/workspaces/{workspace}",
        json={
            "alias": "Demo",
            "description": "the demo",
            "enabled_locations": ["loc-1"],
            "config_provided": [{"name": "k", "value": "v"}],
            "slx_groups": [{"name": "g", "slxs": ["a"]}],
            "enabledLocations": ["ignored"],
            "displayName": "ignored",
        },
    )
    assert response.status_code == 200
    body = conform(response, WS)
    assert body["alias"] == "Demo"
    assert body["description"] == "the demo"
    assert body["enabledLocations"] == ["loc-1"]
    assert body["configProvided"] == [{"name": "k", "value": "v"}]
    assert body["slxGroups"] == [{"name": "g", "slxs": ["a"]}]
    nulls = api.patch(f"v3/workspaces/{workspace}", json={"alias": None, "enabledLocations": []}).json()
    assert nulls["alias"] == "Demo"
    assert nulls["enabledLocations"] == ["loc-1"]
    wrong = api.patch(f"v3/workspaces/{workspace}", json={"enabled_locations": "loc"})
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"] == ["body", "enabled_locations"]
    assert api.patch("v3/workspaces/nope", json={}).status_code == 404


def test_delete_cascades_with_steps(api: httpx.Client, emulator: EmulatorProcess, workspace: str) -> None:
    api.post(f"v4/workspaces/{workspace}/workflows/sync-typed", json={"payload": {"name": "wf"}})
    api.post(f"v4/workspaces/{workspace}/personas/sync-typed", json={"payload": {"name": "p"}})
    api.post(f"v3/workspaces/{workspace}/runsessions", json={"runRequests": [{"slxName": f"{workspace}--s"}]})
    emulator.open_issue(workspace, "t", 2)
    api.post("v3/workspaces", json={"name": "kept"})
    deleted = api.delete(f"v3/workspaces/{workspace}")
    assert deleted.status_code == 200
    body = conform(deleted, WS)
    assert (body["workspace"], body["status"], body["async_task_id"]) == (workspace, "deleted", None)
    details = {step["key"]: step["detail"] for step in body["steps"]}
    assert details == {
        "workflows": "1 deleted",
        "personas": "1 deleted",
        "run_sessions": "1 deleted",
        "issues": "1 deleted",
        "workspace": "",
    }
    assert all(step["status"] == "done" for step in body["steps"])
    state = emulator.state()
    assert [w["name"] for w in state["workspaces"]] == ["kept"]
    assert state["workflows"] == state["personas"] == state["runSessions"] == state["issues"] == []
    assert api.delete(f"v3/workspaces/{workspace}").status_code == 404
    assert api.post("v3/workspaces", json={"name": workspace}).json()["renamed_from"] is None


def test_status_index_health_and_runners(
    api: httpx.Client, emulator: EmulatorProcess, workspace: str
) -> None:
    assert conform(api.get(f"v3/workspaces/{workspace}/status"), f"{WS}/status") == {
        "workspace": True,
        "sync": True,
    }
    index = conform(api.get(f"v3/workspaces/{workspace}/index-health"), f"{WS}/index-health")
    assert index["status"] == "ok"
    assert conform(api.get(f"v3/workspaces/{workspace}/runners"), f"{WS}/runners") == []
    emulator.set_health(workspace, sync=False, index_health={"status": "stale", "indexedResources": 12})
    assert api.get(f"v3/workspaces/{workspace}/status").json() == {"workspace": True, "sync": False}
    index = api.get(f"v3/workspaces/{workspace}/index-health").json()
    assert (index["status"], index["indexedResources"]) == ("stale", 12)
    set_runners = emulator.set_runners(
        workspace,
        [
            {"name": "loc-1", "health": "online"},
            {"name": "loc-2", "value": "v2", "health": "stale", "lastHeartbeat": "2026-01-01T00:00:00Z"},
            {"name": "loc-3", "health": "unknown"},
        ],
    )
    assert [r["name"] for r in set_runners] == ["loc-1", "loc-2", "loc-3"]
    runners = conform(api.get(f"v3/workspaces/{workspace}/runners"), f"{WS}/runners")
    assert [(r["name"], r["value"], r["health"]) for r in runners] == [
        ("loc-1", "loc-1", "online"),
        ("loc-2", "v2", "stale"),
        ("loc-3", "loc-3", "unknown"),
    ]
    assert runners[0]["secondsSinceHeartbeat"] < 60
    assert runners[1]["lastHeartbeat"].startswith("2026-01-01T00:00:00")
    assert runners[1]["secondsSinceHeartbeat"] > 0
    assert (runners[2]["lastHeartbeat"], runners[2]["secondsSinceHeartbeat"]) == (None, None)
    for bad in ([{"name": "x", "health": "dead"}], [{"health": "online"}], {"name": "x"}):
        with pytest.raises(EmulatorError, match="400"):
            emulator.set_runners(workspace, bad)  # type: ignore[arg-type]
    with pytest.raises(EmulatorError, match="404"):
        emulator.set_runners("nope", [])


def test_issues(api: httpx.Client, emulator: EmulatorProcess, workspace: str) -> None:
    down = emulator.open_issue(workspace, "down", 1, "api")
    vague = emulator.open_issue(workspace, None, None, "db", task_title="Check db")
    minor = emulator.open_issue(workspace, "noisy", 3, "logs")
    closed = emulator.close_issue(workspace, minor["id"])
    assert closed["closedAt"] is not None
    assert vague["title"] is None
    assert vague["severity"] is None
    assert vague["taskTitle"] == "Check db"
    template = f"{WS}/issues"

    def ids(**params: str | int) -> list[int]:
        response = api.get(f"v3/workspaces/{workspace}/issues", params=params)
        assert response.status_code == 200, response.text
        return [issue["id"] for issue in conform(response, template)["results"]]

    assert ids() == [down["id"], vague["id"], minor["id"]]
    assert ids(closed="false") == [down["id"], vague["id"]]
    assert ids(closed="true") == [minor["id"]]
    assert ids(severity__lte=2) == [down["id"]]
    page = api.get(f"v3/workspaces/{workspace}/issues", params={"limit": 1, "offset": 1}).json()
    assert (page["limit"], page["offset"], page["count"]) == (1, 1, 3)
    assert api.get(f"v3/workspaces/{workspace}/issues", params={"limit": 251}).status_code == 422
    assert api.get(f"v3/workspaces/{workspace}/issues", params={"limit": 250}).status_code == 200
    assert api.get(f"v3/workspaces/{workspace}/issues", params={"closed": "maybe"}).status_code == 422
    assert api.get(f"v3/workspaces/{workspace}").json()["openIssuesCount"] == 2
    with pytest.raises(EmulatorError, match="400"):
        emulator.open_issue(workspace, "x", 7)
