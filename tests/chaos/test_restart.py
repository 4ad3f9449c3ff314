"""A restarted operator comes back without touching objects that are already in sync."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.operator import OperatorProcess, RunWhenEnv, wait_for

pytestmark = [pytest.mark.integration]

KINDS = ("Workspace", "Workflow", "Persona")


def _reconciled(proc: OperatorProcess, kind: str) -> int:
    total = 0
    for family in text_string_to_metric_families(proc.metrics()):
        for sample in family.samples:
            if sample.name == "runwhen_operator_reconciles_total" and sample.labels["kind"] == kind:
                total += int(sample.value)
    return total


def _snapshot(rw: RunWhenEnv) -> dict[str, dict[str, str]]:
    return {kind: rw.k8s_resource_versions(kind) for kind in KINDS}


def test_restart_writes_nothing_and_keeps_ready(rw: RunWhenEnv) -> None:
    proc = rw.start_operator()
    rw.apply("Workspace", "steady", {"deletionPolicy": "Delete"})
    rw.wait_condition("Workspace", "steady")
    for i in range(3):
        rw.apply("Persona", f"p-{i}", {"workspaceRef": {"name": "steady"}, "fullName": f"P {i}"})
        rw.apply(
            "Workflow",
            f"wf-{i}",
            {
                "workspaceRef": {"name": "steady"},
                "definition": {
                    "fromActivities": [{"name": "a", "actions": [{"tasks": {"slx": f"slx-{i}"}}]}]
                },
            },
        )
    for i in range(3):
        rw.wait_condition("Persona", f"p-{i}")
        rw.wait_condition("Workflow", f"wf-{i}")
    # Settled: the first health check of the workspace is written, nothing changes for 3 s.
    wait_for(lambda: bool(rw.get("Workspace", "steady").get("status", {}).get("health")), 30, "health")
    before = _snapshot(rw)
    time.sleep(3)
    assert _snapshot(rw) == before
    ready_since = {name: rw.condition("Persona", name)["lastTransitionTime"] for name in before["Persona"]}

    proc.kill()
    proc.start()
    proc.wait_healthy()
    # Every object had its first pass in the new process (a pass that found work to do would have
    # queued another; give those a moment too).
    wait_for(
        lambda: all(_reconciled(proc, kind) >= len(before[kind]) for kind in KINDS),
        30,
        "a reconcile of every object after the restart",
    )
    time.sleep(3)
    assert _snapshot(rw) == before
    assert {n: rw.condition("Persona", n)["lastTransitionTime"] for n in before["Persona"]} == ready_since


def test_a_restart_with_more_objects_than_workers_runs_every_objects_pass(rw: RunWhenEnv) -> None:
    """Kopf's workers of a start's first listing each wait until every object is indexed; with a
    limit on Kopf's workers below the number of objects, none of them ever ran (nolar/kopf#1243:
    110 objects, a limit of 64, no handler in 50 s). After the restart every object gets its pass,
    and a drift made while the operator was down is corrected."""
    n = 40
    proc = rw.start_operator("--workers", "2")  # (the former limit: max(4 x workers, 16) = 16)
    rw.apply("Workspace", "many", {"deletionPolicy": "Delete"})
    rw.wait_condition("Workspace", "many")
    for i in range(n):
        rw.apply("Persona", f"p-{i}", {"workspaceRef": {"name": "many"}, "fullName": f"P {i}"})
    for i in range(n):
        rw.wait_condition("Persona", f"p-{i}")
    before = _snapshot(rw)

    proc.kill()
    rw.third_party.put_child("persona", "many", "p-7", {"fullName": "changed behind the operator"})

    def full_name() -> object:
        return next(p.get("fullName") for p in rw.remote("personas", "many") if p["name"] == "p-7")

    assert full_name() == "changed behind the operator"
    proc.start()
    proc.wait_healthy()
    wait_for(
        lambda: all(_reconciled(proc, kind) >= len(before[kind]) for kind in ("Workspace", "Persona")),
        30,
        "a pass of every object after the restart",
    )
    wait_for(lambda: full_name() == "P 7", 30, "the drift made while the operator was down corrected")
