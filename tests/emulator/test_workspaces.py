"""Workspaces: CRUD, PUT vs PATCH, validation, duplicates, cascade delete, pagination, slashes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx
import pytest

from tests.support.emulator import EmulatorProcess

FULL = {
    "name": "full",
    "displayName": "Full",
    "configProvided": {"a": {"b": [1, 2]}},
    "secretsProvided": {"k": "v"},
    "enabledLocations": ["loc-1", "loc-2"],
    "slxGroups": {"g": ["x"]},
}


def test_create_get_list(api: httpx.Client) -> None:
    created = api.post("workspaces/", json=FULL)
    assert created.status_code == 201
    body = created.json()
    assert {k: body[k] for k in FULL} == FULL
    assert body["owner"] == "admin"
    assert body["createdAt"].endswith("Z")
    assert datetime.fromisoformat(body["createdAt"]) == datetime.fromisoformat(body["updatedAt"])
    assert api.get("workspaces/full").json() == body
    listed = api.get("workspaces/").json()
    assert listed == {"count": 1, "next": None, "previous": None, "results": [body]}


def test_defaults_on_create(api: httpx.Client) -> None:
    body = api.post("workspaces/", json={"name": "bare"}).json()
    assert body["displayName"] == ""
    assert body["configProvided"] == {}
    assert body["secretsProvided"] == {}
    assert body["enabledLocations"] == []
    assert body["slxGroups"] == {}


def test_put_resets_omitted_fields_patch_keeps_them(api: httpx.Client) -> None:
    api.post("workspaces/", json=FULL)
    patched = api.patch("workspaces/full", json={"displayName": "Renamed"})
    assert patched.status_code == 200
    assert patched.json()["displayName"] == "Renamed"
    assert patched.json()["enabledLocations"] == ["loc-1", "loc-2"]
    assert patched.json()["configProvided"] == FULL["configProvided"]
    put = api.put("workspaces/full/", json={"enabledLocations": ["only"]})
    assert put.status_code == 200
    body = put.json()
    assert body["enabledLocations"] == ["only"]
    assert body["displayName"] == ""
    assert body["configProvided"] == {}
    assert body["secretsProvided"] == {}
    assert body["slxGroups"] == {}
    assert body["createdAt"] == patched.json()["createdAt"]
    assert datetime.fromisoformat(body["updatedAt"]) > datetime.fromisoformat(body["createdAt"])
    assert api.get("workspaces/full").json() == body


def test_read_only_fields_in_a_body_are_ignored(api: httpx.Client) -> None:
    created = api.post(
        "workspaces/", json={"name": "ro", "owner": "someone", "createdAt": "2000-01-01T00:00:00Z"}
    )
    assert created.status_code == 201
    assert created.json()["owner"] == "admin"
    assert not created.json()["createdAt"].startswith("2000")
    round_trip = api.put("workspaces/ro", json=created.json())
    assert round_trip.status_code == 200


def test_name_cannot_change(api: httpx.Client) -> None:
    api.post("workspaces/", json={"name": "keep"})
    for method in ("PUT", "PATCH"):
        response = api.request(method, "workspaces/keep", json={"name": "other"})
        assert response.status_code == 400
        assert list(response.json()) == ["name"]
    assert api.patch("workspaces/keep", json={"name": "keep"}).status_code == 200
    assert api.get("workspaces/other").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "-lead"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"name": None}, "name"),
        ({}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": "ok", "displayName": 3}, "displayName"),
        ({"name": "ok", "enabledLocations": "loc"}, "enabledLocations"),
        ({"name": "ok", "enabledLocations": ["a", 2]}, "enabledLocations.1"),
        ({"name": "ok", "configProvided": []}, "configProvided"),
        ({"name": "ok", "slxGroups": "x"}, "slxGroups"),
        ([{"name": "ok"}], "non_field_errors"),
        ("ok", "non_field_errors"),
    ],
)
def test_validation_errors_are_field_maps(api: httpx.Client, body: object, field: str) -> None:
    response = api.post("workspaces/", json=body)
    assert response.status_code == 400
    errors = response.json()
    assert field in errors
    assert all(isinstance(messages, list) and messages for messages in errors.values())
    assert api.get("workspaces/").json()["count"] == 0


def test_invalid_json_is_400(api: httpx.Client) -> None:
    for raw in (
        b"{",
        b"{'name': 'x'}",
        b'{"name": NaN}',
        b"\xff\xfe\x00",
        b'{"name": "a", "displayName": 1e999}',
    ):
        response = api.post("workspaces/", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, raw
        assert "non_field_errors" in response.json()


def test_duplicate_name_is_400(api: httpx.Client) -> None:
    assert api.post("workspaces/", json={"name": "dup"}).status_code == 201
    response = api.post("workspaces/", json={"name": "dup", "displayName": "second"})
    assert response.status_code == 400
    assert "name" in response.json()
    assert api.get("workspaces/dup").json()["displayName"] == ""


def test_duplicate_names_auto_suffixed(emulator_factory: Callable[..., EmulatorProcess]) -> None:
    emu = emulator_factory(api_token="t", extra_args=["--auto-suffix-duplicates"])
    with emu.client() as api:
        names = [api.post("workspaces/", json={"name": "dup"}).json()["name"] for _ in range(3)]
        assert names == ["dup", "dup-2", "dup-3"]
        long_name = "a" * 63
        assert api.post("workspaces/", json={"name": long_name}).json()["name"] == long_name
        suffixed = api.post("workspaces/", json={"name": long_name}).json()["name"]
        assert suffixed == "a" * 61 + "-2"
        assert api.get("workspaces/").json()["count"] == 5


def test_unknown_workspace_is_404(api: httpx.Client) -> None:
    for method, path in [
        ("GET", "workspaces/nope"),
        ("PUT", "workspaces/nope"),
        ("PATCH", "workspaces/nope"),
        ("DELETE", "workspaces/nope"),
        ("GET", "workspaces/nope/status"),
        ("GET", "workspaces/nope/health"),
        ("GET", "workspaces/nope/issues"),
        ("GET", "workspaces/nope/workflows/"),
        ("POST", "workspaces/nope/workflows/"),
        ("GET", "workspaces/nope/personas/"),
        ("GET", "workspaces/nope/runsessions"),
    ]:
        response = api.request(method, path, json={} if method in ("PUT", "PATCH", "POST") else None)
        assert response.status_code == 404, (method, path)
        assert set(response.json()) == {"detail"}


def test_delete_cascades(api: httpx.Client, emulator: EmulatorProcess) -> None:
    for name in ("gone", "kept"):
        api.post("workspaces/", json={"name": name})
        workflow = api.post(f"workspaces/{name}/workflows/", json={"name": "wf"}).json()
        api.post(f"workspaces/{name}/personas/", json={"name": "p"})
        session = api.post(f"workspaces/{name}/runsessions", json={"source": "user"}).json()
        api.post(f"workspaces/{name}/workflows/{workflow['id']}/run")
        emulator.open_issue(name, "boom", 2, "slx", run_session_id=session["id"])
    deleted = api.delete("workspaces/gone")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert api.get("workspaces/gone").status_code == 404
    assert api.delete("workspaces/gone").status_code == 404
    state = emulator.state()
    assert [w["name"] for w in state["workspaces"]] == ["kept"]
    for key in ("workflows", "personas", "issues"):
        assert {item["workspace"] for item in state[key]} == {"kept"}, key
    assert {item["workspace"] for item in state["runSessions"]} == {"kept"}
    assert len(state["runSessions"]) == 2
    # recreating the name starts empty
    api.post("workspaces/", json={"name": "gone"})
    assert api.get("workspaces/gone/workflows/").json()["count"] == 0
    assert api.get("workspaces/gone/issues").json()["count"] == 0


def test_pagination(api: httpx.Client) -> None:
    for index in range(7):
        assert api.post("workspaces/", json={"name": f"ws-{index}"}).status_code == 201
    first = api.get("workspaces/", params={"page-size": 3})
    page = first.json()
    assert page["count"] == 7
    assert [w["name"] for w in page["results"]] == ["ws-0", "ws-1", "ws-2"]
    assert page["previous"] is None
    assert page["next"].startswith(str(api.base_url.copy_with(path="/")))
    assert "page=2" in page["next"]
    assert "page-size=3" in page["next"]
    second = httpx.get(page["next"], headers=api.headers).json()
    assert [w["name"] for w in second["results"]] == ["ws-3", "ws-4", "ws-5"]
    third = httpx.get(second["next"], headers=api.headers).json()
    assert [w["name"] for w in third["results"]] == ["ws-6"]
    assert third["next"] is None
    back = httpx.get(third["previous"], headers=api.headers).json()
    assert back == second
    to_first = httpx.get(second["previous"], headers=api.headers).json()
    assert to_first == page
    assert api.get("workspaces/", params={"page": 4, "page-size": 3}).status_code == 404
    assert api.get("workspaces/", params={"page": 1, "page-size": 100}).json()["next"] is None
    for params in ({"page": 0}, {"page": "x"}, {"page-size": 0}, {"page-size": "big"}):
        response = api.get("workspaces/", params=params)
        assert response.status_code == 400, params
        assert list(response.json()) == list(params)


def test_default_page_size_flag(emulator_factory: Callable[..., EmulatorProcess]) -> None:
    emu = emulator_factory(api_token="t", extra_args=["--page-size", "2"])
    with emu.client() as api:
        for index in range(3):
            api.post("workspaces/", json={"name": f"w{index}"})
        page = api.get("workspaces/").json()
        assert len(page["results"]) == 2
        assert page["next"] is not None
        assert len(api.get("workspaces/", params={"page-size": 5000}).json()["results"]) == 3


def test_every_path_with_and_without_slash(api: httpx.Client, emulator: EmulatorProcess) -> None:
    assert api.post("workspaces", json={"name": "s"}).status_code == 201
    assert api.get("workspaces/s/").status_code == 200
    assert api.get("workspaces/s/status/").status_code == 200
    assert api.get("workspaces/s/workflows").status_code == 200
    assert api.get("workspaces/s/personas").status_code == 200
    assert api.get("workspaces/s/runsessions/").status_code == 200
    counts = emulator.requests()
    assert counts["GET /api/v3/workspaces/{workspace_name}"] == 1
    assert counts["POST /api/v3/workspaces/"] == 1
    assert counts["GET /api/v3/workspaces/{workspace_name}/workflows"] == 1
    assert counts["GET /api/v3/workspaces/{workspace_name}/runsessions/"] == 1
    assert all(not key.endswith("/") for key in emulator.state()["requests"])


def test_status_and_health_defaults(api: httpx.Client, workspace: str) -> None:
    assert api.get(f"workspaces/{workspace}/status").json() == {"workspace": True, "sync": True}
    health = api.get(f"workspaces/{workspace}/health").json()
    assert set(health) == {"workspace", "status", "checkedAt"}
    assert health["workspace"] == workspace
    assert health["status"] == "healthy"
    detailed = api.get(
        f"workspaces/{workspace}/health", params={"include_details": "true", "include_metrics": "true"}
    ).json()
    assert detailed["details"] == [{"component": "runner", "status": "healthy", "message": ""}]
    assert detailed["metrics"] == {}
