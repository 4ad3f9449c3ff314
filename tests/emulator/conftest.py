"""Fixtures for the emulator's own tests of the documented dialect (``tests/emulator/platform/`` has the
platform dialect's): the shared emulator and the factory speak ``documented`` whatever the default."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.emulator import EmulatorProcess, dialect_fixtures

DIALECT = "documented"


emulator_process, emulator_factory = dialect_fixtures(DIALECT)


@pytest.fixture
def api(emulator: EmulatorProcess) -> Iterator[httpx.Client]:
    """A client for ``/api/v3/`` on the shared emulator, authenticated with the static API token."""
    with emulator.client() as client:
        yield client


@pytest.fixture
def workspace(api: httpx.Client) -> str:
    """A fresh workspace named ``demo``."""
    response = api.post("workspaces/", json={"name": "demo", "displayName": "Demo"})
    assert response.status_code == 201, response.text
    return "demo"
