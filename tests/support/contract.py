"""Pytest plugin: every exchange the emulators record is checked against the server's OpenAPI document.

At session start the plugin creates ``.testenv/contract-<pid>/`` and sets ``RUNWHEN_CONTRACT_DIR`` to it;
the emulator fixtures pass ``--record-exchanges $RUNWHEN_CONTRACT_DIR`` to every emulator they start, and
each emulator appends its ``/api/`` exchanges to ``exchanges-<pid>.jsonl`` there. At session end the
plugin validates every such file with :class:`tests.contract.validator.ContractValidator` (against
``operator/runwhen_operator/emulator/papi.json``), prints::

    contract: N exchanges checked (R operator requests, S responses), V violations

in the terminal summary with up to 20 of the violations, and makes the run fail when V > 0 (the
directory is then kept for inspection; without violations it is removed). Documented-dialect exchanges
are counted on a line of their own and not checked.

``--no-contract`` turns the plugin off (no directory, no variable, no check).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.contract.validator import ContractReport

ENV = "RUNWHEN_CONTRACT_DIR"
MAX_LISTED = 20

_DIR = pytest.StashKey[Path]()
_PREVIOUS = pytest.StashKey[str | None]()
_REPORT = pytest.StashKey["ContractReport | None"]()
_ERROR = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-contract",
        action="store_true",
        default=False,
        help="do not record emulator exchanges nor check them against papi.json",
    )


def _enabled(config: pytest.Config) -> bool:
    return not config.getoption("--no-contract", default=False) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not _enabled(config):
        return
    directory = config.rootpath / ".testenv" / f"contract-{os.getpid()}"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    config.stash[_DIR] = directory
    config.stash[_PREVIOUS] = os.environ.get(ENV)
    os.environ[ENV] = str(directory)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _DIR not in config.stash:
        return
    previous = config.stash[_PREVIOUS]
    if previous is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = previous


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _DIR not in config.stash:
        return
    directory = config.stash[_DIR]
    files = sorted(directory.glob("exchanges-*.jsonl"))
    report: ContractReport | None = None
    try:
        from tests.contract.validator import ContractReport, ContractValidator

        report = ContractValidator().validate_files(files) if files else ContractReport()
    except Exception as exc:  # a broken validator must fail the run, not pass it silently
        config.stash[_ERROR] = f"{type(exc).__name__}: {exc}"
    config.stash[_REPORT] = report
    failed = report is None or bool(report.violations)
    if failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if not failed:
        shutil.rmtree(directory, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if _REPORT not in config.stash:
        return
    report = config.stash[_REPORT]
    if report is None:
        terminalreporter.write_line(
            f"contract: the exchanges could not be checked: {config.stash[_ERROR]}", red=True, bold=True
        )
        return
    line = report.summary()
    if report.violations:
        terminalreporter.write_sep("=", "contract violations", red=True)
        for violation in report.violations[:MAX_LISTED]:
            terminalreporter.write_line(str(violation))
        if len(report.violations) > MAX_LISTED:
            terminalreporter.write_line(f"... and {len(report.violations) - MAX_LISTED} more")
        terminalreporter.write_line(f"(exchanges kept in {config.stash[_DIR]})")
        terminalreporter.write_line(line, red=True, bold=True)
    else:
        terminalreporter.write_line(line)
    if report.faults or report.documented or report.incomplete:
        terminalreporter.write_line(
            f"contract: {report.faults} fault-injected responses checked for the error shape only, "
            f"{report.incomplete} requests whose client left mid-request checked for their operation "
            f"only, {report.documented} documented-dialect exchanges not checked"
        )
