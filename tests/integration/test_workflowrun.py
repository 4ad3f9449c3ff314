"""WorkflowRun on the platform dialect: a run is a run session created directly with the workflow's
tasks, named after the WorkflowRun so that it is found again after a lost answer; at most one per
object across crashes. Against the real control plane, the emulator and the operator process (the
documented dialect's runs: test_documented_workflowrun.py)."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

import pytest

from tests.support import workflowruns
from tests.support.controlplane import Cluster
from tests.support.operator import RunWhenEnv, wait_for
from tests.support.workflowruns import events_of, kubectl, parse_time, status_of, two_replicas_on_one_version

pytestmark = pytest.mark.integration

RUN_POST = "POST /api/v3/workspaces/{workspace_name}/runsessions"
DEFINITION = {
    "fromActivities": [
        {
            "name": "on-alert",
            "actions": [
                {"tasks": {"slx": "k8s-health", "persona": "sre", "titles": ["Check pods"]}},
                {"tasks": {"slx": "k8s-health", "titles": ["Check nodes"]}},
                {"tasks": {"slx": "db-health"}},
            ],
        }
    ]
}


def _ready_workflow(rw: RunWhenEnv, workspace: str = "ops", name: str = "restart") -> dict[str, Any]:
    rw.apply("Workspace", workspace, {"displayName": workspace})
    rw.apply("Workflow", name, {"workspaceRef": {"name": workspace}, "definition": DEFINITION})
    return rw.wait_condition("Workflow", name, timeout=60)


def _sessions(rw: RunWhenEnv, uid: str) -> list[dict[str, Any]]:
    return [s for s in rw.remote("runSessions") if s.get("name") == f"k8s-workflowrun-{uid}"]


def _wait(cluster: Cluster, namespace: str, condition: str, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        kubectl(
            cluster, "-n", namespace, "wait", f"--for={condition}", f"workflowrun/{name}", "--timeout=60s"
        ),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_a_run_is_one_named_session_of_the_workflow_tasks(rw: RunWhenEnv, control_plane: Cluster) -> None:
    rw.emulator.set_runs("completed", step_seconds=1.0)
    rw.start_operator()
    wf = _ready_workflow(rw)
    rw.apply(
        "WorkflowRun",
        "fix-it",
        {"workflowRef": {"name": "restart"}, "context": {"alert": "pods crash-looping"}},
    )
    uid = rw.get("WorkflowRun", "fix-it")["metadata"]["uid"]
    waiter = _wait(control_plane, rw.namespace, "condition=Complete", "fix-it")
    assert waiter.returncode == 0, waiter.stderr

    status = status_of(rw, "fix-it")
    sessions = _sessions(rw, uid)
    assert len(sessions) == 1, rw.remote("runSessions")
    session = sessions[0]
    assert status["phase"] == "Completed"
    assert status["runSessionId"] == session["id"]
    assert (status["workspace"], status["workflowName"], status["workflowId"]) == (
        "ops",
        "restart",
        wf["status"]["id"],
    )
    # One run request per SLX of the workflow's tasks, titles merged, under the first persona named.
    assert [(r["slxName"], r["taskTitles"]) for r in session["runRequests"]] == [
        ("ops--k8s-health", "Check pods||Check nodes"),
        ("ops--db-health", ""),
    ]
    assert session["source"] == "direct"
    assert session["personaShortName"] in ("", "sre")
    assert session["runRequests"][0]["memo"][0]["context"] == {"alert": "pods crash-looping"}
    assert all(r["responseTime"] for r in session["runRequests"])
    requested, queued = parse_time(status["triggerRequestedAt"]), parse_time(status["queuedAt"])
    started, completed = parse_time(status["startedAt"]), parse_time(status["completedAt"])
    assert requested.replace(microsecond=0) <= queued.replace(microsecond=0) <= started <= completed
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Complete"]["status"], conditions["Failed"]["status"]) == ("True", "False")
    assert rw.emulator.requests()[RUN_POST] == 1
    assert ("Normal", "Triggered") in workflowruns.events_after(rw, "fix-it", ("Normal", "Completed"))

    # Finished runs are left alone: no second run, no status writes.
    version = rw.get("WorkflowRun", "fix-it")["metadata"]["resourceVersion"]
    rw.emulator.reset_requests()
    time.sleep(3)
    assert rw.emulator.requests()[RUN_POST] == 0
    assert rw.get("WorkflowRun", "fix-it")["metadata"]["resourceVersion"] == version


@pytest.mark.parametrize(
    ("outcome", "phase", "complete", "failed"),
    [
        ("failed", "Failed", "False", "True"),
        ("completed_with_errors", "CompletedWithErrors", "True", "False"),
    ],
)
def test_failed_tasks_show_in_the_phase(
    rw: RunWhenEnv, control_plane: Cluster, outcome: str, phase: str, complete: str, failed: str
) -> None:
    rw.emulator.set_runs(outcome, step_seconds=0.5)
    rw.start_operator()
    _ready_workflow(rw)
    rw.apply("WorkflowRun", "doomed", {"workflowRef": {"name": "restart"}})
    waiter = _wait(control_plane, rw.namespace, "jsonpath={.status.completedAt}", "doomed")
    assert waiter.returncode == 0, waiter.stderr
    status = status_of(rw, "doomed")
    assert status["phase"] == phase, status
    assert rw.condition("WorkflowRun", "doomed", "Complete")["status"] == complete
    assert rw.condition("WorkflowRun", "doomed", "Failed")["status"] == failed
    assert "failed" in status["message"]


def test_by_workflow_name_waits_and_ttl(rw: RunWhenEnv) -> None:
    rw.emulator.set_runs("completed", step_seconds=0.3)
    rw.start_operator()
    rw.apply(
        "WorkflowRun",
        "short-lived",
        {"workflowName": "restart", "workspaceName": "ops", "ttlSecondsAfterFinished": 4},
    )
    # The workflow does not exist yet: the run is refused, not retried forever.
    obj = rw.wait_condition("WorkflowRun", "short-lived", "Failed", "True", timeout=60)
    assert obj["status"]["phase"] == "Failed"
    assert rw.condition("WorkflowRun", "short-lived", "Failed")["reason"] == "TriggerRejected"
    rw.wait_gone("WorkflowRun", "short-lived", timeout=30)
    assert rw.emulator.requests()[RUN_POST] == 0

    _ready_workflow(rw)
    rw.apply("WorkflowRun", "by-name", {"workflowName": "restart", "workspaceName": "ops"})
    obj = rw.wait_condition("WorkflowRun", "by-name", "Complete", "True", timeout=60)
    uid = obj["metadata"]["uid"]
    assert [s["id"] for s in _sessions(rw, uid)] == [obj["status"]["runSessionId"]]


def test_a_workflow_without_tasks_is_refused(rw: RunWhenEnv) -> None:
    # The CRD cannot express such a workflow; one made elsewhere can be.
    rw.third_party.create_workspace("ops")
    rw.third_party.create_child("workflow", "ops", "empty", {"definition": {"fromActivities": []}})
    rw.start_operator()
    rw.apply("WorkflowRun", "nothing", {"workflowName": "empty", "workspaceName": "ops"})
    rw.wait_condition("WorkflowRun", "nothing", "Failed", "True", timeout=60)
    assert "no tasks to run" in rw.condition("WorkflowRun", "nothing", "Failed")["message"]
    assert rw.emulator.requests()[RUN_POST] == 0


def test_crash_between_start_and_status_write_runs_once(rw: RunWhenEnv) -> None:
    rw.emulator.set_runs("completed", step_seconds=0.5)
    proc = rw.start_operator()
    _ready_workflow(rw)

    # Every API answer now takes 4 s: the create stays in flight that long.
    rw.emulator.set_faults(latency_ms=4000)
    rw.apply("WorkflowRun", "crashy", {"workflowRef": {"name": "restart"}})
    uid = rw.get("WorkflowRun", "crashy")["metadata"]["uid"]
    wait_for(lambda: rw.emulator.requests()[RUN_POST] == 1, 30, "the run session create")
    # Freeze the operator with the create in flight, let RunWhen apply it, then crash the operator
    # before it can read the answer.
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: len(_sessions(rw, uid)) == 1, 30, "the run session of the lost answer")
    finally:
        proc.kill()
    status = status_of(rw, "crashy")
    assert status.get("triggerRequestedAt"), status
    assert "runSessionId" not in status, status

    rw.emulator.clear_faults()
    proc.start()
    proc.wait_healthy()
    obj = rw.wait_condition("WorkflowRun", "crashy", "Complete", "True", timeout=60)
    sessions = _sessions(rw, uid)
    assert len(sessions) == 1, sessions
    assert obj["status"]["runSessionId"] == sessions[0]["id"]
    assert rw.emulator.requests()[RUN_POST] == 1
    triggered = [m for _, reason, m in events_of(rw, "crashy") if reason == "Triggered"]
    assert len(triggered) == 1
    assert "found after the answer to the run call was lost" in triggered[0]


def test_two_replicas_deciding_on_the_same_version_run_once(rw: RunWhenEnv, control_plane: Cluster) -> None:
    rw.third_party.create_workspace("solo")
    rw.third_party.create_child("workflow", "solo", "w", {"definition": DEFINITION})
    rw.apply("WorkflowRun", "contested", {"workflowName": "w", "workspaceName": "solo"})
    seen_by_both = rw.get("WorkflowRun", "contested")
    uid = seen_by_both["metadata"]["uid"]
    outdated, following = two_replicas_on_one_version(rw, control_plane, seen_by_both)
    assert outdated.after == 0.0
    assert following.after is not None
    assert rw.emulator.requests()[RUN_POST] == 1
    sessions = _sessions(rw, uid)
    assert len(sessions) == 1, sessions
    assert status_of(rw, "contested")["runSessionId"] == sessions[0]["id"]
