"""Fixtures of the contract tests: an emulator speaking the platform dialect."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.support.emulator import EmulatorProcess

API_TOKEN = "rw-contract-token"


@functools.cache
def platform_dialect_available() -> bool:
    """Whether the emulator's command line offers ``--dialect platform``."""
    result = subprocess.run(
        [sys.executable, "-m", "runwhen_operator.emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return "--dialect" in result.stdout and "platform" in result.stdout


@pytest.fixture
def platform_emulator(emulator_factory: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    """A fresh emulator with ``--dialect platform``, static API token ``API_TOKEN``, fast run steps."""
    if not platform_dialect_available():
        pytest.skip("the emulator has no --dialect platform yet")
    return emulator_factory(api_token=API_TOKEN, run_step_seconds=0.05, dialect="platform")
