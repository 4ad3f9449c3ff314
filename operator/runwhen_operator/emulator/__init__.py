"""The RunWhen Platform API v3 emulator: an aiohttp server for tests, demos and benchmarks.

``create_app(config)`` builds the application, ``run_emulator(config)`` serves it in-process and
``runwhen-emulator`` (``python -m runwhen_operator.emulator``) runs it from the command line.
"""

from __future__ import annotations

from runwhen_operator.emulator.app import EmulatorConfig, create_app, run_emulator

__all__ = ["EmulatorConfig", "create_app", "run_emulator"]
