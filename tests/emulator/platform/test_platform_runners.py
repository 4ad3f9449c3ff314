"""Runner locations on the platform dialect: runner-token and upload-config per location, the
deprecated builder config (410), runner heartbeats and deletion, checked against the document."""

from __future__ import annotations

import httpx

from tests.emulator.platform.conftest import conform
from tests.support.emulator import EmulatorProcess

WS = "/api/v3/workspaces/{workspace_name}"


def test_runner_token_and_upload_config(api: httpx.Client, workspace: str, emulator: EmulatorProcess) -> None:
    token = conform(
        api.get(f"v3/workspaces/{workspace}/runner-token", params={"location": "loc-1"}), f"{WS}/runner-token"
    )
    assert (token["workspace"], token["location"]) == (workspace, "loc-1")
    config = conform(
        api.get(f"v3/workspaces/{workspace}/upload-config", params={"location": "loc-1"}),
        f"{WS}/upload-config",
    )
    assert config["workspaceName"] == workspace
    assert config["locationName"] == config["defaultLocation"] == "loc-1"
    assert config["papiURL"] == emulator.url
    state = next(w for w in emulator.state()["workspaces"] if w["name"] == workspace)
    assert state["runnerTokens"] == {"loc-1": token["token"]}
    assert state["uploadTokens"] == {"loc-1": config["token"]}
    missing = api.get(f"v3/workspaces/{workspace}/runner-token")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["query", "location"]
    gone = api.get(f"v3/workspaces/{workspace}/generate-workspace-builder-config")
    assert gone.status_code == 410
    assert "upload-config" in gone.json()["detail"]


def test_heartbeat_and_delete_runner(api: httpx.Client, workspace: str, emulator: EmulatorProcess) -> None:
    runner = emulator.heartbeat(workspace, "loc-1")
    listed = conform(api.get(f"v3/workspaces/{workspace}/runners"), f"{WS}/runners")
    assert [(r["name"], r["value"], r["health"]) for r in listed] == [("loc-1", runner["value"], "online")]
    deleted = api.delete(f"v3/workspaces/{workspace}/runners/{runner['value']}")
    assert conform(deleted, f"{WS}/runners/{{runner_id}}")["status"] == "deleted"
    again = api.delete(f"v3/workspaces/{workspace}/runners/{runner['value']}")
    assert again.status_code == 404
    assert again.json() == {"detail": f"Runner '{runner['value']}' not found"}
    assert api.get(f"v3/workspaces/{workspace}/runners").json() == []
