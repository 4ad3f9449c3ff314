"""The state file: objects survive restarts, including SIGKILL; a bad file stops start-up."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.emulator import EmulatorError, EmulatorProcess


def _populate(emu: EmulatorProcess) -> dict[str, object]:
    with emu.client() as api:
        api.post("workspaces/", json={"name": "keep", "enabledLocations": ["l1"]})
        workflow = api.post("workspaces/keep/workflows/", json={"name": "wf"}).json()
        persona = api.post(
            "workspaces/keep/personas/", json={"name": "p", "runConfidenceThreshold": 0.8}
        ).json()
        session = api.post("workspaces/keep/runsessions", json={"source": "slack"}).json()
        token = api.get(f"workspaces/keep/workflows/{workflow['id']}/token").json()["token"]
    issue = emu.open_issue("keep", "disk", 2, "disk-slx")
    emu.set_health("keep", status="unhealthy", sync=False)
    return {"workflow": workflow, "persona": persona, "session": session, "token": token, "issue": issue}


def _objects(emu: EmulatorProcess) -> dict[str, object]:
    state = emu.state()
    return {
        key: state[key] for key in ("workspaces", "workflows", "personas", "runSessions", "issues", "runs")
    }


def test_restart_keeps_objects(emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    emu = emulator_factory(api_token="t", state_file=state_file)
    created = _populate(emu)
    before = _objects(emu)
    port = emu.port
    emu.restart()
    assert emu.port == port
    assert _objects(emu) == before
    with emu.client() as api:
        assert api.get("workspaces/keep").json()["enabledLocations"] == ["l1"]
        workflow = created["workflow"]
        assert isinstance(workflow, dict)
        assert (
            api.get(f"workspaces/keep/workflows/{workflow['id']}/token").json()["token"] == created["token"]
        )
        assert api.get("workspaces/keep/health").json()["status"] == "unhealthy"
        assert api.get("workspaces/keep/issues").json()["count"] == 1
        newer = api.post("workspaces/keep/workflows/", json={"name": "wf"}).json()
        assert newer["id"] > workflow["id"]
    assert not [p for p in tmp_path.iterdir() if p.name != "state.json"]
    assert json.loads(state_file.read_text())["format"] == 1


def test_sigkill_loses_nothing_written(
    emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path
) -> None:
    emu = emulator_factory(api_token="t", state_file=tmp_path / "state.json")
    _populate(emu)
    before = _objects(emu)
    emu.kill()
    emu.start()
    assert _objects(emu) == before


def test_tokens_survive_a_restart(emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path) -> None:
    emu = emulator_factory(state_file=tmp_path / "state.json")
    pair = httpx.post(emu.api_url + "token/", json={"username": "admin", "password": "admin"}).json()
    httpx.post(
        emu.api_url + "workspaces/", json={"name": "x"}, headers={"Authorization": f"Bearer {pair['access']}"}
    )
    emu.restart()
    assert (
        httpx.get(
            emu.api_url + "workspaces/x", headers={"Authorization": f"Bearer {pair['access']}"}
        ).status_code
        == 200
    )
    assert httpx.post(emu.api_url + "token/refresh/", json={"refresh": pair["refresh"]}).status_code == 200


def test_runs_carry_on_after_a_restart(
    emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path
) -> None:
    emu = emulator_factory(api_token="t", state_file=tmp_path / "state.json", run_step_seconds=0.3)
    with emu.client() as api:
        api.post("workspaces/", json={"name": "w"})
        workflow = api.post("workspaces/w/workflows/", json={"name": "wf"}).json()
        run = api.post(f"workspaces/w/workflows/{workflow['id']}/run").json()
    emu.restart()
    deadline = time.monotonic() + 10
    with emu.client() as api:
        status = ""
        while status != "completed" and time.monotonic() < deadline:
            status = api.get(f"workspaces/w/runsessions/{run['runSessionId']}").json()["status"]
            time.sleep(0.05)
    assert status == "completed"


def test_reset_is_persisted(emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path) -> None:
    emu = emulator_factory(api_token="t", state_file=tmp_path / "state.json")
    _populate(emu)
    emu.reset()
    emu.restart()
    assert emu.state()["workspaces"] == []


def test_bad_state_file_stops_start_up(
    emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path
) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text("{not json")
    with pytest.raises(EmulatorError, match="exited with 2"):
        emulator_factory(state_file=state_file)
    state_file.write_text(json.dumps({"format": 99}))
    with pytest.raises(EmulatorError, match="exited with 2"):
        emulator_factory(state_file=state_file)
