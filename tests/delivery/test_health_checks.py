"""The GitOps health checks of docs/gitops.md, run on status objects shaped by the operator's own
models and condition builder (tests/integration/test_health_verdicts.py asks the real libraries
about live objects).

The Argo CD scripts run in Lua 5.1 (Argo CD embeds gopher-lua, a Lua 5.1 implementation) through
lupa, with the libraries Argo CD's restricted VM does not open removed (no `string`, no `io`). The
Flux side is kstatus: `kstatus` below mirrors its documented rules for custom resources.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml

from runwhen_operator.api import common, workflowrun
from runwhen_operator.handlers import context
from runwhen_operator.handlers import managed as managed_handlers
from runwhen_operator.reconcile import engine
from tests.delivery import chart

DOCS = chart.ROOT / "docs"
HEALTH = DOCS / "argocd" / "health.lua"
RUN_HEALTH = DOCS / "argocd" / "workflowrun-health.lua"
SYNCED_KINDS = [
    "ClusterRunWhenConnection",
    "RunWhenConnection",
    "Workspace",
    "Workflow",
    "Persona",
    "RunnerLocation",
]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def argocd_health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run a health script the way Argo CD does: global `obj`, the chunk returns {status, message}."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    for library in ("string", "io", "debug"):  # not opened by Argo CD unless useOpenLibs is set
        runtime.execute(f"{library} = nil")
    runtime.globals().obj = _to_lua(runtime, obj)
    hs = runtime.execute(script)
    assert set(hs.keys()) <= {"status", "message"}
    assert hs["status"] in ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
    return hs["status"], hs["message"]


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus' rules for a custom resource (what Flux's health checks use).

    Terminating while deletionTimestamp is set; InProgress while status.observedGeneration differs from
    metadata.generation; then the standard conditions: Reconciling=True is InProgress, Stalled=True is
    Failed, a Ready condition is Current when True and InProgress otherwise; no such condition: Current.
    """
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return "InProgress"
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    if conditions.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if conditions.get("Stalled", {}).get("status") == "True":
        return "Failed"
    if "Ready" in conditions:
        return "Current" if conditions["Ready"]["status"] == "True" else "InProgress"
    return "Current"


def condition(type_: str, status: str, reason: str, generation: int, message: str = "") -> common.Condition:
    return common.Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=NOW,
    )


def managed(
    kind: str,
    *,
    generation: int = 3,
    observed: int | None = 3,
    ready: tuple[str, str] | None = ("True", engine.REASON_AVAILABLE),
    synced: tuple[str, str] | None = ("True", engine.REASON_SUCCESS),
    condition_generation: int | None = None,
    annotations: dict[str, str] | None = None,
    status: bool = True,
) -> dict[str, Any]:
    """An object of a synced kind with the status the operator writes (via the CRD models)."""
    cgen = observed if condition_generation is None else condition_generation
    conds = []
    if ready is not None:
        conds.append(condition("Ready", ready[0], ready[1], cgen or 0, f"ready is {ready[0]}"))
    if synced is not None:
        conds.append(condition("Synced", synced[0], synced[1], cgen or 0, f"synced is {synced[0]}"))
    obj: dict[str, Any] = {
        "apiVersion": "platform.runwhen.com/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "generation": generation, "annotations": annotations or {}},
        "spec": {},
    }
    if kind != "ClusterRunWhenConnection":
        obj["metadata"]["namespace"] = "team-a"
    if ready is not None and synced is None:  # a connection: Ready is its only verdict
        conds = [
            common.Condition.model_validate(c)
            for c in context.progress(
                [c.model_dump(by_alias=True, mode="json") for c in conds],
                ready[0],
                ready[1],
                f"ready is {ready[0]}",
                cgen,
            )
        ]
    elif synced is not None:  # the operator's own Reconciling/Stalled from Ready and Synced
        conds = [
            common.Condition.model_validate(c)
            for c in managed_handlers.progress_conditions(
                [c.model_dump(by_alias=True, mode="json") for c in conds], cgen
            )
        ]
    if status:
        obj["status"] = common.ManagedStatus(
            observed_generation=observed, conditions=conds, last_sync_time=NOW
        ).to_dict()
    return obj


@pytest.fixture(scope="module")
def health() -> str:
    return HEALTH.read_text()


@pytest.fixture(scope="module")
def run_health() -> str:
    return RUN_HEALTH.read_text()


