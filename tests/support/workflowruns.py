"""Helpers of the WorkflowRun integration tests (both dialects): reading a run's status and events,
`kubectl` on the test cluster, and two reconcilers deciding on the same cached version of one
object, as a newly elected leader whose cache lags behind and a former leader's pass still running
would."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from runwhen_operator.handlers import context, kube, runtime, workflowrun
from runwhen_operator.reconcile import connections, listing
from tests.support.controlplane import Cluster
from tests.support.operator import RunWhenEnv, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
import testenv


def status_of(rw: RunWhenEnv, name: str) -> dict[str, Any]:
    return dict(rw.get("WorkflowRun", name).get("status") or {})


def events_of(rw: RunWhenEnv, name: str) -> list[tuple[str, str, str]]:
    items = k8s.CoreV1Api(rw.api).list_namespaced_event(rw.namespace).items
    return [(str(e.type), str(e.reason), str(e.message)) for e in items if e.involved_object.name == name]


def events_after(rw: RunWhenEnv, name: str, last: tuple[str, str]) -> list[tuple[str, str]]:
    """(type, reason) of the run's events, once `last` is among them: Kopf posts events in the
    background, shortly after the status that caused them."""

    def reasons() -> list[tuple[str, str]]:
        return [(kind, reason) for kind, reason, _ in events_of(rw, name)]

    wait_for(lambda: last in reasons(), 10, lambda: f"the {last} event of {name}: {reasons()}")
    return reasons()


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def kubectl(cluster: Cluster, *args: str) -> list[str]:
    _, binary = testenv.ensure_helm()
    return [str(binary), "--kubeconfig", str(cluster.kubeconfig), *args]


def two_replicas_on_one_version(
    rw: RunWhenEnv, control_plane: Cluster, seen_by_both: dict[str, Any]
) -> tuple[runtime.Result, runtime.Result]:
    """Run the first replica's pass, then the second's three times (on the outdated version, then on
    the object as it is); returns the second's first and last results."""
    key = runtime.Key("WorkflowRun", rw.namespace, seen_by_both["metadata"]["name"])
    cid = ("ClusterRunWhenConnection", "", "default")

    async def replicas() -> tuple[runtime.Result, runtime.Result]:
        registry = connections.Registry()
        secret = {"username": rw.emulator.username, "password": rw.emulator.password}
        await registry.ensure(cid, connections.Settings(url=rw.emulator.url, secret_data=secret))
        assert (await registry.verify(cid)).ready
        contexts = []
        for _ in range(2):
            ctx = context.Context(
                slots=runtime.Slots(workers=1),
                kube=kube.Kube(kube.load_configuration(str(control_plane.kubeconfig))),
                registry=registry,
                listings=listing.ListingCache(),
            )
            ctx.slots.open(*key.object).written = seen_by_both
            contexts.append(ctx)
        try:
            first, second = (workflowrun.WorkflowRunReconciler(ctx) for ctx in contexts)
            await first(key)  # writes the intent, starts the run
            outdated = await second(key)  # decided on the version before the intent
            await second(key)  # now with the object as it is
            return outdated, await second(key)
        finally:
            for ctx in contexts:
                ctx.kube.close()
            await registry.close()

    return asyncio.run(replicas())
