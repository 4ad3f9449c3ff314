"""What Flux and Argo CD conclude about live objects of the operator, asked of their own libraries:
kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus/status`, which Flux's health checks use) and Argo CD's
Lua VM (`argo-cd/v3/util/lua`, restricted as Argo CD runs resource customizations) with the health
scripts of docs/argocd/, both in the Go helper of tests/support/health.py. Every kind is put into
each state on the real control plane with the emulator and the operator; the verdicts are the ones
docs/gitops.md promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.operator import RunWhenEnv, wait_for

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "argocd"
HEALTH = (DOCS / "health.lua").read_text()
RUN_HEALTH = (DOCS / "workflowrun-health.lua").read_text()
FAST = {"platform.runwhen.com/poll-interval": "2s"}
DEFINITION = {
    "fromActivities": [{"name": "a", "actions": [{"tasks": {"slx": "k8s-health", "titles": ["t"]}}]}]
}


class Verdicts:
    def __init__(self, rw: RunWhenEnv, judge: Any) -> None:
        self.rw, self.judge = rw, judge

    def of(self, kind: str, name: str, *, cluster: bool = False) -> tuple[str, str]:
        obj = self.rw.get(kind, name)
        script = RUN_HEALTH if kind == "WorkflowRun" else HEALTH
        (verdict,) = self.judge([obj], script)
        assert not verdict["argocd"].get("error"), verdict  # the script runs in Argo CD's VM
        return verdict["kstatus"]["status"], verdict["argocd"]["status"]

    def expect(self, kind: str, name: str, kstatus: str, argocd: str, timeout: float = 30) -> None:
        seen: list[tuple[str, str]] = []

        def matches() -> bool:
            seen[:] = [self.of(kind, name)]
            return seen[0] == (kstatus, argocd)

        wait_for(matches, timeout, lambda: f"{kind}/{name}: (kstatus, Argo CD) {seen} != {(kstatus, argocd)}")


@pytest.fixture
def verdicts(rw: RunWhenEnv, health_judge: Any) -> Verdicts:
    return Verdicts(rw, health_judge)


def test_synced_kinds_in_every_state(rw: RunWhenEnv, verdicts: Verdicts) -> None:
    # Just applied, with no operator running: nothing has looked at them yet (every kind).
    rw.secret("local-credentials", {"username": rw.emulator.username, "password": rw.emulator.password})
    rw.apply(
        "RunWhenConnection",
        "local",
        {"url": rw.emulator.url, "credentialsSecretRef": {"name": "local-credentials"}},
    )
    verdicts.expect("RunWhenConnection", "local", "InProgress", "Progressing", timeout=5)
    rw.apply("Workspace", "ops", {"deletionPolicy": "Delete"}, annotations=FAST)
    rw.apply(
        "Workflow", "triage", {"workspaceRef": {"name": "ops"}, "definition": DEFINITION}, annotations=FAST
    )
    rw.apply("Persona", "sre", {"workspaceRef": {"name": "later"}, "fullName": "SRE"}, annotations=FAST)
    for kind, name in (("Workspace", "ops"), ("Workflow", "triage"), ("Persona", "sre")):
        verdicts.expect(kind, name, "InProgress", "Progressing", timeout=5)

    proc = rw.start_operator("--connection-check-interval", "2s")
    # Ready at the current generation.
    for kind, name in (("Workspace", "ops"), ("Workflow", "triage")):
        verdicts.expect(kind, name, "Current", "Healthy")
    verdicts.expect("ClusterRunWhenConnection", "default", "Current", "Healthy")
    verdicts.expect("RunWhenConnection", "local", "Current", "Healthy")
    # Waiting for its parent: work that finishes by itself once the Workspace exists.
    rw.wait_condition("Persona", "sre", status="False", reason="WaitingForWorkspace")
    verdicts.expect("Persona", "sre", "InProgress", "Progressing")
    rw.apply("Workspace", "later", {}, annotations=FAST)
    verdicts.expect("Persona", "sre", "Current", "Healthy")
    # Waiting for its connection.
    rw.apply(
        "Persona",
        "elsewhere",
        {"workspaceName": "ops", "connectionRef": {"kind": "RunWhenConnection", "name": "missing"}},
    )
    rw.wait_condition("Persona", "elsewhere", status="False", reason="ConnectionNotReady", timeout=60)
    verdicts.expect("Persona", "elsewhere", "InProgress", "Progressing")

    # A state that needs a human: the name is taken and adoption is not allowed.
    rw.third_party.create_workspace("taken", displayName="made elsewhere")
    rw.apply("Workspace", "taken", {"displayName": "ours"})
    rw.wait_condition("Workspace", "taken", status="False", reason="AlreadyExists")
    verdicts.expect("Workspace", "taken", "Failed", "Degraded")
    # ... and it heals when allowed to.
    rw.apply("Workspace", "taken", {"displayName": "ours", "adoptionPolicy": "Adopt"})
    verdicts.expect("Workspace", "taken", "Current", "Healthy")

    # Paused: Argo CD shows it suspended.
    rw.annotate("Workflow", "triage", {"platform.runwhen.com/paused": "true"})
    rw.wait_condition("Workflow", "triage", "Synced", "False", reason="ReconcilePaused")
    assert verdicts.of("Workflow", "triage")[1] == "Suspended"
    rw.annotate("Workflow", "triage", {"platform.runwhen.com/paused": None})
    verdicts.expect("Workflow", "triage", "Current", "Healthy")

    # A spec change the operator has not seen yet (it is stopped).
    proc.kill()
    rw.apply(
        "Workflow",
        "triage",
        {
            "workspaceRef": {"name": "ops"},
            "definition": DEFINITION,
            "webhookTokenSecretRef": {"name": "hook"},
        },
        annotations=FAST,
    )
    verdicts.expect("Workflow", "triage", "InProgress", "Progressing", timeout=5)
    proc.start()
    proc.wait_healthy()
    verdicts.expect("Workflow", "triage", "Current", "Healthy")

    # Being deleted while RunWhen cannot be reached: the finalizer holds it.
    rw.emulator.set_faults(errorRate=1.0)
    rw.delete("Workspace", "ops")
    verdicts.expect("Workspace", "ops", "Terminating", "Progressing")
    rw.emulator.clear_faults()
    rw.wait_gone("Workspace", "ops", timeout=60)

    # Refused credentials on the connections, and the objects that use one wait for it.
    rw.secret(rw.secret_name, {"username": rw.emulator.username, "password": "wrong", "token": ""})
    rw.secret("local-credentials", {"username": rw.emulator.username, "password": "wrong"})
    verdicts.expect("ClusterRunWhenConnection", "default", "Failed", "Degraded", timeout=60)
    verdicts.expect("RunWhenConnection", "local", "Failed", "Degraded", timeout=60)
    rw.annotate("Persona", "sre", {"platform.runwhen.com/reconcile-requested-at": "after-refusal"})
    rw.wait_condition("Persona", "sre", status="False", reason="ConnectionNotReady", timeout=60)
    verdicts.expect("Persona", "sre", "InProgress", "Progressing")


def test_workflowrun_in_every_state(rw: RunWhenEnv, verdicts: Verdicts) -> None:
    rw.emulator.set_runs("completed", step_seconds=3.0)
    rw.start_operator()
    rw.apply("Workspace", "runs", {})
    rw.apply("Workflow", "restart", {"workspaceRef": {"name": "runs"}, "definition": DEFINITION})
    rw.wait_condition("Workflow", "restart", timeout=60)

    rw.apply("WorkflowRun", "ok", {"workflowRef": {"name": "restart"}})
    wait_for(
        lambda: (rw.get("WorkflowRun", "ok").get("status") or {}).get("phase") in ("Queued", "Started"),
        30,
        "the run queued or running",
    )
    verdicts.expect("WorkflowRun", "ok", "InProgress", "Progressing", timeout=5)
    rw.wait_condition("WorkflowRun", "ok", "Complete", "True", timeout=60)
    verdicts.expect("WorkflowRun", "ok", "Current", "Healthy")

    rw.emulator.set_runs("failed", step_seconds=0.3)
    rw.apply("WorkflowRun", "bad", {"workflowRef": {"name": "restart"}})
    rw.wait_condition("WorkflowRun", "bad", "Failed", "True", timeout=60)
    verdicts.expect("WorkflowRun", "bad", "Failed", "Degraded")

    # Paused before it was triggered: never started, Argo CD shows it suspended.
    rw.apply(
        "WorkflowRun",
        "held",
        {"workflowRef": {"name": "restart"}},
        annotations={"platform.runwhen.com/paused": "true"},
    )
    kstatus, argocd = verdicts.of("WorkflowRun", "held")
    assert (kstatus, argocd) == ("InProgress", "Suspended")
