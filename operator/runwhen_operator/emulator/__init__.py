"""The RunWhen Platform API emulator: an aiohttp server for tests, demos and benchmarks.

It speaks one of two dialects (``EmulatorConfig.dialect``): ``platform`` (the default, the server's
own OpenAPI document) or ``documented`` (the older public pages).

``create_app(config)`` builds the application, ``run_emulator(config)`` serves it in-process and
``runwhen-emulator`` (``python -m runwhen_operator.emulator``) runs it from the command line.
"""

from __future__ import annotations

from runwhen_operator.emulator.app import EmulatorConfig, create_app, run_emulator

__all__ = ["EmulatorConfig", "create_app", "run_emulator"]
