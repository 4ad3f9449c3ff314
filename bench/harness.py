"""What the operator benchmarks run on: a real control plane, the emulator and the operator, as processes.

Everything listens on loopback. Every wait is bounded by a deadline; every process started here is
stopped by the `Stack` that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "hack"))
import testenv  # noqa: E402

GROUP, VERSION = "platform.runwhen.com", "v1alpha1"
PLURALS = {"Workspace": "workspaces", "Workflow": "workflows", "Persona": "personas"}
TOKEN = "bench-token"
NAMESPACE = "bench"
CONNECTION = "bench"
CONNECTION_REF = {"kind": "RunWhenConnection", "name": CONNECTION}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


free_port = testenv.free_port


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- the machine -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        match = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_kb = int(match.group(1)) if match else 0
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores, every process) since boot."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return float(sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0))


# -- processes ---------------------------------------------------------------------------------


DIALECTS = ("platform", "documented")


class Emulator:
    """`python -m runwhen_operator.emulator --dialect DIALECT` on a free loopback port, with a static
    API token."""

    def __init__(self, log_path: Path, dialect: str = "platform") -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; one of {', '.join(DIALECTS)}")
        self.log_path = log_path
        self.dialect = dialect
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.http: httpx.Client | None = None

    def start(self) -> Emulator:
        with self.log_path.open("ab") as errors:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runwhen_operator.emulator",
                    "--dialect",
                    self.dialect,
                    "--port",
                    "0",
                    "--api-token",
                    TOKEN,
                    "--exit-with-parent",
                ],
                stdout=subprocess.PIPE,
                stderr=errors,
                stdin=subprocess.DEVNULL,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        prefix = "runwhen-emulator listening on "
        if not line.startswith(prefix):
            self.stop()
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.url = line[len(prefix) :]
        self.http = httpx.Client(base_url=self.url, timeout=120)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def state(self) -> dict[str, Any]:
        assert self.http is not None
        response = self.http.get("/_emulator/state")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def requests(self) -> Counter[str]:
        return Counter(self.state()["requests"])

    def objects(self, state: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """The live remote objects by (kind, the name the CR has), in one shape for both dialects:
        ``{"createdAt", "updatedAt", "definition"}``. On the platform a workflow's or persona's
        name in the state is ``<ws>--<short>`` (the CR's name is the short one) and deleted ones stay
        listed with their ``deletedAt``; those are left out."""
        state = self.state() if state is None else state
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for ws in state["workspaces"]:
            found[("Workspace", ws["name"])] = {"createdAt": ws["createdAt"], "updatedAt": ws["updatedAt"]}
        for kind, collection in (("Workflow", "workflows"), ("Persona", "personas")):
            for obj in state[collection]:
                if obj.get("deletedAt"):
                    continue
                found[(kind, obj.get("shortName") or obj["name"])] = {
                    "createdAt": obj["createdAt"],
                    "updatedAt": obj.get("updatedAt") or obj.get("modifiedAt") or obj["createdAt"],
                    "definition": obj.get("definition"),
                }
        return found

    def reset_requests(self) -> None:
        assert self.http is not None
        self.http.delete("/_emulator/requests").raise_for_status()

    def reset(self) -> None:
        assert self.http is not None
        self.http.post("/_emulator/reset").raise_for_status()

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None
        _stop_process(self.proc)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


class Operator:
    """`python -m runwhen_operator run` for the bench namespace; its log goes to a file."""

    def __init__(self, kubeconfig: Path, log_path: Path, *, workers: int, poll_interval: str) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.workers = workers
        self.poll_interval = poll_interval
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        # RUNWHEN_BENCH_PROFILE=DIR runs the operator under cProfile (written at a clean stop).
        profile_dir = os.environ.get("RUNWHEN_BENCH_PROFILE")
        profile = (
            ["-m", "cProfile", "-o", str(Path(profile_dir) / f"{self.log_path.stem}.prof")]
            if profile_dir
            else []
        )
        # RUNWHEN_BENCH_MEMPROFILE=DIR: what its memory holds, by type, in DIR (bench/memprofile.py).
        traced = os.environ.get("RUNWHEN_BENCH_MEMPROFILE")
        entry = (
            ["bench.memprofile", str(Path(traced) / f"{self.log_path.stem}.memory.txt")]
            if traced
            else ["runwhen_operator"]
        )
        argv = [
            sys.executable,
            *profile,
            "-m",
            *entry,
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            NAMESPACE,
            "--workers",
            str(self.workers),
            "--poll-interval",
            self.poll_interval,
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
            "--health-host",
            "127.0.0.1",
            "--log-level",
            "warning",
        ]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        try:
            wait_until(self._healthy, 60, "the operator's /healthz")
        except BaseException:
            self.kill()  # never left running behind a failed start
            raise
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.proc.returncode}; see {self.log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self) -> int:
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return 0

    def cpu_seconds(self) -> float:
        try:
            times = psutil.Process(self.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return str(r.read().decode())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        _stop_process(self.proc)


def _stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


# -- Kubernetes --------------------------------------------------------------------------------


def api_client(kubeconfig: Path, pool: int = 32) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


def install_crds(api: client.ApiClient, timeout: float = 60.0) -> None:
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                ext.create_custom_resource_definition(doc)
                names.append(doc["metadata"]["name"])

    def established() -> bool:
        for name in names:
            conds = ext.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conds):
                return False
        return True

    wait_until(established, timeout, "the CRDs Established")


def ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass
class Watcher:
    """Watches the bench namespace's Workspaces, Workflows and Personas from a background thread.

    Records when each object was first seen Ready, whether it is Ready now, and every MODIFIED event
    (one per write to the object: finalizer and status patches).
    """

    api: client.ApiClient
    kinds: tuple[str, ...] = ("Workspace", "Workflow", "Persona")
    first_ready: dict[tuple[str, str], float] = field(default_factory=dict)
    ready_now: set[tuple[str, str]] = field(default_factory=set)
    modified: Counter[str] = field(default_factory=Counter)
    #: MODIFIED events by kind and the Ready reason they carry ("-": none yet, as after the finalizer)
    modified_by_reason: Counter[str] = field(default_factory=Counter)
    added: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> Watcher:
        for kind in self.kinds:
            thread = threading.Thread(target=self._run, args=(kind,), name=f"watch-{kind}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=70)

    def modified_total(self) -> int:
        with self._lock:
            return sum(self.modified.values())

    def ready_count(self) -> int:
        with self._lock:
            return len(self.ready_now)

    def _run(self, kind: str) -> None:
        custom = client.CustomObjectsApi(self.api)
        plural = PLURALS[kind]
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)
        version = listed["metadata"]["resourceVersion"]
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    plural,
                    resource_version=version,
                    timeout_seconds=20,
                    allow_watch_bookmarks=True,
                ):
                    obj = event["object"]
                    meta = obj.get("metadata", {})
                    version = meta.get("resourceVersion", version)
                    if event["type"] == "BOOKMARK":
                        continue
                    self._record(kind, event["type"], obj)
                    if self._stop.is_set():
                        break
            except Exception as exc:
                self.errors.append(f"{kind}: {exc!r}")
                time.sleep(0.5)
            finally:
                stream.stop()

    def _record(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        key = (kind, obj["metadata"]["name"])
        now = time.time()
        with self._lock:
            if type_ == "ADDED":
                self.added[kind] += 1
            elif type_ == "MODIFIED":
                self.modified[kind] += 1
                conditions = (obj.get("status") or {}).get("conditions") or []
                reason = next((c.get("reason") for c in conditions if c.get("type") == "Ready"), "-")
                self.modified_by_reason[f"{kind} {reason}"] += 1
            if type_ != "DELETED" and ready(obj):
                self.first_ready.setdefault(key, now)
                self.ready_now.add(key)
            else:
                self.ready_now.discard(key)


def count_events(api: client.ApiClient) -> Counter[str]:
    """Kubernetes Events in the bench namespace by reason."""
    core = client.CoreV1Api(api)
    reasons: Counter[str] = Counter()
    cont = None
    while True:
        page = core.list_namespaced_event(NAMESPACE, limit=500, _continue=cont)
        for event in page.items:
            reasons[event.reason or ""] += 1
        cont = page.metadata._continue
        if not cont:
            return reasons


class RssSampler:
    """Samples a process's RSS in a background thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak

    def _run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                rss = int(proc.memory_info().rss)
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples.append((time.time(), rss))
            self._stop.wait(self.interval)


class Stack:
    """A fresh control plane and emulator (and, once started, an operator) for one measurement."""

    def __init__(self, label: str, dialect: str = "platform") -> None:
        self.label = label
        self.dialect = dialect
        self.workdir = ROOT / ".testenv" / f"bench-{os.getpid()}-{label}"
        OUT.mkdir(parents=True, exist_ok=True)
        self.plane = testenv.ControlPlane(workdir=self.workdir)
        self.emulator = Emulator(OUT / f"emulator-{label}.log", dialect)
        self.operator: Operator | None = None
        self.api: client.ApiClient | None = None
        self.kube_version = ""

    def __enter__(self) -> Stack:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.plane.start()
        self.api = api_client(self.plane.kubeconfig)
        self.kube_version = client.VersionApi(self.api).get_code().git_version
        install_crds(self.api)
        client.CoreV1Api(self.api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
        )
        self.emulator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.operator is not None:
            self.operator.stop()
        self.emulator.stop()
        if self.api is not None:
            self.api.close()
        self.plane.stop(remove_data=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def connect(self, rate: float, burst: int) -> None:
        """The credentials Secret and the RunWhenConnection every bench object uses."""
        assert self.api is not None
        client.CoreV1Api(self.api).create_namespaced_secret(
            NAMESPACE,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="bench-credentials"), string_data={"token": TOKEN}
            ),
        )
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RunWhenConnection",
            "metadata": {"name": CONNECTION, "namespace": NAMESPACE},
            "spec": {
                "url": self.emulator.url,
                "credentialsSecretRef": {"name": "bench-credentials"},
                "rateLimit": {"requestsPerSecond": rate, "burst": burst},
                "apiDialect": self.dialect.capitalize(),  # pinned: no dialect probe in the counts
            },
        }
        client.CustomObjectsApi(self.api).create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "runwhenconnections", body
        )

    def start_operator(self, *, workers: int, poll_interval: str) -> Operator:
        self.operator = Operator(
            self.plane.kubeconfig,
            OUT / f"operator-{self.label}.log",
            workers=workers,
            poll_interval=poll_interval,
        ).start()
        custom = client.CustomObjectsApi(self.api)

        def connection_ready() -> bool:
            obj = custom.get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "runwhenconnections", CONNECTION
            )
            return ready(obj)

        wait_until(connection_ready, 60, "the RunWhenConnection Ready")
        conn: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "runwhenconnections", CONNECTION
        )
        spoken = str((conn.get("status") or {}).get("apiDialect") or "").lower()
        if spoken != self.dialect:
            raise RuntimeError(f"the connection speaks {spoken!r}, the emulator {self.dialect!r}")
        return self.operator


def dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
