"""Platform dialect: run sessions (create, dedupe merge, names, paging and filters, the run request
lifecycle and its outcomes, deactivation)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator.platform.conftest import api_client, conform
from tests.support.emulator import EmulatorProcess

RS = "/api/v3/workspaces/{workspace_name}/runsessions"


def _create(api: httpx.Client, workspace: str, **body: Any) -> httpx.Response:
    body.setdefault("runRequests", [{"slxName": f"{workspace}--slx", "taskTitles": ["a", "b"]}])
    return api.post(f"v3/workspaces/{workspace}/runsessions", json={"source": "direct", **body})


def _wait_done(api: httpx.Client, workspace: str, session_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        session: dict[str, Any] = api.get(f"v3/workspaces/{workspace}/runsessions/{session_id}").json()
        if all(item["responseTime"] for item in session["runRequests"]) or time.monotonic() > deadline:
            return session
        time.sleep(0.05)


def test_create_and_read(api: httpx.Client, workspace: str) -> None:
    api.post(f"v4/workspaces/{workspace}/personas/sync-typed", json={"payload": {"name": "eager"}})
    created = _create(api, workspace, name="run-1", personaName=f"{workspace}--eager", notes="n")
    assert created.status_code == 201
    session = conform(created, RS)
    assert (session["name"], session["source"], session["active"], session["escalated"]) == (
        "run-1",
        "direct",
        True,
        False,
    )
    assert (session["workspaceName"], session["personaShortName"], session["requestCount"]) == (
        workspace,
        "eager",
        1,
    )
    assert session["personaId"] is not None
    request = session["runRequests"][0]
    assert (request["slxName"], request["slxShortName"], request["taskTitles"]) == (
        "demo--slx",
        "slx",
        "a||b",
    )
    assert request["requestTime"] is None
    assert request["responseTime"] is None
    read = conform(
        api.get(f"v3/workspaces/{workspace}/runsessions/{session['id']}"), f"{RS}/{{runsession_id}}"
    )
    assert read["id"] == session["id"]
    assert "status" not in read
    assert "context" not in read


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"runRequests": []}, ["body", "runRequests"]),
        ({"runRequests": [{}]}, ["body", "runRequests", 0, "slxName"]),
        ({"runRequests": [{"slxName": "s"}], "source": "email"}, ["body", "source"]),
        ({"source": "direct"}, ["body", "runRequests"]),
    ],
)
def test_create_validation(api: httpx.Client, workspace: str, body: dict[str, Any], loc: list[Any]) -> None:
    response = api.post(f"v3/workspaces/{workspace}/runsessions", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


def test_dedupe_merges_and_names_are_unique(
    api: httpx.Client, emulator: EmulatorProcess, workspace: str
) -> None:
    first = _create(api, workspace, name="one").json()
    merged = _create(api, workspace, name="two")
    assert merged.status_code == 200
    body = conform(merged, RS)
    assert body["id"] == first["id"]
    assert body["requestCount"] == 2
    assert body["name"] == "one"
    separate = _create(api, workspace, name="three", dedupe={"enabled": False})
    assert separate.status_code == 201
    assert separate.json()["id"] != first["id"]
    other_slx = _create(api, workspace, name="four", runRequests=[{"slxName": "demo--other"}])
    assert other_slx.status_code == 201
    duplicate = _create(api, workspace, name="one", dedupe={"enabled": False})
    assert duplicate.status_code == 422
    assert duplicate.json()["detail"][0]["loc"] == ["body", "name"]
    assert len(emulator.state()["runSessions"]) == 3


@pytest.mark.parametrize(
    ("outcome", "status", "passed", "failed", "has_failures"),
    [
        ("completed", "completed", "a||b", "", False),
        ("completed_with_errors", "completed", "a", "b", True),
        ("failed", "failed", "", "a||b", True),
    ],
)
def test_lifecycle_and_outcomes(
    api: httpx.Client,
    emulator: EmulatorProcess,
    workspace: str,
    outcome: str,
    status: str,
    passed: str,
    failed: str,
    has_failures: bool,
) -> None:
    emulator.set_runs(outcome, step_seconds=0.3)
    session = _create(api, workspace).json()
    assert session["runRequests"][0]["status"] is None
    time.sleep(0.35)
    running = api.get(f"v3/workspaces/{workspace}/runsessions/{session['id']}").json()["runRequests"][0]
    assert running["status"] == "running"
    assert running["requestTime"] is not None
    assert running["responseTime"] is None
    done = _wait_done(api, workspace, session["id"])
    request = done["runRequests"][0]
    assert (request["status"], request["passedTitles"], request["failedTitles"]) == (status, passed, failed)
    assert done["hasFailures"] is has_failures
    assert done["active"] is True


def test_all_tasks_and_deactivate(api: httpx.Client, emulator: EmulatorProcess, workspace: str) -> None:
    emulator.set_runs("completed", step_seconds=0)
    session = _create(api, workspace, runRequests=[{"slxName": "demo--slx", "taskTitles": None}]).json()
    done = _wait_done(api, workspace, session["id"])
    assert (done["runRequests"][0]["taskTitles"], done["runRequests"][0]["passedTitles"]) == ("", "slx")
    off = api.post(f"v1/run-sessions/{session['id']}/deactivate")
    assert (off.status_code, off.json()["active"]) == (200, False)
    other = _create(api, workspace, name="x").json()
    assert other["id"] != session["id"]  # an inactive session takes no merges
    documented = api.post(f"v1/run-sessions/{other['id']}/deactivate", json={"reason": "done"})
    assert conform(documented, "/api/v1/run-sessions/{session_id}/deactivate")["active"] is False
    assert api.post("v1/run-sessions/9999/deactivate").status_code == 404


def test_list_paging_and_filters(api: httpx.Client, emulator: EmulatorProcess, workspace: str) -> None:
    ids = [_create(api, workspace, runRequests=[{"slxName": f"demo--s{i}"}]).json()["id"] for i in range(3)]
    page = conform(api.get(f"v3/workspaces/{workspace}/runsessions", params={"page": 2, "page-size": 2}), RS)
    assert [s["id"] for s in page["results"]] == [ids[2]]
    assert (page["count"], page["limit"], page["offset"], page["next"]) == (3, 2, 2, None)
    assert "page=1" in page["previous"]
    assert api.get(f"v3/workspaces/{workspace}/runsessions", params={"page": 5}).json()["results"] == []
    unknown = api.get(f"v3/workspaces/{workspace}/runsessions", params={"name": "x", "limit": 1})
    assert (unknown.status_code, unknown.json()) == (
        400,
        {"detail": "Unsupported query parameter(s): limit, name"},
    )

    def listed(**params: Any) -> list[int]:
        response = api.get(f"v3/workspaces/{workspace}/runsessions", params=params)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["results"]]

    assert listed(runrequest__runbook__name="demo--s1") == [ids[1]]
    assert listed(runrequest__runbook__name__in="demo--s0,demo--s2") == [ids[0], ids[2]]
    api.post(f"v1/run-sessions/{ids[0]}/deactivate")
    assert listed(active="false") == [ids[0]]
    assert listed(active="true") == ids[1:]
    assert listed(created__gte="2000-01-01T00:00:00Z") == ids
    assert listed(created__lte="2000-01-01T00:00:00+00:00") == []
    naive = api.get(f"v3/workspaces/{workspace}/runsessions", params={"modified__gte": "2000-01-01T00:00:00"})
    assert (naive.status_code, naive.json()["detail"][0]["loc"]) == (422, ["query", "modified__gte"])
    assert api.get(f"v3/workspaces/{workspace}/runsessions", params={"page-size": 0}).status_code == 422


def test_issues_are_embedded_in_run_requests(
    api: httpx.Client, emulator: EmulatorProcess, workspace: str
) -> None:
    session = _create(api, workspace).json()
    emulator.open_issue(workspace, "broken", 2, "demo--slx", run_session_id=session["id"])
    read = api.get(f"v3/workspaces/{workspace}/runsessions/{session['id']}").json()
    issues = read["runRequests"][0]["issues"]
    assert [(i["title"], i["severity"], i["closed"]) for i in issues] == [("broken", 2, False)]


def test_workspace_scoped_deactivate(
    emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path
) -> None:
    """``POST /api/v3/workspaces/{ws}/runsessions/{id}/deactivate`` is served although papi.json has only
    ``/api/v1/run-sessions/{id}/deactivate``; its own emulator records elsewhere than the contract
    checks, which would rightly call it undocumented."""
    emu = emulator_factory(api_token="t", extra_args=["--record-exchanges", str(tmp_path)])
    with api_client(emu) as api:
        api.post("v3/workspaces", json={"name": "demo"})
        session = _create(api, "demo").json()
        off = api.post(f"v3/workspaces/demo/runsessions/{session['id']}/deactivate", json={"reason": "r"})
        assert (off.status_code, off.json()["active"]) == (200, False)
        assert api.post("v3/workspaces/demo/runsessions/999/deactivate").status_code == 404
        assert api.post(f"v3/workspaces/nope/runsessions/{session['id']}/deactivate").status_code == 404
