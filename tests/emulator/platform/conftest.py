"""Fixtures for the platform dialect's tests: the shared emulator speaks ``platform``, ``api`` is a
client for ``/api/`` (paths like ``v3/workspaces``), and ``conform`` checks an answer against the
packaged OpenAPI document (``papi.json``) where it has the operation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.support.emulator import EmulatorProcess, dialect_fixtures

DIALECT = "platform"
DOCUMENT = Path(__file__).parents[3] / "operator" / "runwhen_operator" / "emulator" / "papi.json"


emulator_process, emulator_factory = dialect_fixtures(DIALECT)


def api_client(emulator: EmulatorProcess) -> httpx.Client:
    return httpx.Client(
        base_url=emulator.url + "/api/",
        headers={"Authorization": f"Bearer {emulator.api_token}"},
        timeout=15.0,
    )


@pytest.fixture
def api(emulator: EmulatorProcess) -> Iterator[httpx.Client]:
    """A client for ``/api/`` on the shared platform emulator, with the static API token."""
    with api_client(emulator) as client:
        yield client


@pytest.fixture
def workspace(api: httpx.Client) -> str:
    """A fresh workspace named ``demo``."""
    response = api.post("v3/workspaces", json={"name": "demo"})
    assert response.status_code == 201, response.text
    return "demo"


@cache
def _document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return data


def conform(response: httpx.Response, template: str) -> Any:
    """The JSON body of ``response``, validated against the document's schema for ``template``, the
    request's method and the status (when the document describes that answer). Returns the body."""
    body = response.json()
    document = _document()
    operation = document["paths"].get(template, {}).get(response.request.method.lower())
    if operation is None:
        return body
    answer = operation["responses"].get(str(response.status_code))
    assert answer is not None or response.status_code in (401, 404, 409), (
        f"{response.status_code} is not documented for {response.request.method} {template}"
    )
    schema = ((answer or {}).get("content") or {}).get("application/json", {}).get("schema")
    if schema is not None:
        validator = jsonschema.Draft202012Validator(
            {**schema, "components": document["components"]}, format_checker=jsonschema.FormatChecker()
        )
        errors = sorted(validator.iter_errors(body), key=lambda error: list(error.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    return body
