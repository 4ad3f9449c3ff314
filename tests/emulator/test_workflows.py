"""Workflows: CRUD, duplicates, definition validation, runs and their lifecycle, webhook tokens."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.support.emulator import EmulatorProcess

DEFINITION = {
    "fromActivities": [
        {
            "name": "on-alert",
            "displayName": "On alert",
            "description": "Investigate",
            "match": {"activityVerbs": ["alert"], "slxs": ["api-health"]},
            "actions": [
                {
                    "tasks": {
                        "slx": "api-health",
                        "persona": "eager-edgar",
                        "titles": ["Check"],
                        "sessionTTL": "20m",
                    }
                }
            ],
        }
    ]
}


def _wait_for(api: httpx.Client, path: str, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = api.get(path).json()
        if predicate(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_crud(api: httpx.Client, workspace: str) -> None:
    base = f"workspaces/{workspace}/workflows/"
    created = api.post(base, json={"name": "wf", "definition": DEFINITION})
    assert created.status_code == 201
    workflow = created.json()
    assert isinstance(workflow["id"], int)
    assert workflow["definition"] == DEFINITION
    assert set(workflow) == {"id", "name", "definition", "createdAt", "updatedAt"}
    assert api.get(f"{base}{workflow['id']}").json() == workflow
    assert api.get(f"{base}{workflow['id']}/").json() == workflow
    assert api.get(base).json()["results"] == [workflow]
    replaced = api.put(f"{base}{workflow['id']}", json={"name": "wf-renamed"})
    assert replaced.status_code == 200
    assert replaced.json()["name"] == "wf-renamed"
    assert replaced.json()["definition"] == {"fromActivities": []}
    assert replaced.json()["id"] == workflow["id"]
    assert api.delete(f"{base}{workflow['id']}").status_code == 204
    assert api.get(f"{base}{workflow['id']}").status_code == 404
    assert api.delete(f"{base}{workflow['id']}").status_code == 404


def test_patch_is_not_allowed(api: httpx.Client, workspace: str) -> None:
    workflow = api.post(f"workspaces/{workspace}/workflows/", json={"name": "wf"}).json()
    response = api.patch(f"workspaces/{workspace}/workflows/{workflow['id']}", json={"name": "x"})
    assert response.status_code == 405
    assert "PATCH" not in response.headers["Allow"]


def test_names_are_not_unique(api: httpx.Client, workspace: str, emulator: EmulatorProcess) -> None:
    first = api.post(f"workspaces/{workspace}/workflows/", json={"name": "same"}).json()
    second = api.post(f"workspaces/{workspace}/workflows/", json={"name": "same"}).json()
    assert first["id"] != second["id"]
    assert api.get(f"workspaces/{workspace}/workflows/").json()["count"] == 2
    assert [w["name"] for w in emulator.state()["workflows"]] == ["same", "same"]
    assert emulator.write_count() == 3  # the workspace and two workflows


def test_ids_are_scoped_to_their_workspace(api: httpx.Client, workspace: str) -> None:
    api.post("workspaces/", json={"name": "other"})
    workflow = api.post("workspaces/other/workflows/", json={"name": "wf"}).json()
    assert api.get(f"workspaces/{workspace}/workflows/{workflow['id']}").status_code == 404
    assert api.get(f"workspaces/{workspace}/workflows/not-a-number").status_code == 404
    assert api.get(f"workspaces/{workspace}/workflows/99999999999999999999999").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "UPPER"}, "name"),
        ({"name": "wf", "definition": []}, "definition"),
        ({"name": "wf", "definition": {"fromActivities": {}}}, "definition.fromActivities"),
        ({"name": "wf", "definition": {"activities": []}}, "definition.activities"),
        ({"name": "wf", "definition": {"fromActivities": [{}]}}, "definition.fromActivities.0.name"),
        (
            {"name": "wf", "definition": {"fromActivities": [{"name": "  "}]}},
            "definition.fromActivities.0.name",
        ),
        (
            {"name": "wf", "definition": {"fromActivities": [{"name": "a", "match": {"slxs": "x"}}]}},
            "definition.fromActivities.0.match.slxs",
        ),
        (
            {
                "name": "wf",
                "definition": {
                    "fromActivities": [{"name": "a", "actions": [{"tasks": {"sessionTTL": "soon"}}]}]
                },
            },
            "definition.fromActivities.0.actions.0.tasks.sessionTTL",
        ),
        (
            {"name": "wf", "definition": {"fromActivities": [{"name": "a", "actions": [{"task": {}}]}]}},
            "definition.fromActivities.0.actions.0.task",
        ),
        ({"name": "wf", "id": "x", "extra": 1}, "extra"),
    ],
)
def test_validation(api: httpx.Client, workspace: str, body: dict[str, Any], field: str) -> None:
    response = api.post(f"workspaces/{workspace}/workflows/", json=body)
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert api.get(f"workspaces/{workspace}/workflows/").json()["count"] == 0


def test_put_validation_leaves_the_object_alone(api: httpx.Client, workspace: str) -> None:
    workflow = api.post(
        f"workspaces/{workspace}/workflows/", json={"name": "wf", "definition": DEFINITION}
    ).json()
    response = api.put(f"workspaces/{workspace}/workflows/{workflow['id']}", json={"definition": DEFINITION})
    assert response.status_code == 400
    assert response.json() == {"name": ["This field is required."]}
    assert api.get(f"workspaces/{workspace}/workflows/{workflow['id']}").json() == workflow


def test_run_completes(api: httpx.Client, workspace: str, emulator: EmulatorProcess) -> None:
    emulator.set_runs("completed", step_seconds=0.2)
    workflow = api.post(
        f"workspaces/{workspace}/workflows/", json={"name": "wf", "definition": DEFINITION}
    ).json()
    response = api.post(
        f"workspaces/{workspace}/workflows/{workflow['id']}/run", json={"context": {"why": "test"}}
    )
    assert response.status_code == 200
    run = response.json()
    assert run["status"] == "queued"
    assert run["workflowId"] == workflow["id"]
    assert run["workflowName"] == "wf"
    assert run["triggeredBy"] == "user"
    assert run["context"] == {"why": "test"}
    assert run["startedAt"] is None
    assert run["completedAt"] is None
    session_path = f"workspaces/{workspace}/runsessions/{run['runSessionId']}"
    session = api.get(session_path).json()
    assert session["source"] == "workflow"
    assert session["workflowId"] == workflow["id"]
    assert session["isActive"] is True
    assert session["runRequests"][0]["slxName"] == "api-health"
    seen = {session["status"]}
    deadline = time.monotonic() + 10
    while session["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
        session = api.get(session_path).json()
        seen.add(session["status"])
    assert session["status"] == "completed"
    assert session["isActive"] is False
    assert "started" in seen
    stored = next(r for r in emulator.state()["runs"] if r["id"] == run["id"])
    assert stored["status"] == "completed"
    assert stored["startedAt"] is not None
    assert stored["completedAt"] is not None
    assert stored["failedAt"] is None


@pytest.mark.parametrize("outcome", ["failed", "completed_with_errors"])
def test_run_outcome_is_configurable(
    api: httpx.Client, workspace: str, emulator: EmulatorProcess, outcome: str
) -> None:
    emulator.set_runs(outcome, step_seconds=0.1)
    workflow = api.post(f"workspaces/{workspace}/workflows/", json={"name": "wf"}).json()
    run = api.post(f"workspaces/{workspace}/workflows/{workflow['id']}/run").json()
    session = _wait_for(
        api, f"workspaces/{workspace}/runsessions/{run['runSessionId']}", lambda s: s["status"] == outcome
    )
    assert session["status"] == outcome
    assert session["isActive"] is False
    stored = next(r for r in emulator.state()["runs"] if r["id"] == run["id"])
    assert stored["statusMessage"]
    if outcome == "failed":
        assert stored["failedAt"] is not None
        assert stored["completedAt"] is None
    else:
        assert stored["completedAt"] is not None


def test_run_of_unknown_workflow_is_404(api: httpx.Client, workspace: str) -> None:
    assert api.post(f"workspaces/{workspace}/workflows/424242/run").status_code == 404


def test_run_body_validation(api: httpx.Client, workspace: str) -> None:
    workflow = api.post(f"workspaces/{workspace}/workflows/", json={"name": "wf"}).json()
    response = api.post(f"workspaces/{workspace}/workflows/{workflow['id']}/run", json={"context": []})
    assert response.status_code == 400
    assert "context" in response.json()
    assert api.get(f"workspaces/{workspace}/runsessions").json()["count"] == 0


def test_webhook_token_is_stable_and_triggers_runs(
    api: httpx.Client, workspace: str, emulator: EmulatorProcess
) -> None:
    first = api.post(f"workspaces/{workspace}/workflows/", json={"name": "a"}).json()
    second = api.post(f"workspaces/{workspace}/workflows/", json={"name": "b"}).json()
    token = api.get(f"workspaces/{workspace}/workflows/{first['id']}/token").json()
    assert set(token) == {"token", "webhookUrl"}
    assert token["token"]
    assert token["webhookUrl"].startswith(emulator.url + "/")
    assert api.get(f"workspaces/{workspace}/workflows/{first['id']}/token").json() == token
    api.put(f"workspaces/{workspace}/workflows/{first['id']}", json={"name": "a2"})
    assert api.get(f"workspaces/{workspace}/workflows/{first['id']}/token").json() == token
    assert api.get(f"workspaces/{workspace}/workflows/{second['id']}/token").json()["token"] != token["token"]
    triggered = httpx.post(token["webhookUrl"], json={"context": {"alert": "x"}})
    assert triggered.status_code == 200
    assert triggered.json()["workflowId"] == first["id"]
    assert triggered.json()["triggeredBy"] == "system"
    assert httpx.post(emulator.api_url + "webhooks/workflows/wrong").status_code == 404
