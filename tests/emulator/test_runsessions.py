"""Run sessions: create, filters, PATCH, and their issues."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.emulator import EmulatorProcess


def test_create_and_get(api: httpx.Client, workspace: str) -> None:
    created = api.post(
        f"workspaces/{workspace}/runsessions",
        json={
            "source": "alert",
            "context": {"alert": "cpu"},
            "runRequests": [{"slxName": "cpu", "taskTitles": ["t"]}],
        },
    )
    assert created.status_code == 201
    session = created.json()
    assert session["workspace"] == workspace
    assert session["source"] == "alert"
    assert session["isActive"] is True
    assert session["status"] is None
    assert session["workflowId"] is None
    assert session["runRequests"][0]["runbookName"] == "cpu"
    assert api.get(f"workspaces/{workspace}/runsessions/{session['id']}").json() == session
    assert api.get(f"workspaces/{workspace}/runsessions/{session['id']}/").json() == session


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "source"),
        ({"source": "email"}, "source"),
        ({"source": "user", "isActive": "yes"}, "isActive"),
        ({"source": "user", "runRequests": [{}]}, "runRequests.0.slxName"),
        ({"source": "user", "runRequests": [{"slxName": "a", "colour": 1}]}, "runRequests.0.colour"),
        ({"source": "user", "color": 1}, "color"),
    ],
)
def test_create_validation(api: httpx.Client, workspace: str, body: dict[str, object], field: str) -> None:
    response = api.post(f"workspaces/{workspace}/runsessions", json=body)
    assert response.status_code == 400
    assert field in response.json()


def test_filters(api: httpx.Client, workspace: str) -> None:
    base = f"workspaces/{workspace}/runsessions"
    user = api.post(
        base, json={"source": "user", "runRequests": [{"slxName": "a", "runbookName": "rb-a"}]}
    ).json()
    time.sleep(0.01)
    slack = api.post(base, json={"source": "slack"}).json()
    workflow = api.post(f"workspaces/{workspace}/workflows/", json={"name": "wf"}).json()
    run = api.post(f"workspaces/{workspace}/workflows/{workflow['id']}/run").json()

    def ids(**params: str | int) -> list[int]:
        response = api.get(base, params=params)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["results"]]

    assert ids() == [user["id"], slack["id"], run["runSessionId"]]
    assert ids(source="slack") == [slack["id"]]
    assert ids(workflowId=workflow["id"]) == [run["runSessionId"]]
    assert ids(runrequest__runbook__name="rb-a") == [user["id"]]
    assert ids(runrequest__runbook__name="nothing") == []
    assert ids(modified__lte=user["updatedAt"]) == [user["id"]]
    assert ids(modified__lte="2000-01-01T00:00:00Z") == []
    assert ids(modified__lte="2999-01-01T00:00:00+00:00") == ids()
    for params in ({"modified__lte": "yesterday"}, {"source": "email"}, {"workflowId": "x"}):
        response = api.get(base, params=params)
        assert response.status_code == 400
        assert list(response.json()) == list(params)


def test_patch(api: httpx.Client, workspace: str) -> None:
    base = f"workspaces/{workspace}/runsessions"
    session = api.post(base, json={"source": "api", "runRequests": [{"slxName": "a"}]}).json()
    patched = api.patch(
        f"{base}/{session['id']}",
        json={
            "isActive": False,
            "runRequests": [*session["runRequests"], {"slxName": "b", "taskTitles": ["x"]}],
        },
    )
    assert patched.status_code == 200
    body = patched.json()
    assert body["isActive"] is False
    assert body["source"] == "api"
    assert [r["slxName"] for r in body["runRequests"]] == ["a", "b"]
    assert body["runRequests"][0] == session["runRequests"][0]
    assert body["updatedAt"] > session["updatedAt"]
    bad = api.patch(f"{base}/{session['id']}", json={"runRequests": [{"id": 999999}]})
    assert bad.status_code == 400
    assert "runRequests.0.id" in bad.json()
    assert api.patch(f"{base}/{session['id']}", json={"source": "nope"}).status_code == 400
    assert api.get(f"{base}/{session['id']}").json() == body
    assert api.patch(f"{base}/424242", json={}).status_code == 404


def test_session_issues(api: httpx.Client, workspace: str, emulator: EmulatorProcess) -> None:
    base = f"workspaces/{workspace}/runsessions"
    session = api.post(base, json={"source": "user"}).json()
    other = api.post(base, json={"source": "user"}).json()
    mine = emulator.open_issue(workspace, "disk full", 1, "disk", run_session_id=session["id"])
    emulator.open_issue(workspace, "other", 3, "x", run_session_id=other["id"])
    emulator.open_issue(workspace, "loose", 3, "x")
    listed = api.get(f"{base}/{session['id']}/issues").json()
    assert listed["count"] == 1
    assert listed["results"] == [mine]
    path = f"{base}/{session['id']}/issues/{mine['id']}"
    assert api.get(path).json() == mine
    assert api.get(f"{base}/{other['id']}/issues/{mine['id']}").status_code == 404
    patched = api.patch(path, json={"closed": True, "severity": 2, "openSince": "ignored"})
    assert patched.status_code == 200
    assert patched.json()["closed"] is True
    assert patched.json()["severity"] == 2
    assert patched.json()["openSince"] == mine["openSince"]
    assert api.patch(path, json={"severity": 9}).status_code == 400
    assert api.patch(path, json={"closed": "yes"}).status_code == 400
    assert api.get(f"{base}/{session['id']}/issues", params={"closed": "false"}).json()["count"] == 0
    assert emulator.open_issue(workspace, "x", 1, run_session_id=other["id"])["id"] > mine["id"]
