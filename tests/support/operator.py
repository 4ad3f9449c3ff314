"""Pytest fixtures that run the operator as a real process against the test control plane.

`operator_factory(...)` starts `python -m runwhen_operator run` with a kubeconfig (the admin's by
default, or a ServiceAccount's to prove RBAC), short intervals for tests, and its log in a file; every
process is stopped after the test. `rw` bundles what most integration tests need: the emulator, the
CRDs, a namespace with a credentials Secret and the `default` ClusterRunWhenConnection pointing at
the emulator, and helpers to read and wait on custom resources.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.controlplane import Cluster, apply_manifest, testenv
from tests.support.emulator import EmulatorProcess
from tests.support.remote import Remote

GROUP, VERSION = "platform.runwhen.com", "v1alpha1"
PLURALS = {
    "ClusterRunWhenConnection": "clusterrunwhenconnections",
    "RunWhenConnection": "runwhenconnections",
    "Workspace": "workspaces",
    "Workflow": "workflows",
    "Persona": "personas",
    "WorkflowRun": "workflowruns",
    "RunnerLocation": "runnerlocations",
}


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.args = args or []
        self.env = env or {}
        self.metrics_port = testenv.free_port()
        self.health_port = testenv.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> OperatorProcess:
        argv = [
            sys.executable,
            "-m",
            "runwhen_operator",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
            "--health-host",
            "127.0.0.1",
            "--log-level",
            "debug",
            *self.args,
        ]
        if not any(a in self.args for a in ("--namespace", "-n", "--all-namespaces", "-A")):
            argv.append("--all-namespaces")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("KUBECONFIG", None)
        log = open(self.log_path, "ab")  # noqa: SIM115
        log.write(f"\n=== start {self.starts} ===\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()
        self.starts += 1
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"operator not healthy after {timeout}s:\n{self.logs()[-4000:]}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final writes (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def operator_factory(
    control_plane: Cluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorFactory]:
    started: list[OperatorProcess] = []

    def factory(
        *args: str, kubeconfig: Path | None = None, env: dict[str, str] | None = None, wait: bool = True
    ) -> OperatorProcess:
        proc = OperatorProcess(
            kubeconfig or control_plane.kubeconfig, tmp_path / f"operator-{len(started)}.log", list(args), env
        )
        started.append(proc)
        proc.start()
        if wait:
            proc.wait_healthy()
        return proc

    yield factory
    for proc in started:
        proc.stop()
    failed = request.node.stash.get(_FAILED, False)
    if failed:
        for proc in started:
            sys.stderr.write(f"\n--- operator log {proc.log_path} (tail) ---\n{proc.logs()[-6000:]}\n")


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


@dataclass
class RunWhenEnv:
    """A namespace wired to the emulator through the `default` ClusterRunWhenConnection."""

    api: client.ApiClient
    namespace: str
    emulator: EmulatorProcess
    operator_factory: OperatorFactory
    secret_name: str = "runwhen-credentials"
    operators: list[OperatorProcess] = field(default_factory=list)

    def use_emulator(
        self, emulator: EmulatorProcess, *, token: bool = False, api_dialect: str | None = None
    ) -> None:
        """Point the `default` connection (and its Secret) at another emulator; ``api_dialect``
        (``"Auto"``, ``"Platform"``, ``"Documented"``) pins `spec.apiDialect`, omitted: the CRD's
        default (Auto)."""
        self.emulator = emulator
        data = (
            {"token": emulator.api_token or "", "username": "", "password": ""}
            if token
            else {"username": emulator.username, "password": emulator.password, "token": ""}
        )
        self.secret(self.secret_name, data)
        spec: dict[str, Any] = {
            "url": emulator.url,
            "credentialsSecretRef": {"name": self.secret_name, "namespace": self.namespace},
        }
        if api_dialect is not None:
            spec["apiDialect"] = api_dialect
        self.apply("ClusterRunWhenConnection", "default", spec)

    def start_operator(self, *args: str, **kwargs: Any) -> OperatorProcess:
        """An operator watching this test's namespace (objects of earlier tests stay untouched)."""
        if not any(a in args for a in ("--namespace", "-n", "--all-namespaces", "-A")):
            args = ("--namespace", self.namespace, *args)
        proc = self.operator_factory(*args, **kwargs)
        self.operators.append(proc)
        return proc

    # -- objects -----------------------------------------------------------------------------
    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def apply(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any],
        *,
        annotations: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if kind != "ClusterRunWhenConnection":
            meta["namespace"] = namespace or self.namespace
        if annotations:
            meta["annotations"] = annotations
        doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta, "spec": spec}
        apply_manifest(self.api, doc)
        return self.get(kind, name, namespace=namespace)

    def apply_hooked_workflow(self, secret: str, definition: dict[str, Any]) -> None:
        """Workspace "hooks" and its Workflow "paging", whose webhook token goes to Secret `secret`."""
        self.apply("Workspace", "hooks", {"deletionPolicy": "Delete"})
        spec = {
            "workspaceRef": {"name": "hooks"},
            "definition": definition,
            "webhookTokenSecretRef": {"name": secret},
        }
        self.apply("Workflow", "paging", spec)

    def get(self, kind: str, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        if kind == "ClusterRunWhenConnection":
            return dict(self.custom.get_cluster_custom_object(GROUP, VERSION, PLURALS[kind], name))
        return dict(
            self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name
            )
        )

    def exists(self, kind: str, name: str) -> bool:
        try:
            self.get(kind, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURALS[kind], name, body
            )
        )

    def annotate(self, kind: str, name: str, annotations: dict[str, str | None]) -> dict[str, Any]:
        return self.patch(kind, name, {"metadata": {"annotations": annotations}})

    def delete(self, kind: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS[kind], name)

    def condition(self, kind: str, name: str, type_: str = "Ready") -> dict[str, Any]:
        obj = self.get(kind, name)
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == type_:
                return dict(cond)
        return {}

    def wait_condition(
        self,
        kind: str,
        name: str,
        type_: str = "Ready",
        status: str = "True",
        *,
        reason: str | None = None,
        timeout: float = 60.0,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def check() -> bool:
            nonlocal last
            obj = self.get(kind, name, namespace=namespace)
            conds = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
            last = dict(conds.get(type_) or {})
            current = last.get("observedGeneration") in (None, obj["metadata"].get("generation"))
            wanted = last.get("status") == status and (reason is None or last.get("reason") == reason)
            return current and wanted

        wait_for(check, timeout, lambda: f"{kind} {name} {type_}={status} ({reason}); last: {last}")
        return self.get(kind, name, namespace=namespace)

    def wait_gone(self, kind: str, name: str, timeout: float = 60.0) -> None:
        wait_for(lambda: not self.exists(kind, name), timeout, lambda: f"{kind} {name} still exists")

    def secret(self, name: str, data: dict[str, str], namespace: str | None = None) -> None:
        apply_manifest(
            self.api,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace or self.namespace},
                "stringData": data,
            },
        )

    def read_secret(self, name: str) -> client.V1Secret | None:
        """The Secret ``name`` of this namespace, or None when there is none."""
        try:
            return client.CoreV1Api(self.api).read_namespaced_secret(name, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def secret_value(self, name: str, key: str) -> str | None:
        """The decoded value of ``key`` in the Secret ``name``; None without the Secret or the key."""
        secret = self.read_secret(name)
        value = ((secret.data if secret else None) or {}).get(key)
        return base64.b64decode(value).decode() if value else None

    def event_reasons(self, name: str) -> list[str]:
        """The reasons of the Events about the object ``name`` in this namespace."""
        events = client.CoreV1Api(self.api).list_namespaced_event(self.namespace).items
        return [str(e.reason) for e in events if e.involved_object.name == name]

    # -- remote side -------------------------------------------------------------------------
    def remote(self, collection: str, workspace: str | None = None) -> list[dict[str, Any]]:
        """The emulator's live objects of ``collection`` (``EmulatorProcess.live``), of one workspace."""
        items = self.emulator.live(collection)
        if workspace is not None:
            items = [i for i in items if i.get("workspace") == workspace]
        return items

    @property
    def third_party(self) -> Remote:
        """Writes to the remote side behind the operator's back, in the emulator's dialect."""
        return Remote(self.emulator)

    def op(self, name: str) -> str:
        """The emulator's request-counter key of operation ``name`` in its dialect."""
        return Remote(self.emulator).op(name)

    def remote_workspace(self, name: str) -> dict[str, Any] | None:
        return next((w for w in self.remote("workspaces") if w["name"] == name), None)

    def k8s_resource_versions(self, kind: str) -> dict[str, str]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS[kind])[
            "items"
        ]
        return {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items}


def wait_for(
    check: Callable[[], bool], timeout: float, describe: Callable[[], str] | str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            what = describe() if callable(describe) else describe
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def rw(
    k8s_api: client.ApiClient,
    crds_installed: list[str],
    namespace: str,
    emulator: EmulatorProcess,
    operator_factory: OperatorFactory,
) -> RunWhenEnv:
    env = RunWhenEnv(api=k8s_api, namespace=namespace, emulator=emulator, operator_factory=operator_factory)
    env.use_emulator(emulator)
    return env


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
