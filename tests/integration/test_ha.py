"""Several replicas sharing a Lease: only the holder reconciles, a standby takes over when it goes.

Two operator processes run with the same `--peering NAME` against the real control plane and the
emulator, as two pods of the chart would. The Lease lives in the namespace named by
`RUNWHEN_OPERATOR_NAMESPACE` (the test's namespace here, the release namespace in a cluster).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from prometheus_client.parser import text_string_to_metric_families

from tests.support.controlplane import Cluster
from tests.support.operator import OperatorProcess, RunWhenEnv, wait_for

pytestmark = pytest.mark.integration

LEADER_LINE = "became the leader"
LEASE_SECONDS = 15  # the operator's lease duration
FAST = {"platform.runwhen.com/poll-interval": "2s"}  # the leader polls the Workspace every 2 s


def _definition(slx: str) -> dict[str, Any]:
    return {
        "fromActivities": [
            {
                "name": "on-alert",
                "match": {"activityVerbs": ["alert"], "slxs": [slx]},
                "actions": [{"tasks": {"slx": slx, "persona": "sre", "titles": ["Check"]}}],
            }
        ]
    }


def _start_pair(rw: RunWhenEnv) -> tuple[str, list[OperatorProcess]]:
    lease = f"runwhen-operator-{uuid.uuid4().hex[:8]}"
    procs = [_start(rw, lease) for _ in range(2)]
    return lease, procs


def _start(rw: RunWhenEnv, lease: str) -> OperatorProcess:
    return rw.start_operator("--peering", lease, env={"RUNWHEN_OPERATOR_NAMESPACE": rw.namespace})


def _identity(proc: OperatorProcess) -> str:
    assert proc.proc is not None
    return f"{socket.gethostname()}-{proc.proc.pid}"


def _lease(rw: RunWhenEnv, name: str) -> k8s.V1LeaseSpec:
    spec = k8s.CoordinationV1Api(rw.api).read_namespaced_lease(name, rw.namespace).spec
    assert spec is not None
    return spec


def _leads(proc: OperatorProcess) -> bool:
    return LEADER_LINE in proc.logs()


def _wait_leader(procs: list[OperatorProcess], timeout: float = 30.0) -> OperatorProcess:
    wait_for(lambda: any(_leads(p) for p in procs), timeout, "a leader")
    leaders = [p for p in procs if _leads(p)]
    assert len(leaders) == 1, f"{len(leaders)} processes became the leader"
    return leaders[0]


def _metric_total(proc: OperatorProcess, name: str) -> float:
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(proc.metrics())
        for sample in family.samples
        if sample.name == name
    )


def _reconciles(proc: OperatorProcess) -> float:
    return _metric_total(proc, "runwhen_operator_reconciles_total")


def _api_requests(proc: OperatorProcess) -> float:
    return _metric_total(proc, "runwhen_operator_api_requests_total")


def _wait_polling(proc: OperatorProcess) -> None:
    """Wait until `proc` has polled RunWhen twice more (it is acting)."""
    before = _api_requests(proc)
    wait_for(lambda: _api_requests(proc) >= before + 2, 15, "the leader to poll the workspace")


def _apply_workflows(rw: RunWhenEnv, names: list[str], workspace: str = "ha") -> None:
    for name in names:
        rw.apply("Workflow", name, {"workspaceRef": {"name": workspace}, "definition": _definition(name)})


def _wait_ready(rw: RunWhenEnv, plural: str, names: list[str], timeout: float = 60.0) -> None:
    def missing() -> list[str]:
        items = rw.custom.list_namespaced_custom_object(
            "platform.runwhen.com", "v1alpha1", rw.namespace, plural
        )["items"]
        ready = {
            i["metadata"]["name"]
            for i in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (i.get("status") or {}).get("conditions") or []
            )
        }
        return sorted(set(names) - ready)

    wait_for(lambda: not missing(), timeout, lambda: f"{plural} Ready; not yet: {missing()}")


def _assert_one_remote_each(rw: RunWhenEnv, names: list[str], workspace: str = "ha") -> None:
    assert [w["name"] for w in rw.remote("workspaces")] == [workspace]
    remote = rw.remote("workflows", workspace)
    counts = Counter(w["name"] for w in remote)
    assert counts == Counter(names), counts
    ids = {w["name"]: w["id"] for w in remote}
    for name in names:
        assert rw.get("Workflow", name)["status"]["id"] == ids[name]


def test_one_leader_reconciles_and_a_standby_takes_over_after_a_crash(rw: RunWhenEnv) -> None:
    lease, procs = _start_pair(rw)
    leader = _wait_leader(procs)
    standby = next(p for p in procs if p is not leader)
    spec = _lease(rw, lease)
    assert spec.holder_identity == _identity(leader)
    assert spec.lease_transitions == 0
    assert spec.lease_duration_seconds == LEASE_SECONDS

    rw.emulator.reset_requests()
    first = [f"wf-{i}" for i in range(10)]
    rw.apply("Workspace", "ha", {"deletionPolicy": "Delete"})
    _apply_workflows(rw, first)
    _wait_ready(rw, "workspaces", ["ha"])
    _wait_ready(rw, "workflows", first)
    _assert_one_remote_each(rw, first)
    counts = rw.emulator.requests()
    assert counts[rw.op("workspace.create")] == 1
    assert counts[rw.op("workflow.create")] == len(first)
    # the standby does not even watch: Kopf runs only in the replica holding the Lease
    assert _reconciles(leader) >= 1 + len(first)
    assert _reconciles(standby) == 0
    assert _api_requests(standby) == 0
    assert not _leads(standby)
    assert _lease(rw, lease).holder_identity == _identity(leader)

    # SIGKILL: the Lease is not released; the standby takes it once it has expired.
    rw.emulator.reset_requests()
    leader.kill()
    killed_at = time.monotonic()
    more = [f"wf-{i}" for i in range(10, 15)]
    _apply_workflows(rw, more)
    wait_for(lambda: _leads(standby), LEASE_SECONDS + 15, "the standby to become the leader")
    failover = time.monotonic() - killed_at
    print(f"failover after SIGKILL of the leader: {failover:.1f}s")
    # not before the lease has expired (the last renewal was at most one retry period, 2 s, before
    # the kill), and soon after
    assert LEASE_SECONDS - 3 <= failover <= LEASE_SECONDS + 10, failover
    spec = _lease(rw, lease)
    assert spec.holder_identity == _identity(standby)
    assert spec.lease_transitions == 1
    _wait_ready(rw, "workflows", first + more)
    _assert_one_remote_each(rw, first + more)
    counts = rw.emulator.requests()
    # the new leader re-checked everything it had cached and created only what was new
    assert counts[rw.op("workflow.create")] == len(more)
    assert counts[rw.op("workspace.create")] == 0
    assert _reconciles(standby) >= 1 + len(first + more)


def test_a_clean_shutdown_hands_the_lease_over_at_once(rw: RunWhenEnv) -> None:
    lease, procs = _start_pair(rw)
    leader = _wait_leader(procs)
    standby = next(p for p in procs if p is not leader)
    first = [f"wf-{i}" for i in range(3)]
    rw.apply("Workspace", "ha", {"deletionPolicy": "Delete"})
    _apply_workflows(rw, first)
    _wait_ready(rw, "workflows", first)
    assert _reconciles(standby) == 0

    rw.emulator.reset_requests()
    stopping_at = time.monotonic()
    leader.stop()  # SIGTERM; returns once the process has exited
    assert leader.proc is not None
    assert leader.proc.returncode == 0, leader.logs()[-3000:]
    wait_for(lambda: _leads(standby), LEASE_SECONDS, "the standby to become the leader")
    handover = time.monotonic() - stopping_at
    print(f"handover after SIGTERM of the leader: {handover:.1f}s")
    assert handover < LEASE_SECONDS / 2, handover
    assert "could not release the Lease" not in leader.logs()
    spec = _lease(rw, lease)
    assert spec.holder_identity == _identity(standby)
    assert spec.lease_transitions == 1

    more = [f"wf-{i}" for i in range(3, 6)]
    _apply_workflows(rw, more)
    _wait_ready(rw, "workflows", first + more)
    _assert_one_remote_each(rw, first + more)
    assert rw.emulator.requests()[rw.op("workflow.create")] == len(more)


def test_a_leader_frozen_past_its_lease_stops_as_it_resumes(rw: RunWhenEnv) -> None:
    """SIGSTOP stands for a paused VM or a stalled process: the standby takes over once the Lease has
    expired; when the old leader runs again its renew deadline has long passed, and it stops before
    doing anything more."""
    lease = f"runwhen-operator-{uuid.uuid4().hex[:8]}"
    leader = _start(rw, lease)
    _wait_leader([leader])
    standby = _start(rw, lease)
    rw.apply("Workspace", "ha", {"deletionPolicy": "Delete"}, annotations=FAST)
    _wait_ready(rw, "workspaces", ["ha"])
    _wait_polling(leader)
    assert leader.proc is not None
    os.kill(leader.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: _leads(standby), LEASE_SECONDS + 15, "the standby to become the leader")
    finally:
        os.kill(leader.proc.pid, signal.SIGCONT)
    wait_for(lambda: "lost the leadership" in leader.logs(), 3, "the resumed leader to step down")
    # It exits at once (as controller-runtime's managers do): no pass of it runs any more.
    wait_for(lambda: leader.proc is not None and leader.proc.poll() is not None, 5, "the old leader to exit")
    assert leader.proc.returncode == 1
    assert _lease(rw, lease).holder_identity == _identity(standby)
    assert _reconciles(standby) >= 1


class Relay:
    """A TCP relay in front of the API server that can stop relaying, like a network partition.

    Once cut, bytes are neither forwarded nor refused: requests in flight and new connections hang,
    as they do when packets are dropped.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open = threading.Event()
        self.open.set()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream)
            except OSError:
                conn.close()
                continue
            self.sockets += [conn, up]
            for src, dst in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                self.open.wait()
                data = src.recv(65536)
                if not data:
                    break
                self.open.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open.clear()

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()
        self.open.set()


