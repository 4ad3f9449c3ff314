"""Pytest plugin: the RunWhen API emulator as a real subprocess on a loopback port.

Fixtures:
- ``emulator_process`` (session): one emulator for the whole run (user ``admin``/``admin``, API token
  ``rw-test-token``, dialect :data:`DEFAULT_DIALECT`).
- ``emulator`` (function): that process, reset (no objects, no faults, counters at zero) before the test.
- ``emulator_factory`` (function): ``factory(**kwargs) -> EmulatorProcess`` starts extra emulators with
  their own arguments; they are stopped after the test.

With ``RUNWHEN_CONTRACT_DIR`` set, every emulator started here records its API exchanges there
(``--record-exchanges``), for the contract checks.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

__all__ = [
    "CONTRACT_DIR_ENV",
    "DEFAULT_DIALECT",
    "EmulatorError",
    "EmulatorProcess",
    "RequestCounts",
    "dialect_fixtures",
    "emulator",
    "emulator_factory",
    "emulator_process",
]

DEFAULT_DIALECT = "platform"
#: A workflow definition that uses every field of the typed definition (for client-level tests).
SAMPLE_DEFINITION: dict[str, Any] = {
    "fromActivities": [
        {
            "name": "oom",
            "displayName": "OOM kills",
            "description": "restart what was killed",
            "match": {"activityVerbs": ["oomkilled"], "slxs": ["k8s-pods"]},
            "actions": [{"tasks": {"slx": "k8s-pods", "persona": "edgar", "titles": ["restart"]}}],
        }
    ]
}
"""The dialect of ``EmulatorProcess`` and the ``emulator_process`` fixture unless one is given."""
CONTRACT_DIR_ENV = "RUNWHEN_CONTRACT_DIR"
LISTENING_PREFIX = "runwhen-emulator listening on "
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
TOKEN_TEMPLATES = ("/api/v3/token", "/api/v3/token/refresh")

_FAULT_KEYS = {
    "error_rate": "errorRate",
    "latency_ms": "latencyMs",
    "rate_limit_per_second": "rateLimitPerSecond",
    "fail_after_commit_rate": "failAfterCommitRate",
    "seed": "seed",
}
_HEALTH_KEYS = {
    "status": "status",
    "details": "details",
    "metrics": "metrics",
    "workspace": "workspace",
    "sync": "sync",
    "index_health": "indexHealth",
}


class EmulatorError(RuntimeError):
    """The emulator did not start, or a control call failed."""


def _normalise_key(key: str) -> str:
    """``"POST /api/v3/workspaces/"`` -> ``"POST /api/v3/workspaces"`` (also with a status suffix)."""
    parts = key.split(" ")
    if len(parts) >= 2 and parts[1] != "/":
        parts[1] = parts[1].rstrip("/")
    return " ".join(parts)


class RequestCounts(Counter[str]):
    """Counters keyed ``"METHOD /path/template"``; missing keys count 0 and a trailing slash in a
    key does not matter (the platform dialect's token templates end in one)."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        super().__init__()
        for key, count in (counts or {}).items():
            super().__setitem__(_normalise_key(key), super().__getitem__(_normalise_key(key)) + count)

    def __getitem__(self, key: str) -> int:
        return super().__getitem__(_normalise_key(key))

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(_normalise_key(key), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(_normalise_key(key))


def _camel(values: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {names.get(key, key): value for key, value in values.items()}


class EmulatorProcess:
    """One ``python -m runwhen_operator.emulator`` subprocess and sync helpers for its control endpoints."""

    def __init__(
        self,
        *,
        username: str = "admin",
        password: str = "admin",
        dialect: str | None = None,
        api_token: str | None = None,
        token_lifetime: float | None = None,
        state_file: str | os.PathLike[str] | None = None,
        run_step_seconds: float | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 15.0,
    ) -> None:
        self.username = username
        self.password = password
        self.dialect = dialect or DEFAULT_DIALECT
        self.api_token = api_token
        self.token_lifetime = token_lifetime
        self.state_file = Path(state_file) if state_file is not None else None
        self.run_step_seconds = run_step_seconds
        self.extra_args = list(extra_args)
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._client: httpx.Client | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self.url + "/api/v3/"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def argv(self, port: int) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "runwhen_operator.emulator",
            "--host",
            self.host,
            "--port",
            str(port),
            "--username",
            self.username,
            "--password",
            self.password,
            "--dialect",
            self.dialect,
            "--exit-with-parent",
        ]
        contract_dir = os.environ.get(CONTRACT_DIR_ENV)
        if contract_dir:
            args += ["--record-exchanges", contract_dir]
        if self.api_token is not None:
            args += ["--api-token", self.api_token]
        if self.token_lifetime is not None:
            args += ["--token-lifetime", str(self.token_lifetime)]
        if self.state_file is not None:
            args += ["--state-file", str(self.state_file)]
        if self.run_step_seconds is not None:
            args += ["--run-step-seconds", str(self.run_step_seconds)]
        return args + self.extra_args

    def start(self) -> EmulatorProcess:
        """Start the process (on the port it had before, if it ran already) and wait until it listens."""
        if self.alive:
            return self
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="runwhen-emulator-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        try:
            self._spawn(self.port)
        except EmulatorError:
            if self.port == 0:
                raise
            self._spawn(0)
        return self

    def _spawn(self, port: int) -> None:
        assert self._log_path is not None
        with self._log_path.open("ab") as log:
            proc = subprocess.Popen(
                self.argv(port), stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
            )
        self.proc = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        buffer = b""
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._terminate(proc)
                raise EmulatorError(
                    f"the emulator did not start within {self.startup_timeout}s\n{self.logs()}"
                )
            ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 0.2))
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    proc.wait(timeout=5)
                    self._close_pipe(proc)
                    raise EmulatorError(f"the emulator exited with {proc.returncode}\n{self.logs()}")
                buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode().strip()
        if not line.startswith(LISTENING_PREFIX):
            self._terminate(proc)
            raise EmulatorError(f"unexpected first line from the emulator: {line!r}\n{self.logs()}")
        self.url = line[len(LISTENING_PREFIX) :]
        self.port = int(self.url.rsplit(":", 1)[1])
        if self._client is not None:
            self._client.close()
        self._client = httpx.Client(base_url=self.url, timeout=15.0)

    @staticmethod
    def _close_pipe(proc: subprocess.Popen[bytes]) -> None:
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()

    def _terminate(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._close_pipe(proc)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code (None if it never ran)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        proc = self.proc
        if proc is None:
            return None
        self._terminate(proc, timeout)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: no chance to save or clean up."""
        if self._client is not None:
            self._client.close()
            self._client = None
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self._close_pipe(proc)

    def restart(self) -> EmulatorProcess:
        """Stop and start again, on the same port if it can still be bound."""
        self.stop()
        return self.start()

    def logs(self) -> str:
        """What the process wrote to stderr."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")

    def close(self) -> None:
        """Stop the process and remove its log file."""
        self.stop()
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmulatorProcess(url={self.url!r}, pid={self.pid}, dialect={self.dialect!r})"

    # --- API helpers ----------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """A Bearer header: the static API token if there is one, else a fresh access token."""
        return {"Authorization": f"Bearer {self.api_token or self.access_token()}"}

    def access_token(self) -> str:
        response = self._http.post(
            "/api/v3/token/", json={"username": self.username, "password": self.password}
        )
        self._check(response)
        return str(response.json()["access"])

    def client(self, **kwargs: Any) -> httpx.Client:
        """A new httpx client for ``/api/v3/`` (paths relative to ``api_url``) with a Bearer header."""
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        return httpx.Client(
            base_url=self.api_url, headers=headers, timeout=kwargs.pop("timeout", 15.0), **kwargs
        )

    # --- control helpers ------------------------------------------------------------------------

    @property
    def _http(self) -> httpx.Client:
        if self._client is None:
            raise EmulatorError("the emulator is not running")
        return self._client

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise EmulatorError(
                f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text}"
            )
        return response

    def state(self) -> dict[str, Any]:
        """``GET /_emulator/state``."""
        data: dict[str, Any] = self._check(self._http.get("/_emulator/state")).json()
        return data

    def live(self, collection: str) -> list[dict[str, Any]]:
        """The live objects of ``collection`` in ``state()``, in the CRD's names whatever the dialect: a
        platform workspace's ``alias`` also as ``displayName``, a workflow's or persona's short name as
        ``name`` (the server's ``<ws>--<short>`` kept as ``serverName``); soft-deleted ones left out."""
        state = self.state()
        items = [dict(i) for i in state[collection] if not i.get("deletedAt")]
        if state.get("dialect") == "platform":
            for item in items:
                if collection == "workspaces" and "alias" in item:
                    item["displayName"] = item["alias"]
                if collection in ("workflows", "personas") and item.get("shortName"):
                    item["serverName"], item["name"] = item["name"], item["shortName"]
        return items

    def requests(self) -> RequestCounts:
        """Request counters: ``{"METHOD /api/v3/template": count}``."""
        return RequestCounts(self.state()["requests"])

    def responses(self) -> RequestCounts:
        """Response counters: ``{"METHOD /api/v3/template STATUS": count}`` (status 0: dropped)."""
        return RequestCounts(self.state()["responses"])

    def write_count(self) -> int:
        """POST/PUT/PATCH/DELETE requests under ``/api/``, not counting the token endpoints."""
        total = 0
        for key, count in self.requests().items():
            method, _, template = key.partition(" ")
            if method in WRITE_METHODS and template.startswith("/api/") and template not in TOKEN_TEMPLATES:
                total += int(count)
        return total

    def reset_requests(self) -> None:
        self._check(self._http.delete("/_emulator/requests"))

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """``error_rate``, ``latency_ms``, ``rate_limit_per_second``, ``fail_after_commit_rate``, ``seed``
        (camelCase names work too). Replaces the whole fault configuration."""
        body = _camel(faults, _FAULT_KEYS)
        data: dict[str, Any] = self._check(self._http.put("/_emulator/faults", json=body)).json()
        return data

    def clear_faults(self) -> None:
        self._check(self._http.put("/_emulator/faults", json={}))

    def set_health(self, ws: str, /, **health: Any) -> dict[str, Any]:
        """Set what workspace ``ws`` reports: ``status``, ``details``, ``metrics``, ``workspace`` (bool),
        ``sync`` (bool), ``index_health`` (platform ``/index-health``); fields not given stay as they are."""
        body = _camel(health, _HEALTH_KEYS)
        data: dict[str, Any] = self._check(
            self._http.put(f"/_emulator/workspaces/{ws}/health", json=body)
        ).json()
        return data

    def open_issue(
        self, workspace: str, title: str | None, severity: int | None, slx_name: str = "", **extra: Any
    ) -> dict[str, Any]:
        """Open an issue (``extra``: ``run_session_id``, ``open_occurrence_count``, ``task_title``);
        returns it. ``title`` and ``severity`` may be None in the platform dialect."""
        body: dict[str, Any] = {"title": title, "severity": severity, "slxName": slx_name}
        names = {
            "run_session_id": "runSessionId",
            "open_occurrence_count": "openOccurrenceCount",
            "task_title": "taskTitle",
        }
        body.update(_camel(extra, names))
        data: dict[str, Any] = self._check(
            self._http.post(f"/_emulator/workspaces/{workspace}/issues", json=body)
        ).json()
        return data

    def close_issue(self, workspace: str, issue_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self._check(
            self._http.post(f"/_emulator/workspaces/{workspace}/issues/{issue_id}/close")
        ).json()
        return data

    def set_runs(self, outcome: str = "completed", step_seconds: float | None = None) -> dict[str, Any]:
        """How workflow runs triggered from now on end, and the seconds of each lifecycle step."""
        body: dict[str, Any] = {"outcome": outcome}
        if step_seconds is not None:
            body["stepSeconds"] = step_seconds
        data: dict[str, Any] = self._check(self._http.put("/_emulator/runs", json=body)).json()
        return data

    def set_runners(self, workspace: str, runners: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Replace the runners of ``workspace``: ``[{"name", "value"?, "health", "lastHeartbeat"?}]``."""
        data: list[dict[str, Any]] = self._check(
            self._http.put(f"/_emulator/workspaces/{workspace}/runners", json=list(runners))
        ).json()
        return data

    def heartbeat(
        self, workspace: str, runner: str, health: str = "online", value: str | None = None
    ) -> dict[str, Any]:
        """Runner ``runner`` reports to ``workspace`` now (registered by name on its first report)."""
        body: dict[str, Any] = {"health": health}
        if value is not None:
            body["value"] = value
        data: dict[str, Any] = self._check(
            self._http.post(f"/_emulator/workspaces/{workspace}/runners/{runner}/heartbeat", json=body)
        ).json()
        return data

    def reserve_names(self, *names: str) -> list[str]:
        """Workspace names taken by workspaces the caller cannot see (the platform dialect suffixes)."""
        data: dict[str, Any] = self._check(
            self._http.put("/_emulator/reserved-names", json={"names": list(names)})
        ).json()
        return list(data["names"])

    def reset(self) -> None:
        """Forget every object, fault and counter."""
        self._check(self._http.post("/_emulator/reset"))


# --- fixtures -----------------------------------------------------------------------------------


def dialect_fixtures(dialect: str | None = None) -> tuple[Any, Any]:
    """The ``emulator_process`` (session) and ``emulator_factory`` fixtures speaking ``dialect``
    (default: :data:`DEFAULT_DIALECT`). A conftest pins a directory's dialect with
    ``emulator_process, emulator_factory = dialect_fixtures("documented")``."""

    @pytest.fixture(scope="session")
    def emulator_process() -> Iterator[EmulatorProcess]:
        proc = EmulatorProcess(username="admin", password="admin", api_token="rw-test-token", dialect=dialect)
        proc.start()
        try:
            yield proc
        finally:
            proc.close()

    @pytest.fixture
    def emulator_factory() -> Iterator[Callable[..., EmulatorProcess]]:
        started: list[EmulatorProcess] = []

        def factory(**kwargs: Any) -> EmulatorProcess:
            kwargs.setdefault("dialect", dialect)
            proc = EmulatorProcess(**kwargs)
            started.append(proc)
            return proc.start()

        try:
            yield factory
        finally:
            for proc in started:
                proc.close()

    return emulator_process, emulator_factory


emulator_process, emulator_factory = dialect_fixtures()


@pytest.fixture
def emulator(emulator_process: EmulatorProcess) -> EmulatorProcess:
    if not emulator_process.alive:
        emulator_process.start()
    emulator_process.reset()
    emulator_process.clear_faults()
    return emulator_process
