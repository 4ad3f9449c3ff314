"""``--record-exchanges DIR``: one JSON line per API exchange, in both dialects, with fault names."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.emulator import EmulatorProcess

KEYS = {
    "dialect",
    "method",
    "path",
    "query",
    "requestContentType",
    "userAgent",
    "requestBody",
    "status",
    "responseContentType",
    "responseBody",
    "fault",
    "clientGone",
}


def _lines(directory: Path, emu: EmulatorProcess) -> list[dict[str, Any]]:
    path = directory / f"exchanges-{emu.pid}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_platform_exchanges(emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path) -> None:
    emu = emulator_factory(api_token="t", extra_args=["--record-exchanges", str(tmp_path)])
    headers = {"Authorization": "Bearer t", "User-Agent": "recorder-test"}
    with httpx.Client(base_url=emu.url, headers=headers) as client:
        client.post("/api/v3/workspaces", json={"name": "rec"})
        client.get("/api/v3/workspaces", params={"limit": 1})
        client.get("/_emulator/state")
        emu.set_faults(error_rate=1.0, seed=1)
        client.get("/api/v3/workspaces")
        emu.set_faults(fail_after_commit_rate=1.0, seed=3)
        for index in range(4):
            with contextlib.suppress(httpx.TransportError):
                client.post("/api/v3/workspaces", json={"name": f"x{index}"})
        emu.set_faults(rate_limit_per_second=0.001)
        client.get("/api/v3/workspaces")
        client.get("/api/v3/workspaces")
    lines = _lines(tmp_path, emu)
    assert all(set(line) == KEYS for line in lines)
    assert all(line["path"].startswith("/api/") for line in lines)
    create, listing = lines[0], lines[1]
    assert create["dialect"] == "platform"
    assert (create["method"], create["path"], create["status"], create["fault"]) == (
        "POST",
        "/api/v3/workspaces",
        201,
        None,
    )
    assert json.loads(create["requestBody"]) == {"name": "rec"}
    assert create["requestContentType"] == "application/json"
    assert create["userAgent"] == "recorder-test"
    assert create["responseContentType"].startswith("application/json")
    assert json.loads(create["responseBody"])["name"] == "rec"
    assert (listing["query"], listing["requestBody"]) == ("limit=1", None)
    faults = [line["fault"] for line in lines[2:]]
    assert faults[0] == "error"
    assert lines[2]["status"] in (500, 502, 503)
    assert set(faults[1:5]) <= {"failAfterCommit", "dropped"}
    for line in lines[2:6]:
        if line["fault"] == "dropped":
            assert (line["status"], line["responseBody"]) == (0, None)
        else:
            assert line["status"] == 500
    assert faults[5:] == [None, "rateLimit"]
    assert lines[-1]["status"] == 429


def test_documented_exchanges(emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path) -> None:
    emu = emulator_factory(
        dialect="documented", api_token="t", extra_args=["--record-exchanges", str(tmp_path)]
    )
    with emu.client() as api:
        api.post("workspaces/", json={"name": "rec"})
    lines = _lines(tmp_path, emu)
    assert [(line["dialect"], line["method"], line["path"], line["status"]) for line in lines] == [
        ("documented", "POST", "/api/v3/workspaces/", 201)
    ]


def test_a_client_that_leaves_mid_body(
    emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path
) -> None:
    """The request is recorded as what it was (incomplete, nobody answered), not as the server's 500
    to a request without a body, and the emulator logs no error."""
    emu = emulator_factory(api_token="t", extra_args=["--record-exchanges", str(tmp_path)])
    httpx.post(f"{emu.url}/api/v3/workspaces", json={"name": "rec"}, headers={"Authorization": "Bearer t"})
    host, port = emu.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /api/v4/workspaces/rec/workflows/sync-typed HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer t\r\nUser-Agent: runwhen-operator/test\r\n"
            b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
            b'{"payload": {"na'
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not lines:
        with contextlib.suppress(FileNotFoundError):
            lines = [line for line in _lines(tmp_path, emu) if line["path"].endswith("/sync-typed")]
        time.sleep(0.1)
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == KEYS
    assert (line["clientGone"], line["status"], line["requestBody"], line["responseBody"]) == (
        True,
        0,
        None,
        None,
    )
    assert "unhandled error" not in emu.logs()
