"""Platform dialect: paths and slash redirects, error shapes, auth, the served document."""

from __future__ import annotations

import httpx

from tests.emulator.platform.conftest import conform
from tests.support.emulator import EmulatorProcess

V3 = "/api/v3/workspaces"


def test_other_slash_form_is_a_307_to_the_route(api: httpx.Client, workspace: str) -> None:
    response = api.get("v3/workspaces/?limit=5")
    assert response.status_code == 307
    assert response.headers["Location"].endswith("/api/v3/workspaces?limit=5")
    assert api.get("v3/workspaces", follow_redirects=True).status_code == 200
    token = api.post("v3/token", json={"username": "admin", "password": "admin"})
    assert token.status_code == 307
    assert token.headers["Location"].endswith("/api/v3/token/")
    assert api.get(f"v3/workspaces/{workspace}/status/").status_code == 307


def test_unknown_path_wrong_method_and_no_put(api: httpx.Client, workspace: str) -> None:
    missing = api.get("v3/nothing-here")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    health = api.get(f"v3/workspaces/{workspace}/health")
    assert (health.status_code, health.json()) == (404, {"detail": "Not Found"})
    put = api.put(f"v3/workspaces/{workspace}", json={"alias": "x"})
    assert (put.status_code, put.json()) == (405, {"detail": "Method Not Allowed"})
    assert "PATCH" in put.headers["Allow"]
    for path in (f"v3/workspaces/{workspace}/workflows", f"v3/workspaces/{workspace}/personas"):
        assert api.post(path, json={"name": "x"}).status_code == 405


def test_missing_objects_are_404_with_a_detail(api: httpx.Client, workspace: str) -> None:
    assert api.get("v3/workspaces/nope").json() == {"detail": "Workspace 'nope' not found"}
    assert api.get(f"v4/workspaces/{workspace}/workflows/nope").status_code == 404
    assert api.get(f"v3/workspaces/{workspace}/runsessions/999").status_code == 404


def test_validation_errors_are_422_with_loc(api: httpx.Client, workspace: str) -> None:
    bad_json = api.post("v3/workspaces", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 422
    assert bad_json.json()["detail"][0]["loc"][0] == "body"
    assert bad_json.json()["detail"][0]["type"] == "json_invalid"
    path = api.get(f"v3/workspaces/{workspace}/runsessions/abc")
    assert path.status_code == 422
    assert path.json()["detail"][0]["loc"] == ["path", "runsession_id"]
    query = api.get("v3/workspaces", params={"limit": "0", "offset": "-1"})
    assert query.status_code == 422
    assert [error["loc"] for error in conform(query, V3)["detail"]] == [
        ["query", "limit"],
        ["query", "offset"],
    ]
    body = api.post("v3/workspaces", json={})
    assert body.json()["detail"] == [
        {"loc": ["body", "name"], "msg": "Field required", "type": "missing", "input": {}}
    ]


def test_auth(emulator: EmulatorProcess) -> None:
    with httpx.Client(base_url=emulator.url + "/api/") as client:
        anonymous = client.get("v3/workspaces")
        assert anonymous.status_code == 401
        assert "detail" in anonymous.json()
        bad = client.post("v3/token/", json={"username": "admin", "password": "wrong"})
        assert bad.status_code == 401
        assert bad.json() == {"detail": "No active account found with the given credentials"}
        pair = client.post("v3/token/", json={"username": "admin", "password": "admin"})
        assert pair.status_code == 200
        tokens = conform(pair, "/api/v3/token/")
        form = client.post("v3/token/", data={"username": "admin", "password": "admin"})
        assert form.status_code == 200
        headers = {"Authorization": f"Bearer {tokens['access']}"}
        assert client.get("v3/workspaces", headers=headers).status_code == 200
        refreshed = client.post("v3/token/refresh/", json={"refresh": tokens["refresh"]})
        assert set(conform(refreshed, "/api/v3/token/refresh/")) == {"access", "refresh"}
        assert client.post("v3/token/refresh/", json={}).status_code == 422
        assert client.post("v3/token/verify/", json={"token": tokens["access"]}).json() == {}
        assert client.post("v3/token/verify/", json={"token": "x"}).status_code == 401


def test_email_login(emulator_factory: object) -> None:
    assert callable(emulator_factory)
    emu = emulator_factory(username="ops@example.org", password="pw")
    with httpx.Client(base_url=emu.url + "/api/") as client:
        by_email = client.post("v3/token/", json={"email": "ops@example.org", "password": "pw"})
        assert by_email.status_code == 200
        assert set(by_email.json()) == {"access", "refresh"}
        assert (
            client.post("v3/token/", json={"email": "ops@example.org", "password": "no"}).status_code == 401
        )
        assert (
            client.post("v3/token/", json={"email": "other@example.org", "password": "pw"}).status_code == 401
        )
        headers = {"Authorization": f"Bearer {by_email.json()['access']}"}
        client.post("v3/workspaces", json={"name": "mine"}, headers=headers)
        workspace = client.get("v3/workspaces/mine", headers=headers).json()
        assert workspace["ownerEmail"] == "ops@example.org"
        assert workspace["owner"]["email"] == "ops@example.org"


def test_default_user_logs_in_with_its_derived_email(emulator: EmulatorProcess) -> None:
    response = httpx.post(
        emulator.url + "/api/v3/token/", json={"email": "admin@example.com", "password": "admin"}
    )
    assert response.status_code == 200


def test_served_document(emulator: EmulatorProcess) -> None:
    served = httpx.get(emulator.url + "/openapi.json")
    assert served.status_code == 200
    assert served.json()["info"]["title"] == "papi"


def test_counters_use_the_document_templates(
    emulator: EmulatorProcess, api: httpx.Client, workspace: str
) -> None:
    api.get(f"v3/workspaces/{workspace}")
    api.patch(f"v3/workspaces/{workspace}", json={"alias": "A"})
    api.get("v3/workspaces/")
    requests = emulator.state()["requests"]
    assert requests["GET /api/v3/workspaces/{workspace_short_name}"] == 1
    assert requests["PATCH /api/v3/workspaces/{workspace_name}"] == 1
    assert requests["POST /api/v3/workspaces"] == 1
    assert requests["GET <unmatched>"] == 1
    assert emulator.responses()["GET <unmatched> 307"] == 1
    assert emulator.write_count() == 2
    assert emulator.state()["dialect"] == "platform"
