"""Shared pytest configuration: fixtures live in tests/support and are loaded as plugins."""

from pathlib import Path

_SUPPORT = Path(__file__).parent / "support"

pytest_plugins = [
    f"tests.support.{name}"
    for name in ("controlplane", "emulator", "operator", "contract", "health")
    if (_SUPPORT / f"{name}.py").exists()
]
