"""The client's emulator-backed tests drive the documented dialect's wire-level methods: the shared
emulator and the factory speak ``documented`` here (tests/client/test_platform_mock.py and
tests/contract/ cover the platform dialect)."""

from __future__ import annotations

from tests.support.emulator import dialect_fixtures

emulator_process, emulator_factory = dialect_fixtures("documented")