# (object, Argo CD health, kstatus) -- one table for both tools
CASES = {
    "in sync": (managed("Workspace"), "Healthy", "Current"),
    "just applied: the CRD's status default": (
        managed("Workspace", observed=0, ready=None, synced=None),
        "Progressing",
        "InProgress",
    ),
    "no status at all (made before the status default)": (
        managed("Workspace", status=False),
        "Progressing",
        "Current",
    ),
    "spec changed, not observed yet": (
        managed("Workflow", generation=4, observed=3),
        "Progressing",
        "InProgress",
    ),
    "creating": (
        managed("Persona", ready=("False", engine.REASON_CREATING), synced=("True", engine.REASON_SUCCESS)),
        "Progressing",
        "InProgress",
    ),
    "waiting for the workspace": (
        managed(
            "Workflow",
            ready=("False", engine.REASON_WAITING_FOR_WORKSPACE),
            synced=("False", engine.REASON_WAITING_FOR_WORKSPACE),
        ),
        "Progressing",
        "InProgress",
    ),
    "connection not ready": (
        managed(
            "Persona",
            ready=("False", engine.REASON_CONNECTION_NOT_READY),
            synced=("False", engine.REASON_CONNECTION_NOT_READY),
        ),
        "Progressing",
        "InProgress",
    ),
    "transient API error keeps Ready, retrying": (
        managed(
            "Workspace", ready=("True", engine.REASON_AVAILABLE), synced=("False", engine.REASON_API_ERROR)
        ),
        "Progressing",
        "InProgress",
    ),
    "remote rejected the spec": (
        managed(
            "Workflow",
            ready=("False", engine.REASON_INVALID_SPEC),
            synced=("False", engine.REASON_INVALID_SPEC),
        ),
        "Degraded",
        "Failed",
    ),
    "name taken, adoption refused": (
        managed(
            "Workspace",
            ready=("False", engine.REASON_ALREADY_EXISTS),
            synced=("False", engine.REASON_ALREADY_EXISTS),
        ),
        "Degraded",
        "Failed",
    ),
    "credentials refused": (
        managed(
            "Persona",
            ready=("False", engine.REASON_UNAUTHORIZED),
            synced=("False", engine.REASON_UNAUTHORIZED),
        ),
        "Degraded",
        "Failed",
    ),
    "connection verified": (
        managed("ClusterRunWhenConnection", ready=("True", "Verified"), synced=None),
        "Healthy",
        "Current",
    ),
    "connection credentials refused": (
        managed("RunWhenConnection", ready=("False", "Unauthorized"), synced=None),
        "Degraded",
        "Failed",
    ),
    "connection unreachable": (
        managed("ClusterRunWhenConnection", ready=("False", "Unreachable"), synced=None),
        "Progressing",
        "InProgress",
    ),
    "ready at an older generation only": (
        managed("Workspace", generation=5, observed=None, condition_generation=4),
        "Progressing",
        "Current",
    ),
    "paused": (
        managed(
            "Workspace",
            ready=("True", engine.REASON_AVAILABLE),
            synced=("False", engine.REASON_PAUSED),
            annotations={common.ANNOTATION_PAUSED: "true"},
        ),
        "Suspended",
        "Current",
    ),
    "paused, upper case": (
        managed("Persona", annotations={common.ANNOTATION_PAUSED: "TRUE"}),
        "Suspended",
        "Current",
    ),
    "not a pause value (the operator does not pause either)": (
        managed("Persona", annotations={common.ANNOTATION_PAUSED: " true "}),
        "Healthy",
        "Current",
    ),
    "pause annotation off": (
        managed("Persona", annotations={common.ANNOTATION_PAUSED: "false"}),
        "Healthy",
        "Current",
    ),
}


@pytest.mark.parametrize(("obj", "argo", "flux"), list(CASES.values()), ids=list(CASES))
def test_argocd_and_kstatus(health, obj, argo, flux):
    status, message = argocd_health(health, obj)
    assert status == argo, message
    assert message
    assert kstatus(obj) == flux


def test_degraded_message_carries_reason_and_message(health):
    obj = managed(
        "Workflow", ready=("False", engine.REASON_INVALID_SPEC), synced=("False", engine.REASON_INVALID_SPEC)
    )
    status, message = argocd_health(health, obj)
    assert status == "Degraded"
    # The Stalled condition's: the failed Synced speaks for the object.
    assert message == "InvalidSpec: synced is False"


def test_every_terminal_reason_of_the_engine_is_degraded(health):
    assert engine.TERMINAL_REASONS
    for reason in engine.TERMINAL_REASONS:
        obj = managed("Workspace", ready=("False", reason), synced=("False", reason))
        assert argocd_health(health, obj)[0] == "Degraded", reason


def test_retrying_reasons_are_not_degraded(health):
    for reason in (
        engine.REASON_API_ERROR,
        engine.REASON_CREATING,
        engine.REASON_DELETING,
        engine.REASON_NOT_FOUND,
    ):
        obj = managed("Workspace", ready=("False", reason), synced=("False", reason))
        assert argocd_health(health, obj)[0] == "Progressing", reason


