"""WorkflowRun on the documented dialect: trigger a workflow once (`POST .../workflows/{id}/run`
with the uid in the run context) and follow it like a Job, against the real control plane, the
emulator in its documented dialect and the operator process. The platform dialect's runs are in
test_workflowrun.py."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import workflowruns
from tests.support.controlplane import Cluster
from tests.support.operator import RunWhenEnv, wait_for
from tests.support.workflowruns import events_of, kubectl, parse_time, status_of, two_replicas_on_one_version

pytestmark = pytest.mark.integration


@pytest.fixture
def rw(rw: RunWhenEnv, emulator_factory: Any) -> RunWhenEnv:
    """The usual environment, wired to an emulator of the documented dialect."""
    rw.use_emulator(emulator_factory(dialect="documented"))
    return rw


RUN_POST = "POST /api/v3/workspaces/{workspace_name}/workflows/{workflow_id}/run"
MARKER = "platform.runwhen.com/workflowrun-uid"
DEFINITION = {"fromActivities": [{"name": "a", "actions": [{"tasks": {"slx": "s1"}}]}]}


def _ready_workflow(rw: RunWhenEnv, workspace: str = "ops", name: str = "restart") -> dict[str, Any]:
    rw.apply("Workspace", workspace, {"displayName": workspace})
    rw.apply("Workflow", name, {"workspaceRef": {"name": workspace}, "definition": DEFINITION})
    return rw.wait_condition("Workflow", name, timeout=60)


def _sessions(rw: RunWhenEnv, workflow_id: int) -> list[dict[str, Any]]:
    return [s for s in rw.remote("runSessions") if s.get("workflowId") == workflow_id]


def test_successful_run_is_followed_to_complete(rw: RunWhenEnv, control_plane: Cluster) -> None:
    rw.emulator.set_runs("completed", step_seconds=1.5)
    rw.start_operator()
    wf = _ready_workflow(rw)
    workflow_id = wf["status"]["id"]

    rw.apply(
        "WorkflowRun",
        "fix-it",
        {"workflowRef": {"name": "restart"}, "context": {"alert": "pods crash-looping", "count": 3}},
    )
    uid = rw.get("WorkflowRun", "fix-it")["metadata"]["uid"]
    # `kubectl wait` starts before the run finished and returns once Complete is True.
    waiter = subprocess.run(
        kubectl(
            control_plane,
            "-n",
            rw.namespace,
            "wait",
            "--for=condition=Complete",
            "workflowrun/fix-it",
            "--timeout=60s",
        ),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert waiter.returncode == 0, waiter.stderr
    assert "condition met" in waiter.stdout

    status = status_of(rw, "fix-it")
    sessions = _sessions(rw, workflow_id)
    assert len(sessions) == 1
    session = sessions[0]
    assert session["status"] == "completed"
    assert status["phase"] == "Completed"
    assert status["runSessionId"] == session["id"]
    assert status["workflowId"] == workflow_id
    assert status["workspace"] == "ops"
    assert status["runId"] == rw.remote("runs")[0]["id"]
    assert status["observedGeneration"] == 1
    # The spec's context reached RunWhen, with the object's uid for finding the run after a crash.
    assert session["context"] == {"alert": "pods crash-looping", "count": 3, MARKER: uid}
    requested, queued = parse_time(status["triggerRequestedAt"]), parse_time(status["queuedAt"])
    started, completed = parse_time(status["startedAt"]), parse_time(status["completedAt"])
    assert requested <= queued <= started <= completed
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True"
    assert conditions["Complete"]["reason"] == "Completed"
    assert conditions["Failed"]["status"] == "False"
    assert rw.emulator.requests()[RUN_POST] == 1
    reasons = workflowruns.events_after(rw, "fix-it", ("Normal", "Completed"))
    assert ("Normal", "Triggered") in reasons
    assert not any(kind == "Warning" for kind, _ in reasons)

    table = subprocess.run(
        kubectl(control_plane, "-n", rw.namespace, "get", "workflowrun", "fix-it"),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split("\n")
    assert table[0].split() == ["NAME", "WORKFLOW", "PHASE", "AGE", "FINISHED"]
    assert table[1].split()[:3] == ["fix-it", "restart", "Completed"]

    # The example is accepted by the API server as it is.
    example = Path(__file__).resolve().parents[2] / "examples" / "workflowrun.yaml"
    created = subprocess.run(
        kubectl(control_plane, "create", "--dry-run=server", "-o", "name", "-f", str(example)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("workflowrun.platform.runwhen.com/restart-crashlooping-")

    # Finished runs are left alone: no second run, no status writes.
    version = rw.get("WorkflowRun", "fix-it")["metadata"]["resourceVersion"]
    rw.emulator.reset_requests()
    time.sleep(3)
    assert rw.emulator.requests()[RUN_POST] == 0
    assert rw.get("WorkflowRun", "fix-it")["metadata"]["resourceVersion"] == version


def test_failed_run_sets_the_failed_condition(rw: RunWhenEnv, control_plane: Cluster) -> None:
    rw.emulator.set_runs("failed", step_seconds=0.5)
    rw.start_operator()
    wf = _ready_workflow(rw)
    rw.apply("WorkflowRun", "doomed", {"workflowRef": {"name": "restart"}})
    # Waiting for the end whatever the outcome: completedAt is written with the final phase.
    waiter = subprocess.run(
        kubectl(
            control_plane,
            "-n",
            rw.namespace,
            "wait",
            "--for=jsonpath={.status.completedAt}",
            "workflowrun/doomed",
            "--timeout=60s",
        ),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert waiter.returncode == 0, waiter.stderr
    status = status_of(rw, "doomed")
    assert rw.condition("WorkflowRun", "doomed", "Failed")["status"] == "True"
    assert rw.condition("WorkflowRun", "doomed", "Failed")["reason"] == "Failed"
    assert status["phase"] == "Failed"
    assert rw.condition("WorkflowRun", "doomed", "Complete")["status"] == "False"
    sessions = _sessions(rw, wf["status"]["id"])
    assert [s["id"] for s in sessions] == [status["runSessionId"]]
    assert sessions[0]["status"] == "failed"
    assert status["completedAt"]
    events = workflowruns.events_after(rw, "doomed", ("Warning", "Failed"))
    assert not any(reason == "Completed" for _, reason in events)


def test_run_waits_for_the_workflow_to_be_ready(rw: RunWhenEnv) -> None:
    rw.emulator.set_runs("completed", step_seconds=0.5)
    rw.start_operator()
    rw.apply("WorkflowRun", "early", {"workflowRef": {"name": "late"}})
    wait_for(
        lambda: status_of(rw, "early").get("message") == 'waiting for Workflow "late"',
        30,
        lambda: f"waiting for the Workflow; status: {status_of(rw, 'early')}",
    )
    assert status_of(rw, "early")["phase"] == "Pending"

    # The Workflow exists but cannot be Ready: its Workspace does not exist yet.
    rw.apply("Workflow", "late", {"workspaceRef": {"name": "later"}, "definition": DEFINITION})
    rw.wait_condition("Workflow", "late", status="False", reason="WaitingForWorkspace")
    wait_for(
        lambda: status_of(rw, "early").get("message") == 'waiting for Workflow "late" to be Ready',
        30,
        lambda: f"waiting for Ready; status: {status_of(rw, 'early')}",
    )
    status = status_of(rw, "early")
    assert status["phase"] == "Pending"
    assert "triggerRequestedAt" not in status
    # Not finished: Ready False with the phase, and in progress (no Complete or Failed yet).
    conditions = {c["type"]: c for c in status["conditions"]}
    assert set(conditions) == {"Ready", "Reconciling"}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "Pending")
    assert rw.emulator.requests()[RUN_POST] == 0
    assert rw.remote("runSessions") == []

    rw.apply("Workspace", "later", {"displayName": "Later"})
    wf = rw.wait_condition("Workflow", "late", timeout=60)
    obj = rw.wait_condition("WorkflowRun", "early", "Complete", "True", timeout=60)
    sessions = _sessions(rw, wf["status"]["id"])
    assert [s["id"] for s in sessions] == [obj["status"]["runSessionId"]]
    assert rw.emulator.requests()[RUN_POST] == 1


def test_crash_between_trigger_and_status_write_runs_once(rw: RunWhenEnv) -> None:
    rw.emulator.set_runs("completed", step_seconds=0.5)
    proc = rw.start_operator()
    wf = _ready_workflow(rw)
    workflow_id = wf["status"]["id"]

    # Every API answer now takes 4 s: the run call stays in flight that long.
    rw.emulator.set_faults(latency_ms=4000)
    rw.apply("WorkflowRun", "crashy", {"workflowRef": {"name": "restart"}})
    # The emulator counts a request when it arrives, before the latency: the call has been sent.
    wait_for(lambda: rw.emulator.requests()[RUN_POST] == 1, 30, "the run call")
    # Freeze the operator with the call in flight (a killed client would make the emulator drop the
    # request), let RunWhen apply it, then crash the operator before it can read the answer.
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: len(_sessions(rw, workflow_id)) == 1, 30, "the run session of the call")
    finally:
        proc.kill()
    status = status_of(rw, "crashy")
    assert status.get("triggerRequestedAt"), status
    assert "runSessionId" not in status, status
    assert status["phase"] == "Pending"

    rw.emulator.clear_faults()
    proc.start()
    proc.wait_healthy()
    obj = rw.wait_condition("WorkflowRun", "crashy", "Complete", "True", timeout=60)
    sessions = _sessions(rw, workflow_id)
    assert len(sessions) == 1, sessions
    assert obj["status"]["runSessionId"] == sessions[0]["id"]
    assert obj["status"]["phase"] == "Completed"
    assert obj["status"]["triggerRequestedAt"] == status["triggerRequestedAt"]
    assert rw.emulator.requests()[RUN_POST] == 1
    assert len(rw.remote("runs")) == 1
    triggered = [m for _, reason, m in events_of(rw, "crashy") if reason == "Triggered"]
    assert len(triggered) == 1
    assert "found after the answer to the run call was lost" in triggered[0]


def test_ttl_deletes_the_finished_run(rw: RunWhenEnv) -> None:
    rw.emulator.set_runs("completed", step_seconds=0.3)
    rw.start_operator()
    wf = _ready_workflow(rw)
    rw.apply(
        "WorkflowRun",
        "short-lived",
        {"workflowId": wf["status"]["id"], "workspaceName": "ops", "ttlSecondsAfterFinished": 4},
    )
    obj = rw.wait_condition("WorkflowRun", "short-lived", "Complete", "True", timeout=60)
    completed = parse_time(obj["status"]["completedAt"])
    assert obj["status"]["runSessionId"] == _sessions(rw, wf["status"]["id"])[0]["id"]
    rw.wait_gone("WorkflowRun", "short-lived", timeout=30)
    gone_after = (datetime.now(completed.tzinfo) - completed).total_seconds()
    assert gone_after >= 3, f"deleted {gone_after:.1f}s after finishing, before its TTL"
    assert rw.emulator.requests()[RUN_POST] == 1


def test_two_replicas_deciding_on_the_same_version_run_once(rw: RunWhenEnv, control_plane: Cluster) -> None:
    """A leader that took over with a cache lagging behind, or a former leader's pass still running:
    both see no intent, and the intent write guarded by the resourceVersion lets only one trigger."""
    with rw.emulator.client() as api:
        assert api.post("workspaces/", json={"name": "solo"}).status_code == 201
        created = api.post("workspaces/solo/workflows/", json={"name": "w", "definition": DEFINITION})
        workflow_id = created.json()["id"]
    rw.apply("WorkflowRun", "contested", {"workflowId": workflow_id, "workspaceName": "solo"})
    seen_by_both = rw.get("WorkflowRun", "contested")
    outdated, following = two_replicas_on_one_version(rw, control_plane, seen_by_both)
    assert outdated.after == 0.0
    assert following.after is not None
    assert rw.emulator.requests()[RUN_POST] == 1
    sessions = _sessions(rw, workflow_id)
    assert len(sessions) == 1, sessions
    assert status_of(rw, "contested")["runSessionId"] == sessions[0]["id"]
