"""Runner locations on the documented dialect: the runner token, the workspace builder's
configuration, the runners (registered by the heartbeat control endpoint) and their deletion."""

from __future__ import annotations

import httpx
import pytest

from tests.support.emulator import EmulatorError, EmulatorProcess


def test_tokens_are_new_at_every_read_and_remembered(
    api: httpx.Client, workspace: str, emulator: EmulatorProcess
) -> None:
    first = api.get(f"workspaces/{workspace}/runner-token")
    assert first.status_code == 200, first.text
    second = api.get(f"workspaces/{workspace}/runner-token").json()
    assert first.json()["token"] != second["token"]
    config = api.get(f"workspaces/{workspace}/generate-workspace-builder-config", params={"hours": 2}).json()
    assert (config["workspaceName"], config["tokenValidHours"]) == (workspace, 2)
    assert config["papiURL"] == emulator.url
    assert config["workspaceOwnerEmail"]
    state = next(w for w in emulator.state()["workspaces"] if w["name"] == workspace)
    assert state["runnerTokens"] == {"": second["token"]}
    assert state["uploadTokens"] == {"": config["token"]}
    assert (
        api.get(f"workspaces/{workspace}/generate-workspace-builder-config", params={"hours": 0}).status_code
        == 400
    )
    assert api.get("workspaces/nope/runner-token").status_code == 404


def test_heartbeats_register_runners_and_delete_removes_them(
    api: httpx.Client, workspace: str, emulator: EmulatorProcess
) -> None:
    assert api.get(f"workspaces/{workspace}/runners").json() == []
    online = emulator.heartbeat(workspace, "loc-1")
    assert online["health"] == "online"
    again = emulator.heartbeat(workspace, "loc-1", health="stale")
    assert again["value"] == online["value"]  # the same runner, reporting again
    emulator.heartbeat(workspace, "loc-2", value="fixed-id")
    runners = api.get(f"workspaces/{workspace}/runners").json()
    assert [(r["name"], r["value"], r["health"]) for r in runners] == [
        ("loc-1", online["value"], "stale"),
        ("loc-2", "fixed-id", "online"),
    ]
    assert runners[0]["secondsSinceHeartbeat"] < 60
    deleted = api.delete(f"workspaces/{workspace}/runners/fixed-id")
    assert deleted.json() == {"status": "deleted", "runner": "fixed-id", "workspace": workspace}
    assert api.delete(f"workspaces/{workspace}/runners/fixed-id").status_code == 404
    assert [r["name"] for r in api.get(f"workspaces/{workspace}/runners").json()] == ["loc-1"]
    with pytest.raises(EmulatorError, match="400"):
        emulator.heartbeat(workspace, "loc-1", health="dead")
    with pytest.raises(EmulatorError, match="404"):
        emulator.heartbeat("nope", "loc-1")
