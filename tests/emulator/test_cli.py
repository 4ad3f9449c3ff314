"""The command line: the listening line, start-up time, signals, errors, parent watch."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

LINE = re.compile(r"^runwhen-emulator listening on http://127\.0\.0\.1:(\d+)$")


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "runwhen_operator.emulator", "--port", "0", "--dialect", "documented", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _first_line(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().decode().rstrip("\n")


def _finish(proc: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> tuple[int, bytes]:
    if proc.poll() is None:
        proc.send_signal(signum)
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout is not None
    assert proc.stderr is not None
    rest = proc.stdout.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, rest


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_listening_line_and_start_up_time() -> None:
    timings = []
    for _ in range(3):
        started = time.monotonic()
        proc = _spawn()
        line = _first_line(proc)
        timings.append(time.monotonic() - started)
        match = LINE.match(line)
        assert match, line
        port = int(match.group(1))
        assert port > 0
        assert httpx.get(f"http://127.0.0.1:{port}/api/v3/schema/").status_code == 200
        code, rest = _finish(proc)
        assert code == 0
        assert rest == b""  # exactly one line on stdout
    assert min(timings) < 1.0, timings


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_shut_down_cleanly_and_save(tmp_path: Path, signum: int) -> None:
    state_file = tmp_path / "state.json"
    proc = _spawn("--api-token", "t", "--state-file", str(state_file))
    url = _first_line(proc).rsplit(" ", 1)[1]
    response = httpx.post(
        f"{url}/api/v3/workspaces/", json={"name": "w"}, headers={"Authorization": "Bearer t"}
    )
    assert response.status_code == 201
    code, _ = _finish(proc, signum)
    assert code == 0
    assert '"name":"w"' in state_file.read_text()


def test_port_in_use_is_an_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "runwhen_operator.emulator", "--port", str(port)],
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert result.stdout == b""
    assert b"cannot listen" in result.stderr


def test_bad_arguments() -> None:
    for args in (["--page-size", "0"], ["--token-lifetime", "-1"], ["--run-outcome", "exploded"]):
        result = subprocess.run(
            [sys.executable, "-m", "runwhen_operator.emulator", *args],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2, args


def test_console_script_help() -> None:
    script = shutil.which("runwhen-emulator", path=os.path.dirname(sys.executable))
    assert script is not None
    result = subprocess.run([script, "--help"], capture_output=True, timeout=30, check=False)
    assert result.returncode == 0
    for flag in (
        "--api-token",
        "--token-lifetime",
        "--state-file",
        "--auto-suffix-duplicates",
        "--run-step-seconds",
    ):
        assert flag.encode() in result.stdout


def test_exit_with_parent() -> None:
    launcher = (
        "import subprocess, sys\n"
        "argv = [sys.executable, '-m', 'runwhen_operator.emulator', '--port', '0', '--exit-with-parent']\n"
        "p = subprocess.Popen(argv, stdout=subprocess.PIPE)\n"
        "print(p.pid, p.stdout.readline().decode().strip(), flush=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", launcher], capture_output=True, timeout=30, check=True)
    pid_text, _, line = result.stdout.decode().partition(" ")
    assert LINE.match(line.strip()), line
    pid = int(pid_text)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _running(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the emulator outlived its parent")
