"""Authentication: JWT login (JSON and form), expiry, refresh rotation, static token."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.emulator import EmulatorProcess


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return data


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_json_login_returns_jwt_pair(emulator: EmulatorProcess) -> None:
    response = httpx.post(emulator.api_url + "token/", json={"username": "admin", "password": "admin"})
    assert response.status_code == 200
    pair = response.json()
    assert set(pair) == {"access", "refresh"}
    access = _claims(pair["access"])
    assert access["type"] == "access"
    assert access["sub"] == "admin"
    assert 299 <= access["exp"] - access["iat"] <= 301
    assert _claims(pair["refresh"])["type"] == "refresh"
    listed = httpx.get(emulator.api_url + "workspaces/", headers=_bearer(pair["access"]))
    assert listed.status_code == 200
    assert listed.json()["count"] == 0


def test_form_login_without_trailing_slash(emulator: EmulatorProcess) -> None:
    response = httpx.post(emulator.api_url + "token", data={"username": "admin", "password": "admin"})
    assert response.status_code == 200
    assert (
        httpx.get(emulator.api_url + "workspaces", headers=_bearer(response.json()["access"])).status_code
        == 200
    )


def test_wrong_credentials_are_401(emulator: EmulatorProcess) -> None:
    response = httpx.post(emulator.api_url + "token/", json={"username": "admin", "password": "nope"})
    assert response.status_code == 401
    assert "detail" in response.json()
    response = httpx.post(emulator.api_url + "token/", data={"username": "root", "password": "admin"})
    assert response.status_code == 401


def test_login_body_errors_are_field_maps(emulator: EmulatorProcess) -> None:
    response = httpx.post(emulator.api_url + "token/", json={"username": "admin"})
    assert response.status_code == 400
    assert response.json() == {"password": ["This field is required."]}
    response = httpx.post(emulator.api_url + "token/", json={"username": 1, "password": "admin"})
    assert response.status_code == 400
    assert response.json() == {"username": ["Not a valid string."]}
    response = httpx.post(
        emulator.api_url + "token/", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_missing_and_malformed_tokens_are_401(emulator: EmulatorProcess) -> None:
    url = emulator.api_url + "workspaces/"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    for header in ("Bearer", "Basic YWRtaW46YWRtaW4=", "Bearer not-a-jwt", "Bearer a.b.c"):
        response = httpx.get(url, headers={"Authorization": header})
        assert response.status_code == 401, header
        assert set(response.json()) == {"detail"}


def test_tampered_token_is_rejected(emulator: EmulatorProcess) -> None:
    access = httpx.post(emulator.api_url + "token/", json={"username": "admin", "password": "admin"}).json()[
        "access"
    ]
    header, _, signature = access.split(".")
    claims = _claims(access)
    claims["sub"] = "mallory"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = f"{header}.{forged_body}.{signature}"
    assert httpx.get(emulator.api_url + "workspaces/", headers=_bearer(forged)).status_code == 401


def test_static_api_token(emulator: EmulatorProcess) -> None:
    assert httpx.get(emulator.api_url + "workspaces/", headers=_bearer("rw-test-token")).status_code == 200
    assert httpx.get(emulator.api_url + "workspaces/", headers=_bearer("rw-test-token-x")).status_code == 401


def test_refresh_rotates_and_revokes_the_old_refresh_token(emulator: EmulatorProcess) -> None:
    first = httpx.post(emulator.api_url + "token/", json={"username": "admin", "password": "admin"}).json()
    second = httpx.post(emulator.api_url + "token/refresh/", json={"refresh": first["refresh"]})
    assert second.status_code == 200
    pair = second.json()
    assert pair["refresh"] != first["refresh"]
    assert pair["access"] != first["access"]
    assert httpx.get(emulator.api_url + "workspaces/", headers=_bearer(pair["access"])).status_code == 200
    again = httpx.post(emulator.api_url + "token/refresh/", json={"refresh": first["refresh"]})
    assert again.status_code == 401
    form = httpx.post(emulator.api_url + "token/refresh", data={"refresh": pair["refresh"]})
    assert form.status_code == 200


def test_tokens_cannot_stand_in_for_each_other(emulator: EmulatorProcess) -> None:
    pair = httpx.post(emulator.api_url + "token/", json={"username": "admin", "password": "admin"}).json()
    assert httpx.get(emulator.api_url + "workspaces/", headers=_bearer(pair["refresh"])).status_code == 401
    assert (
        httpx.post(emulator.api_url + "token/refresh/", json={"refresh": pair["access"]}).status_code == 401
    )
    assert httpx.post(emulator.api_url + "token/refresh/", json={}).status_code == 400


def test_access_token_expires(emulator_factory: Callable[..., EmulatorProcess]) -> None:
    short = emulator_factory(token_lifetime=1.0)
    pair = httpx.post(short.api_url + "token/", json={"username": "admin", "password": "admin"}).json()
    claims = _claims(pair["access"])
    assert abs(claims["exp"] - claims["iat"] - 1.0) < 0.01
    assert httpx.get(short.api_url + "workspaces/", headers=_bearer(pair["access"])).status_code == 200
    time.sleep(max(0.0, claims["exp"] - time.time()) + 0.2)
    expired = httpx.get(short.api_url + "workspaces/", headers=_bearer(pair["access"]))
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    refreshed = httpx.post(short.api_url + "token/refresh/", json={"refresh": pair["refresh"]})
    assert refreshed.status_code == 200
    assert (
        httpx.get(short.api_url + "workspaces/", headers=_bearer(refreshed.json()["access"])).status_code
        == 200
    )


def test_custom_credentials(emulator_factory: Callable[..., EmulatorProcess]) -> None:
    other = emulator_factory(username="ops@example.com", password="s3cret")
    assert (
        httpx.post(other.api_url + "token/", json={"username": "admin", "password": "admin"}).status_code
        == 401
    )
    response = httpx.post(
        other.api_url + "token/", json={"username": "ops@example.com", "password": "s3cret"}
    )
    assert response.status_code == 200
    created = httpx.post(
        other.api_url + "workspaces/", json={"name": "w"}, headers=_bearer(response.json()["access"])
    )
    assert created.json()["owner"] == "ops@example.com"
    assert httpx.get(other.api_url + "workspaces/", headers=_bearer("rw-test-token")).status_code == 401
