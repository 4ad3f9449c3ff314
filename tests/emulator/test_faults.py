"""Fault injection and request counters."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.emulator import EmulatorError, EmulatorProcess


def test_error_rate_answers_5xx_before_doing_anything(api: httpx.Client, emulator: EmulatorProcess) -> None:
    emulator.set_faults(error_rate=1.0, seed=7)
    statuses = set()
    for index in range(30):
        response = api.post("workspaces/", json={"name": f"w{index}"})
        statuses.add(response.status_code)
        assert set(response.json()) == {"detail"}
    assert statuses == {500, 502, 503}
    assert emulator.state()["workspaces"] == []
    # neither the control endpoints nor the schema are affected
    assert httpx.get(emulator.api_url + "schema/").status_code == 200
    emulator.clear_faults()
    assert api.post("workspaces/", json={"name": "ok"}).status_code == 201


def test_error_rate_is_a_rate(api: httpx.Client, emulator: EmulatorProcess) -> None:
    emulator.set_faults(error_rate=0.5, seed=1)
    failures = sum(api.get("workspaces/").status_code >= 500 for _ in range(200))
    assert 60 <= failures <= 140


def test_seed_makes_faults_reproducible(api: httpx.Client, emulator: EmulatorProcess) -> None:
    runs = []
    for _ in range(2):
        emulator.set_faults(error_rate=0.5, seed=42)
        runs.append([api.get("workspaces/").status_code for _ in range(40)])
    assert runs[0] == runs[1]
    assert len(set(runs[0])) > 1


def test_latency(api: httpx.Client, emulator: EmulatorProcess) -> None:
    emulator.set_faults(latency_ms=300)
    started = time.monotonic()
    assert api.get("workspaces/").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    emulator.state()
    assert time.monotonic() - started < 0.3


def test_rate_limit_answers_429_with_retry_after(api: httpx.Client, emulator: EmulatorProcess) -> None:
    emulator.set_faults(rate_limit_per_second=2)
    statuses = [api.get("workspaces/").status_code for _ in range(5)]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses[2:]
    limited = api.get("workspaces/")
    assert limited.status_code == 429
    retry_after = int(limited.headers["Retry-After"])
    assert retry_after >= 1
    assert "detail" in limited.json()
    time.sleep(retry_after)
    assert api.get("workspaces/").status_code == 200
    assert emulator.responses()["GET /api/v3/workspaces 429"] >= 2


def test_fail_after_commit_stores_then_fails(api: httpx.Client, emulator: EmulatorProcess) -> None:
    emulator.set_faults(fail_after_commit_rate=1.0, seed=3)
    outcomes = []
    for index in range(12):
        with emulator.client() as client:
            try:
                response = client.post("workspaces/", json={"name": f"w{index}"})
            except (httpx.RemoteProtocolError, httpx.ReadError):
                outcomes.append("dropped")
            else:
                assert response.status_code == 500
                outcomes.append("500")
    assert set(outcomes) == {"dropped", "500"}
    assert sorted(w["name"] for w in emulator.state()["workspaces"]) == sorted(f"w{i}" for i in range(12))
    responses = emulator.responses()
    assert responses["POST /api/v3/workspaces 0"] == outcomes.count("dropped")
    assert responses["POST /api/v3/workspaces 500"] == outcomes.count("500")
    # reads and rejected writes are not affected
    assert api.get("workspaces/w0").status_code == 200
    assert api.post("workspaces/", json={"name": "w0"}).status_code == 400


def test_fault_configuration_is_validated(emulator: EmulatorProcess) -> None:
    for bad in (
        {"error_rate": 1.5},
        {"latency_ms": -1},
        {"rate_limit_per_second": 0},
        {"bogus": 1},
        {"seed": "x"},
    ):
        with pytest.raises(EmulatorError, match="400"):
            emulator.set_faults(**bad)
    assert emulator.state()["faults"] == {}
    config = emulator.set_faults(
        error_rate=0.2, latency_ms=5, rate_limit_per_second=100, fail_after_commit_rate=0.1
    )
    assert config == {"errorRate": 0.2, "latencyMs": 5, "rateLimitPerSecond": 100, "failAfterCommitRate": 0.1}
    assert emulator.state()["faults"] == config
    emulator.clear_faults()
    assert emulator.state()["faults"] == {}


def test_request_counters(api: httpx.Client, emulator: EmulatorProcess, workspace: str) -> None:
    workflow = api.post(f"workspaces/{workspace}/workflows/", json={"name": "wf"}).json()
    api.get(f"workspaces/{workspace}/workflows/{workflow['id']}")
    api.get(f"workspaces/{workspace}/workflows/{workflow['id']}/")
    api.get(f"workspaces/{workspace}/workflows/999")
    api.put(f"workspaces/{workspace}/workflows/{workflow['id']}", json={"name": "wf"})
    httpx.post(emulator.api_url + "token/", json={"username": "admin", "password": "admin"})
    counts = emulator.requests()
    assert counts["GET /api/v3/workspaces/{workspace_name}/workflows/{workflow_id}"] == 3
    assert counts["POST /api/v3/workspaces/{workspace_name}/workflows"] == 1
    assert counts["POST /api/v3/token"] == 1
    responses = emulator.responses()
    assert responses["GET /api/v3/workspaces/{workspace_name}/workflows/{workflow_id} 200"] == 2
    assert responses["GET /api/v3/workspaces/{workspace_name}/workflows/{workflow_id} 404"] == 1
    assert emulator.write_count() == 3  # workspace POST, workflow POST, workflow PUT
    emulator.reset_requests()
    assert emulator.requests() == {}
    assert emulator.write_count() == 0
    assert api.get(f"workspaces/{workspace}").status_code == 200  # objects survive a counter reset
