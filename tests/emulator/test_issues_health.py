"""Issues and health through the control endpoints, as the API reports them."""

from __future__ import annotations

import httpx
import pytest

from tests.support.emulator import EmulatorError, EmulatorProcess


def test_issue_filters(api: httpx.Client, workspace: str, emulator: EmulatorProcess) -> None:
    critical = emulator.open_issue(workspace, "down", 1, "api")
    warning = emulator.open_issue(workspace, "slow", 4, "db")
    minor = emulator.open_issue(workspace, "noisy", 3, "logs")
    assert critical["closed"] is False
    assert critical["openOccurrenceCount"] == 1
    assert critical["openSince"].endswith("Z")
    emulator.close_issue(workspace, minor["id"])

    def titles(**params: str | int) -> list[str]:
        response = api.get(f"workspaces/{workspace}/issues", params=params)
        assert response.status_code == 200, response.text
        return [issue["title"] for issue in response.json()["results"]]

    assert titles() == ["down", "slow", "noisy"]
    assert titles(closed="false") == ["down", "slow"]
    assert titles(closed="true") == ["noisy"]
    assert titles(severity__lte=3) == ["down", "noisy"]
    assert titles(closed="false", severity__lte=2) == ["down"]
    assert titles(closed="false", severity__lte=0) == []
    assert api.get(f"workspaces/{workspace}/issues", params={"closed": "maybe"}).status_code == 400
    assert api.get(f"workspaces/{workspace}/issues", params={"severity__lte": "high"}).status_code == 400
    page = api.get(f"workspaces/{workspace}/issues", params={"page-size": 1}).json()
    assert page["count"] == 3
    assert page["results"] == [critical]
    assert warning in api.get(page["next"]).json()["results"]


def test_open_issue_validation(emulator: EmulatorProcess, workspace: str) -> None:
    for body in (
        {"severity": 1},
        {"title": "x", "severity": 5},
        {"title": "x", "severity": 1, "runSessionId": 999},
    ):
        response = httpx.post(f"{emulator.url}/_emulator/workspaces/{workspace}/issues", json=body)
        assert response.status_code == 400, body
    assert (
        httpx.post(
            f"{emulator.url}/_emulator/workspaces/nope/issues", json={"title": "x", "severity": 1}
        ).status_code
        == 404
    )
    assert httpx.post(f"{emulator.url}/_emulator/workspaces/{workspace}/issues/999/close").status_code == 404


def test_set_health(api: httpx.Client, workspace: str, emulator: EmulatorProcess) -> None:
    emulator.set_health(
        workspace,
        status="degraded",
        details=[{"component": "runner", "status": "degraded", "message": "2 of 3 pods"}],
        metrics={"latencyMs": 120.5},
        sync=False,
    )
    health = api.get(
        f"workspaces/{workspace}/health", params={"include_details": "true", "include_metrics": "true"}
    ).json()
    assert health["status"] == "degraded"
    assert health["details"] == [{"component": "runner", "status": "degraded", "message": "2 of 3 pods"}]
    assert health["metrics"] == {"latencyMs": 120.5}
    assert api.get(f"workspaces/{workspace}/status").json() == {"workspace": True, "sync": False}
    emulator.set_health(workspace, workspace=False)
    assert api.get(f"workspaces/{workspace}/status").json() == {"workspace": False, "sync": False}
    assert api.get(f"workspaces/{workspace}/health").json()["status"] == "degraded"
    plain = api.get(f"workspaces/{workspace}/health", params={"include_details": "false"}).json()
    assert "details" not in plain
    assert "metrics" not in plain


def test_set_health_validation(emulator: EmulatorProcess, workspace: str) -> None:
    for bad in (
        {"status": "on-fire"},
        {"sync": "no"},
        {"metrics": {"x": "high"}},
        {"details": [{"status": "x"}]},
    ):
        with pytest.raises(EmulatorError, match="400"):
            emulator.set_health(workspace, **bad)
    with pytest.raises(EmulatorError, match="404"):
        emulator.set_health("nope", status="healthy")
    assert emulator.state()["workspaces"][0]["health"]["status"] == "healthy"