def _run(phase: str | None, conditions: list[tuple[str, str, str]], **meta: Any) -> dict[str, Any]:
    status = workflowrun.WorkflowRunStatus(
        observed_generation=1,
        phase=phase,
        conditions=[condition(t, s, r, 1) for t, s, r in conditions],
        message="run message" if phase else None,
    ).to_dict()
    return {
        "apiVersion": "platform.runwhen.com/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r", "namespace": "team-a", "generation": 1, **meta},
        "spec": {"workflowRef": {"name": "wf"}},
        "status": status,
    }


RUN_CASES = {
    "not triggered": (
        {"apiVersion": "platform.runwhen.com/v1alpha1", "kind": "WorkflowRun", "metadata": {"generation": 1}},
        "Progressing",
    ),
    "pending": (_run("Pending", []), "Progressing"),
    "queued": (
        _run("Queued", [("Complete", "False", "Queued"), ("Failed", "False", "Queued")]),
        "Progressing",
    ),
    "started": (_run("Started", [("Complete", "False", "Started")]), "Progressing"),
    "completed": (
        _run("Completed", [("Complete", "True", "Completed"), ("Failed", "False", "Completed")]),
        "Healthy",
    ),
    "completed with errors": (
        _run("CompletedWithErrors", [("Complete", "True", "CompletedWithErrors")]),
        "Healthy",
    ),
    "failed": (_run("Failed", [("Complete", "False", "Failed"), ("Failed", "True", "Failed")]), "Degraded"),
    "canceled": (_run("Canceled", [("Failed", "True", "Canceled")]), "Degraded"),
    "paused before triggering": (
        _run("Pending", [], annotations={common.ANNOTATION_PAUSED: "true"}),
        "Suspended",
    ),
}


@pytest.mark.parametrize(("obj", "argo"), list(RUN_CASES.values()), ids=list(RUN_CASES))
def test_workflowrun_argocd(run_health, obj, argo):
    status, message = argocd_health(run_health, obj)
    assert status == argo, message


def test_workflowrun_phases_cover_the_model(run_health):
    """Every terminal phase of the model maps to Healthy or Degraded, every other to Progressing."""
    for phase in workflowrun.WorkflowRunPhase.__args__:
        done = phase in workflowrun.TERMINAL_PHASES
        failed = phase in ("Failed", "Canceled")
        conds = []
        if done:
            conds = [
                (workflowrun.CONDITION_FAILED if failed else workflowrun.CONDITION_COMPLETE, "True", phase)
            ]
        got = argocd_health(run_health, _run(phase, conds))[0]
        assert got == ("Degraded" if failed else "Healthy" if done else "Progressing"), phase


def test_kstatus_terminating():
    obj = managed("Workspace")
    obj["metadata"]["deletionTimestamp"] = "2026-03-01T12:00:00Z"
    assert kstatus(obj) == "Terminating"


def _gitops_config() -> dict[str, str]:
    """The argocd-cm data block of docs/gitops.md."""
    text = (DOCS / "gitops.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    for block in blocks:
        doc = yaml.safe_load(block)
        if (
            isinstance(doc, dict)
            and doc.get("kind") == "ConfigMap"
            and doc["metadata"]["name"] == "argocd-cm"
        ):
            return doc["data"]
    raise AssertionError("no argocd-cm ConfigMap in docs/gitops.md")


def test_gitops_guide_ships_these_scripts(health, run_health):
    data = _gitops_config()
    prefix = "resource.customizations.health.platform.runwhen.com_"
    assert set(data) == {prefix + kind for kind in [*SYNCED_KINDS, "WorkflowRun"]}
    for kind in SYNCED_KINDS:
        assert data[prefix + kind] == health, kind
    assert data[prefix + "WorkflowRun"] == run_health


def test_scripts_pause_on_the_operators_pause_values(health, run_health):
    for value in [*sorted(common.PAUSED_VALUES), "yes", "1", " true", "tRUE"]:
        obj = managed("Workspace", annotations={common.ANNOTATION_PAUSED: value})
        assert (argocd_health(health, obj)[0] == "Suspended") is (value in common.PAUSED_VALUES), value
        assert context.is_paused(obj) is (value in common.PAUSED_VALUES), value


def test_scripts_are_lua_51(health, run_health):
    """No syntax newer than Lua 5.1 (Argo CD's interpreter): compile them in a 5.1 runtime."""
    runtime = lua51.LuaRuntime()
    for script in (health, run_health):
        assert runtime.eval("function(s) return loadstring(s) ~= nil end")(script)
