"""Bad input never crashes the emulator, never answers 5xx and never changes state."""

from __future__ import annotations

import httpx

from runwhen_operator.emulator.app import _is_loopback
from tests.support.emulator import EmulatorProcess

BODIES: list[bytes] = [
    b"null",
    b"[]",
    b"123",
    b'"text"',
    b"{",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"name": ' + b"9" * 5000 + b"}",
    b'{"name": 1e400}',
    b'{"name": -Infinity}',
    b'{"name": "\\ud800"}',
    b'{"name": "a\\u0000b"}',
    b"\x00\x01\x02",
    b"\xc3\x28",
    '{"name": "ünïcode"}'.encode(),
    b'{"name": "x", "name": "y", "bogus": {}}',
    b'{"source": {"nested": [1, 2, {"deep": null}]}, "runRequests": [null, 1, "x", []]}',
    b'{"definition": {"fromActivities": [null, {"name": ["x"]}, {"name": "a", "actions": "x"}]}}',
]

WRITES: list[tuple[str, str]] = [
    ("POST", "workspaces/"),
    ("PUT", "workspaces/demo"),
    ("PATCH", "workspaces/demo"),
    ("POST", "workspaces/demo/workflows/"),
    ("PUT", "workspaces/demo/workflows/{workflow}"),
    ("POST", "workspaces/demo/workflows/{workflow}/run"),
    ("POST", "workspaces/demo/personas/"),
    ("PUT", "workspaces/demo/personas/{persona}"),
    ("POST", "workspaces/demo/runsessions"),
    ("PATCH", "workspaces/demo/runsessions/{session}"),
    ("PATCH", "workspaces/demo/runsessions/{session}/issues/{issue}"),
    ("POST", "token/"),
    ("POST", "token/refresh/"),
]


def test_garbage_bodies(api: httpx.Client, emulator: EmulatorProcess, workspace: str) -> None:
    ids = {
        "workflow": api.post(f"workspaces/{workspace}/workflows/", json={"name": "wf"}).json()["id"],
        "persona": api.post(f"workspaces/{workspace}/personas/", json={"name": "p"}).json()["id"],
        "session": api.post(f"workspaces/{workspace}/runsessions", json={"source": "user"}).json()["id"],
    }
    ids["issue"] = emulator.open_issue(workspace, "t", 1, run_session_id=ids["session"])["id"]
    before = {k: v for k, v in emulator.state().items() if k not in ("requests", "responses")}
    for method, template in WRITES:
        path = template.format(**ids)
        for body in BODIES:
            for content_type in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
                response = api.request(method, path, content=body, headers={"Content-Type": content_type})
                assert response.status_code < 500, (method, path, body[:40], response.text)
                if response.status_code >= 400:
                    assert isinstance(response.json(), dict)
    after = {k: v for k, v in emulator.state().items() if k not in ("requests", "responses")}
    assert after["workspaces"] == before["workspaces"]
    assert after["workflows"] == before["workflows"]
    assert after["personas"] == before["personas"]
    assert after["issues"] == before["issues"]
    assert not any(key.split()[-1].startswith("5") for key in emulator.state()["responses"])


def test_strange_paths_and_methods(api: httpx.Client, emulator: EmulatorProcess, workspace: str) -> None:
    paths = [
        "workspaces/%00",
        "workspaces/" + "x" * 5000,
        "workspaces/demo/workflows/-1",
        "workspaces/demo/workflows/1e3",
        "workspaces/demo/workflows/%F0%9F%98%80",
        "workspaces/demo/personas/0x10",
        "workspaces/demo/runsessions/ 1",
        "nothing/here",
        "workspaces/demo/../demo",
    ]
    assert api.get(f"workspaces/{workspace}/issues", params={"severity__lte": "9" * 5000}).status_code == 400
    for path in paths:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            response = api.request(method, path)
            assert response.status_code < 500, (method, path)
    too_big = api.post("workspaces/", content=b"{" + b" " * (5 * 1024 * 1024) + b"}")
    assert too_big.status_code == 413
    assert api.get("workspaces/", params={"page": "9" * 50}).status_code in (400, 404)
    assert not any(key.split()[-1].startswith("5") for key in emulator.state()["responses"])


def test_loopback_detection() -> None:
    assert _is_loopback("127.0.0.1")
    assert _is_loopback("127.1.2.3")
    assert _is_loopback("::1")
    assert _is_loopback("::ffff:127.0.0.1")
    assert not _is_loopback("10.0.0.1")
    assert not _is_loopback("::ffff:10.0.0.1")
    assert not _is_loopback("2001:db8::1")
    assert not _is_loopback("garbage")
