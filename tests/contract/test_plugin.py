"""The contract plugin end to end: a pytest run in a subprocess whose tests write recorded exchanges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "dialect": "platform",
    "method": "GET",
    "path": "/api/v3/workspaces/demo/status",
    "query": "",
    "requestContentType": None,
    "userAgent": "runwhen-operator",
    "requestBody": None,
    "status": 200,
    "responseContentType": "application/json",
    "responseBody": json.dumps({"workspace": True, "sync": True}),
    "fault": None,
}
BAD = {**GOOD, "responseBody": json.dumps({"workspace": True})}
DOCUMENTED = {**GOOD, "dialect": "documented", "path": "/api/v3/workspaces/demo/health"}


def _run(
    tmp_path: Path, *lines: dict[str, object], extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    payload = "".join(json.dumps(line) + "\n" for line in lines)
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            f"""
            import os
            from pathlib import Path

            def test_records():
                directory = Path(os.environ["RUNWHEN_CONTRACT_DIR"])
                assert directory.is_dir()
                assert directory.name == f"contract-{{os.getpid()}}"
                if {payload!r}:
                    (directory / "exchanges-1.jsonl").write_text({payload!r})
            """
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RUNWHEN_CONTRACT_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.contract", "-p", "no:cacheprovider", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_nothing_recorded(tmp_path: Path) -> None:
    result = _run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "contract: 0 exchanges checked (0 operator requests, 0 responses), 0 violations" in result.stdout
    assert not list((tmp_path / ".testenv").glob("contract-*"))  # removed when clean


def test_clean_exchanges_pass(tmp_path: Path) -> None:
    result = _run(tmp_path, GOOD, GOOD, DOCUMENTED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "contract: 2 exchanges checked (2 operator requests, 2 responses), 0 violations" in result.stdout
    assert "1 documented-dialect exchanges not checked" in result.stdout


def test_a_violation_fails_the_run(tmp_path: Path) -> None:
    result = _run(tmp_path, GOOD, BAD)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "contract: 2 exchanges checked (2 operator requests, 2 responses), 1 violations" in result.stdout
    assert "exchanges-1.jsonl:2: response: GET /api/v3/workspaces/demo/status -> 200" in result.stdout
    assert "'sync' is a required property" in result.stdout
    kept = list((tmp_path / ".testenv").glob("contract-*/exchanges-1.jsonl"))
    assert len(kept) == 1


def test_lists_at_most_twenty(tmp_path: Path) -> None:
    result = _run(tmp_path, *([BAD] * 25))
    assert result.returncode == 1
    assert result.stdout.count("'sync' is a required property") == 20
    assert "... and 5 more" in result.stdout
    assert "25 violations" in result.stdout


@pytest.mark.parametrize("flag", ["--no-contract"])
def test_can_be_turned_off(tmp_path: Path, flag: str) -> None:
    result = _run(tmp_path, extra=(flag,))
    assert result.returncode == 1  # the inner test needs the variable
    assert "contract:" not in result.stdout
