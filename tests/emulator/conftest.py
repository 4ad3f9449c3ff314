"""Fixtures for the emulator's own tests of the documented dialect (``tests/emulator/platform/`` has the
platform dialect's): the shared emulator and the factory speak ``documented`` whatever the default."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.emulator import EmulatorProcess

DIALECT = "documented"


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[EmulatorProcess]:
    proc = EmulatorProcess(username="admin", password="admin", api_token="rw-test-token", dialect=DIALECT)
    proc.start()
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorProcess]]:
    started: list[EmulatorProcess] = []

    def factory(**kwargs: Any) -> EmulatorProcess:
        kwargs.setdefault("dialect", DIALECT)
        proc = EmulatorProcess(**kwargs)
        started.append(proc)
        return proc.start()

    try:
        yield factory
    finally:
        for proc in started:
            proc.close()


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
