"""Platform dialect: workflows and personas (sync-typed upserts, v3 and v4 reads, soft delete),
workflow runs and webhook tokens."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.emulator.platform.conftest import conform
from tests.support.emulator import EmulatorProcess

V3 = "/api/v3/workspaces/{workspace_short_name}"
V4 = "/api/v4/workspaces/{workspace_name}"
DEFINITION = {"fromActivities": [{"name": "a", "actions": [{"tasks": {"slx": "demo--s", "titles": ["t"]}}]}]}


def _sync(api: httpx.Client, workspace: str, kind: str, body: object) -> httpx.Response:
    return api.post(f"v4/workspaces/{workspace}/{kind}/sync-typed", json=body)


def test_workflow_upsert_statuses(api: httpx.Client, workspace: str) -> None:
    created = _sync(api, workspace, "workflows", {"payload": {"name": "demo--wf", "definition": DEFINITION}})
    assert created.status_code == 200
    answer = conform(created, f"{V4}/workflows/sync-typed")
    assert (answer["status"], answer["name"]) == ("created", "demo--wf")
    same = _sync(api, workspace, "workflows", {"payload": {"name": "wf", "definition": DEFINITION}}).json()
    assert same == {"status": "unchanged", "name": "demo--wf", "resourceId": answer["resourceId"]}
    changed = _sync(
        api, workspace, "workflows", {"payload": {"name": "demo--wf"}, "lastSyncedAt": "2026-01-01T00:00:00Z"}
    ).json()
    assert changed == {"status": "updated", "name": "demo--wf", "resourceId": answer["resourceId"]}
    assert api.get(f"v4/workspaces/{workspace}/workflows/wf").json()["definition"] == {}
    assert len(api.get(f"v4/workspaces/{workspace}/workflows").json()["results"]) == 1


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"payload": {"name": "wf"}, "extra": 1}, ["body", "extra"], "extra_forbidden"),
        ({"payload": {"name": "wf", "shortName": "wf"}}, ["body", "payload", "shortName"], "extra_forbidden"),
        ({"payload": {}}, ["body", "payload", "name"], "missing"),
        ({"name": "wf"}, ["body", "payload"], "missing"),
        ({"payload": {"name": "wf", "definition": []}}, ["body", "payload", "definition"], "dict_type"),
        ({"payload": {"name": "other--wf"}}, ["body", "payload", "name"], "value_error"),
        ({"payload": {"name": "wf"}, "lastSyncedAt": "soon"}, ["body", "lastSyncedAt"], "datetime_parsing"),
    ],
)
def test_workflow_sync_validation(
    api: httpx.Client, emulator: EmulatorProcess, workspace: str, body: object, loc: list[str], kind: str
) -> None:
    response = _sync(api, workspace, "workflows", body)
    assert response.status_code == 422
    detail = conform(response, f"{V4}/workflows/sync-typed")["detail"]
    assert (detail[0]["loc"], detail[0]["type"]) == (loc, kind)
    assert emulator.state()["workflows"] == []


def test_workflow_read_shapes(api: httpx.Client, workspace: str) -> None:
    rid = _sync(api, workspace, "workflows", {"payload": {"name": "wf", "definition": DEFINITION}}).json()[
        "resourceId"
    ]
    ws_id = api.get(f"v3/workspaces/{workspace}").json()["id"]
    v3 = conform(
        api.get(f"v3/workspaces/{workspace}/workflows/wf"), f"{V3}/workflows/{{workflow_short_name}}"
    )
    assert {k: v3[k] for k in ("id", "name", "shortName", "workspace", "definition", "spec", "status")} == {
        "id": rid,
        "name": "demo--wf",
        "shortName": "wf",
        "workspace": ws_id,
        "definition": DEFINITION,
        "spec": {},
        "status": {},
    }
    assert v3["created"] == v3["modified"]
    v4 = conform(api.get(f"v4/workspaces/{workspace}/workflows/wf"), f"{V4}/workflows/{{workflow_name}}")
    assert {k: v4[k] for k in ("id", "name", "shortName", "workspaceId", "definition")} == {
        "id": rid,
        "name": "demo--wf",
        "shortName": "wf",
        "workspaceId": ws_id,
        "definition": DEFINITION,
    }
    assert set(v4) == {"id", "name", "shortName", "workspaceId", "definition", "createdAt", "modifiedAt"}
    listed3 = conform(api.get(f"v3/workspaces/{workspace}/workflows"), f"{V3}/workflows")
    listed4 = conform(api.get(f"v4/workspaces/{workspace}/workflows", params={"limit": 1}), f"{V4}/workflows")
    assert listed3["results"] == [v3]
    assert listed4["results"] == [v4]
    assert api.get("v4/workspaces/nope/workflows").status_code == 404


def test_workflow_soft_delete_and_recreate(
    api: httpx.Client, emulator: EmulatorProcess, workspace: str
) -> None:
    first = _sync(api, workspace, "workflows", {"payload": {"name": "wf"}}).json()
    deleted = api.delete(f"v4/workspaces/{workspace}/workflows/wf")
    assert deleted.status_code == 200
    assert conform(deleted, f"{V4}/workflows/{{workflow_name}}") == {"status": "deleted", "name": "demo--wf"}
    assert api.get(f"v4/workspaces/{workspace}/workflows/wf").status_code == 404
    assert api.get(f"v3/workspaces/{workspace}/workflows/wf").status_code == 404
    assert api.get(f"v4/workspaces/{workspace}/workflows").json()["count"] == 0
    assert api.delete(f"v4/workspaces/{workspace}/workflows/wf").status_code == 404
    again = _sync(api, workspace, "workflows", {"payload": {"name": "wf"}}).json()
    assert again["status"] == "created"
    assert again["resourceId"] != first["resourceId"]
    stored = emulator.state()["workflows"]
    assert [(w["id"], w["deletedAt"] is not None) for w in stored] == [
        (first["resourceId"], True),
        (again["resourceId"], False),
    ]


def test_run_and_webhook_token(api: httpx.Client, emulator: EmulatorProcess, workspace: str) -> None:
    _sync(api, workspace, "workflows", {"payload": {"name": "wf", "definition": DEFINITION}})
    base = f"v3/workspaces/{workspace}/workflows/wf"
    template = f"{V3}/workflows/{{workflow_short_name}}"
    run = api.post(f"{base}/run")
    assert (run.status_code, conform(run, f"{template}/run")) == (202, {"status": "accepted"})
    assert len(emulator.state()["runs"]) == 1
    first = api.get(f"{base}/token")
    assert first.status_code == 200
    token = conform(first, f"{template}/token")
    assert set(token) == {"webhook_url", "webhook_token"}
    assert token["webhook_token"] not in token["webhook_url"]
    second = api.get(f"{base}/token")
    assert second.status_code == 409
    assert second.json() == {"detail": "The webhook token was already retrieved; rotate it to read a new one"}
    rotated = api.patch(f"{base}/rotate-token")
    assert (rotated.status_code, conform(rotated, f"{template}/rotate-token")) == (202, {})
    fresh = api.get(f"{base}/token").json()
    assert fresh["webhook_token"] != token["webhook_token"]
    assert api.get(f"{base}/token").status_code == 409
    url = conform(api.get(f"{base}/webhook-url"), f"{template}/webhook-url")
    assert url == {"webhook_url": token["webhook_url"]}
    assert api.post(f"v3/workspaces/{workspace}/workflows/nope/run").status_code == 404


PERSONA_DEFAULTS: dict[str, Any] = {
    "fullName": None,
    "description": None,
    "avatarUrl": None,
    "filterConfidenceThreshold": 0.5,
    "filterIssueSelectionStrategy": "MOST_SEVERE",
    "filterCodebundleTaskTags": [],
    "filterStopWords": [],
    "filterScope": None,
    "searchFilters": {},
    "runConfidenceThreshold": 0.95,
    "runConfig": {},
}


def test_persona_full_upsert(api: httpx.Client, workspace: str) -> None:
    full = {
        "name": "demo--eager",
        "fullName": "Eager Edgar",
        "description": "d",
        "avatarUrl": "https://x/a.png",
        "filterConfidenceThreshold": 0.7,
        "filterIssueSelectionStrategy": "ALL",
        "filterCodebundleTaskTags": ["k8s"],
        "filterStopWords": ["noise"],
        "filterScope": "namespace:a",
        "searchFilters": {"a": 1},
        "runConfidenceThreshold": 0.9,
        "runConfig": {"b": 2},
    }
    created = _sync(api, workspace, "personas", {"payload": full})
    assert conform(created, f"{V4}/personas/sync-typed")["status"] == "created"
    v4 = conform(
        api.get(f"v4/workspaces/{workspace}/personas/eager"), f"{V4}/personas/{{persona_short_name}}"
    )
    assert {key: v4[key] for key in full} == full
    assert v4["shortName"] == "eager"
    assert _sync(api, workspace, "personas", {"payload": full}).json()["status"] == "unchanged"
    lenient = _sync(api, workspace, "personas", {"payload": {"name": "eager", "colour": "blue"}})
    assert lenient.json()["status"] == "updated"
    reset = api.get(f"v4/workspaces/{workspace}/personas/eager").json()
    assert {key: reset[key] for key in PERSONA_DEFAULTS} == PERSONA_DEFAULTS
    v3 = conform(
        api.get(f"v3/workspaces/{workspace}/personas/eager"), f"{V3}/personas/{{persona_short_name}}"
    )
    assert (v3["name"], v3["shortName"], v3["workspace"]) == ("demo--eager", "eager", reset["workspaceId"])
    conform(api.get(f"v3/workspaces/{workspace}/personas"), f"{V3}/personas")
    conform(api.get(f"v4/workspaces/{workspace}/personas"), f"{V4}/personas")
    gallery = api.get(f"v3/workspaces/{workspace}").json()["personas"]
    assert gallery == [{"name": "eager", "fullName": "eager", "avatarUrl": ""}]


def test_persona_validation_and_soft_delete(api: httpx.Client, workspace: str) -> None:
    top = _sync(api, workspace, "personas", {"payload": {"name": "p"}, "extra": True})
    assert (top.status_code, top.json()["detail"][0]["loc"]) == (422, ["body", "extra"])
    typed = _sync(api, workspace, "personas", {"payload": {"name": "p", "filterConfidenceThreshold": "high"}})
    assert typed.json()["detail"][0]["loc"] == ["body", "payload", "filterConfidenceThreshold"]
    first = _sync(api, workspace, "personas", {"payload": {"name": "p"}}).json()
    deleted = api.delete(f"v4/workspaces/{workspace}/personas/p")
    assert (deleted.status_code, deleted.json()) == (200, {"status": "deleted", "name": "demo--p"})
    assert api.get(f"v4/workspaces/{workspace}/personas/p").status_code == 404
    assert api.get(f"v3/workspaces/{workspace}/personas").json()["count"] == 0
    again = _sync(api, workspace, "personas", {"payload": {"name": "p"}}).json()
    assert again["status"] == "created"
    assert again["resourceId"] != first["resourceId"]
