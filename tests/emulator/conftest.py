"""Fixtures for the emulator's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.emulator import EmulatorProcess


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
