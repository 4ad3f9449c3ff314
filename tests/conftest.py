"""Shared pytest configuration: fixtures live in tests/support and are loaded as plugins."""

pytest_plugins = [
    "tests.support.controlplane",
    "tests.support.emulator",
]