@pytest.fixture
def relay(control_plane: Cluster) -> Iterator[Relay]:
    url = urllib.parse.urlsplit(control_plane.server or "")
    if not control_plane.local or url.hostname is None or url.port is None:
        pytest.skip("needs the local control plane")
    proxy = Relay((url.hostname, url.port))
    yield proxy
    proxy.close()


def test_a_leader_cut_off_from_the_api_server_stops_before_the_standby_starts(
    rw: RunWhenEnv, control_plane: Cluster, relay: Relay, tmp_path: Path
) -> None:
    """The holder that cannot renew steps down within the renew deadline (10 s), before its Lease
    can expire for the others (15 s): never two actors, even when the API server is unreachable
    rather than refusing."""
    kubeconfig = yaml.safe_load(control_plane.kubeconfig.read_text())
    for entry in kubeconfig["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
    relayed = tmp_path / "relayed.kubeconfig"
    relayed.write_text(yaml.safe_dump(kubeconfig))
    lease = f"runwhen-operator-{uuid.uuid4().hex[:8]}"
    env = {"RUNWHEN_OPERATOR_NAMESPACE": rw.namespace}
    leader = rw.start_operator("--peering", lease, env=env, kubeconfig=relayed)
    _wait_leader([leader])
    standby = _start(rw, lease)
    rw.apply("Workspace", "ha", {"deletionPolicy": "Delete"}, annotations=FAST)
    _wait_ready(rw, "workspaces", ["ha"])
    _wait_polling(leader)
    assert _reconciles(standby) == 0

    seen: dict[str, float] = {}
    relay.cut()
    cut_at = time.monotonic()

    def watch() -> bool:
        if "lost" not in seen and "lost the leadership" in leader.logs():
            seen["lost"] = time.monotonic() - cut_at
        if "taken" not in seen and LEADER_LINE in standby.logs():
            seen["taken"] = time.monotonic() - cut_at
        return "taken" in seen

    try:
        wait_for(watch, LEASE_SECONDS + 15, lambda: f"the standby to take over ({seen})")
        lost, taken = seen.get("lost", -1.0), seen["taken"]
        print(f"cut off: the leader stepped down after {lost:.1f}s, the standby took over after {taken:.1f}s")
        assert "lost" in seen, "the cut-off leader never stepped down"
        assert seen["lost"] < seen["taken"], seen
        assert _lease(rw, lease).holder_identity == _identity(standby)
        rw.emulator.reset_requests()
        _apply_workflows(rw, ["wf-after"])
        _wait_ready(rw, "workflows", ["wf-after"])
        _assert_one_remote_each(rw, ["wf-after"])
        assert rw.emulator.requests()[rw.op("workflow.create")] == 1
        # Until the cut it polled the Workspace every 2 s; when it stepped down it exited, so it has
        # not called RunWhen since, although it could still reach it.
        assert leader.proc is not None
        assert leader.proc.poll() == 1
    finally:
        leader.kill()  # it cannot reach the API server to shut down cleanly
