"""Nothing lost, nothing doubled: a sync under API faults, operator crashes and restarts of both APIs.

One Workspace and N Workflows and N Personas (N from RUNWHEN_CHAOS_N, default 15) are applied while
the emulator answers 20% of requests with 5xx, throttles with 429, loses the answer to 20% of the
writes it commits and adds 100 ms to every answer. During the sync the operator is SIGKILLed three
times, the emulator restarts once (its state file keeps the objects) and kube-apiserver restarts once.
Then: every CR is Ready, each has exactly one remote object (by name), the CRs record those ids,
the requests stayed within a bound linear in N (no hot loop), an idle period sends almost nothing,
and deleting the CRs leaves nothing behind in RunWhen.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import Cluster
from tests.support.emulator import EmulatorProcess
from tests.support.operator import GROUP, PLURALS, VERSION, OperatorProcess, RunWhenEnv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = int(os.environ.get("RUNWHEN_CHAOS_N", "15"))
WORKSPACE = "chaos"
CONNECTION = "chaos"
CONNECTION_REF = {"kind": "RunWhenConnection", "name": CONNECTION}
FAULTS: dict[str, Any] = {
    "error_rate": 0.2,
    "rate_limit_per_second": 5,
    "fail_after_commit_rate": 0.2,
    "latency_ms": 100,
}
# Requests one object may cost while every fault is on: a few attempts of its create (each with
# retries for throttling), the checks after a lost answer, and its share of the listings. A run takes
# about 5 per object; the bound is four times that, and a hot loop (a reconcile that never settles,
# at the client's 50 requests/s) exceeds it within seconds.
REQUESTS_PER_OBJECT = 20
FIXED_REQUESTS = 200  # logins, connection checks, health checks, restarts


def definition(i: int) -> dict[str, Any]:
    return {
        "fromActivities": [
            {
                "name": "on-alert",
                "match": {"activityVerbs": ["alert"], "slxs": [f"slx-{i}"]},
                "actions": [{"tasks": {"slx": f"slx-{i}", "titles": ["Check"], "sessionTTL": "20m"}}],
            }
        ]
    }


def _ready(item: dict[str, Any]) -> bool:
    conditions = (item.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class Chaos:
    def __init__(self, rw: RunWhenEnv, emulator: EmulatorProcess, cluster: Cluster) -> None:
        self.rw = rw
        self.emulator = emulator
        self.cluster = cluster
        self.requests_before_restart: Counter[str] = Counter()
        self.events: list[str] = []

    def items(self, kind: str) -> list[dict[str, Any]]:
        found = self.rw.custom.list_namespaced_custom_object(GROUP, VERSION, self.rw.namespace, PLURALS[kind])
        return list(found["items"])

    def create(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": self.rw.namespace},
            "spec": spec,
        }
        self.rw.custom.create_namespaced_custom_object(GROUP, VERSION, self.rw.namespace, PLURALS[kind], body)

    def ready_count(self) -> int:
        return sum(_ready(i) for kind in ("Workflow", "Persona") for i in self.items(kind))

    def remote_count(self) -> int:
        return len(self.rw.remote("workflows")) + len(self.rw.remote("personas"))

    def requests(self) -> Counter[str]:
        return self.requests_before_restart + Counter(self.emulator.requests())

    def at_progress(
        self, fraction: float, action: Callable[[], None], what: str, timeout: float = 30
    ) -> None:
        """Run `action` once `fraction` of the 2N objects exist remotely (or after `timeout`)."""
        target = int(2 * N * fraction)
        deadline = time.monotonic() + timeout
        while self.remote_count() < target and time.monotonic() < deadline:
            time.sleep(0.1)
        self.events.append(f"{what} at {self.remote_count()}/{2 * N} remote, {self.ready_count()} Ready")
        action()

    def crash(self, proc: OperatorProcess) -> None:
        proc.kill()
        proc.start()
        proc.wait_healthy(timeout=60)

    def restart_emulator(self) -> None:
        self.requests_before_restart += Counter(self.emulator.requests())
        self.emulator.restart()
        self.emulator.set_faults(**FAULTS, seed=29)

    def restart_apiserver(self) -> None:
        assert self.cluster.local is not None
        self.cluster.local.restart_apiserver()


@pytest.mark.timeout(420)
def test_sync_survives_faults_crashes_and_restarts(
    rw: RunWhenEnv,
    control_plane: Cluster,
    emulator_factory: Callable[..., EmulatorProcess],
    tmp_path: Path,
) -> None:
    if control_plane.local is None:
        pytest.skip("needs the local control plane to restart kube-apiserver")
    emulator = emulator_factory(
        username="chaos", password="chaos-password", state_file=tmp_path / "emulator-state.json"
    )
    rw.emulator = emulator
    rw.secret("chaos-credentials", {"username": emulator.username, "password": emulator.password})
    rw.apply(
        "RunWhenConnection",
        CONNECTION,
        {
            "url": emulator.url,
            "credentialsSecretRef": {"name": "chaos-credentials"},
            "rateLimit": {"requestsPerSecond": 50, "burst": 50},
        },
    )
    chaos = Chaos(rw, emulator, control_plane)
    proc = rw.start_operator("--workers", "8")
    rw.apply("Workspace", WORKSPACE, {"connectionRef": CONNECTION_REF, "deletionPolicy": "Delete"})
    rw.wait_condition("Workspace", WORKSPACE, timeout=60)

    emulator.set_faults(**FAULTS, seed=17)
    parent = {"connectionRef": CONNECTION_REF, "workspaceRef": {"name": WORKSPACE}}
    for i in range(N):
        chaos.create("Workflow", f"wf-{i}", {**parent, "definition": definition(i)})
        chaos.create("Persona", f"p-{i}", {**parent, "fullName": f"Persona {i}"})

    chaos.at_progress(0.1, lambda: chaos.crash(proc), "SIGKILL 1")
    chaos.at_progress(0.25, chaos.restart_emulator, "emulator restart")
    chaos.at_progress(0.4, lambda: chaos.crash(proc), "SIGKILL 2")
    chaos.at_progress(0.55, chaos.restart_apiserver, "kube-apiserver restart")
    chaos.at_progress(0.7, lambda: chaos.crash(proc), "SIGKILL 3")

    wait_for(
        lambda: chaos.ready_count() == 2 * N,
        240,
        lambda: f"all {2 * N} Ready ({chaos.ready_count()} are); {chaos.events}",
    )
    emulator.clear_faults()

    # Exactly one remote object per CR, and each CR records its id.
    for kind, collection, prefix in (("Workflow", "workflows", "wf"), ("Persona", "personas", "p")):
        remote = rw.remote(collection, WORKSPACE)
        names = Counter(o["name"] for o in remote)
        duplicates = {name: count for name, count in names.items() if count > 1}
        assert not duplicates, f"duplicate remote {collection}: {duplicates}; {chaos.events}"
        assert set(names) == {f"{prefix}-{i}" for i in range(N)}
        ids = {o["name"]: o["id"] for o in remote}
        for item in chaos.items(kind):
            name = item["metadata"]["name"]
            assert item["status"]["id"] == ids[name], (name, item["status"], ids[name])
            assert not item["status"].get("createPending"), item["status"]
    assert [w["name"] for w in rw.remote("workspaces")] == [WORKSPACE]

    # Bounded work: linear in the number of objects, however the faults fell.
    total = sum(chaos.requests().values())
    bound = REQUESTS_PER_OBJECT * (2 * N + 1) + FIXED_REQUESTS
    assert total <= bound, f"{total} requests for {2 * N + 1} objects (bound {bound}): {chaos.requests()}"
    assert total >= 2 * N + 1, chaos.requests()  # the counters did count: at least one create each

    # Settled: an idle period costs no writes and only the periodic checks (nothing is due to be
    # polled within the default 5-minute interval; health and connections are checked every minute).
    emulator.reset_requests()
    time.sleep(10)
    idle = emulator.requests()
    assert emulator.write_count() == 0, idle
    assert sum(idle.values()) <= 10, idle

    # Deleting everything (under faults again, with one more crash) leaves nothing in RunWhen.
    emulator.set_faults(**FAULTS, seed=41)
    for i in range(N):
        rw.delete("Workflow", f"wf-{i}")
        rw.delete("Persona", f"p-{i}")
    time.sleep(1.0)
    chaos.crash(proc)
    wait_for(
        lambda: not chaos.items("Workflow") and not chaos.items("Persona"),
        180,
        lambda: f"the children deleted ({len(chaos.items('Workflow'))} workflows left)",
    )
    rw.delete("Workspace", WORKSPACE)
    rw.wait_gone("Workspace", WORKSPACE, timeout=120)
    emulator.clear_faults()
    assert rw.remote("workflows") == []
    assert rw.remote("personas") == []
    assert rw.remote("workspaces") == []
