"""``WorkflowRun``: one run of a RunWhen workflow, triggered once and followed to its end."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from runwhen_operator.api import common

__all__ = [
    "CONDITION_COMPLETE",
    "CONDITION_FAILED",
    "TERMINAL_PHASES",
    "WorkflowRunPhase",
    "WorkflowRunSpec",
    "WorkflowRunStatus",
]

CONDITION_COMPLETE = "Complete"
CONDITION_FAILED = "Failed"

WorkflowRunPhase = Literal[
    "Pending", "Queued", "Started", "Completed", "CompletedWithErrors", "Failed", "Canceled"
]
#: Phases after which the run never changes again.
TERMINAL_PHASES: frozenset[str] = frozenset({"Completed", "CompletedWithErrors", "Failed", "Canceled"})

_SPEC_RULES = (
    common.cel(
        "has(self.workflowRef)"
        " ? (!has(self.workflowId) && !has(self.workflowName) && !has(self.workspaceName))"
        " : (has(self.workspaceName) && (has(self.workflowId) != has(self.workflowName)))",
        "set either workflowRef, or workspaceName with one of workflowId and workflowName",
    ),
    common.cel("self == oldSelf", "spec is immutable: create a new WorkflowRun"),
)


class WorkflowRunSpec(common.CRDModel):
    """Which workflow to run, with what context. Immutable: a run is triggered exactly once."""

    model_config = ConfigDict(json_schema_extra=common.validations(*_SPEC_RULES))

    workflow_ref: common.LocalObjectRef | None = Field(
        default=None,
        description=(
            "A Workflow resource in the same namespace to run (the run waits until it is Ready). "
            "Either workflowRef, or workspaceName with workflowName or workflowId."
        ),
    )
    workflow_id: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Remote id of a workflow that is not managed by a Workflow resource; needs workspaceName."
        ),
    )
    workflow_name: common.DnsLabel | None = Field(
        default=None,
        description=(
            "Short name of a workflow that is not managed by a Workflow resource (how the platform API "
            "addresses it); needs workspaceName."
        ),
    )
    workspace_name: common.DnsLabel | None = Field(
        default=None, description="Name of the remote workspace of workflowName or workflowId."
    )
    context: common.FreeForm | None = Field(
        default=None,
        description=("Free-form context passed to the run (for example the alert that caused it)."),
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=31536000,
        description=(
            "Delete this resource that many seconds after the run finished (0: right away). Kept "
            "forever when omitted."
        ),
    )
    connection_ref: common.ConnectionRef | None = Field(
        default=None,
        description=(
            "The connection (RunWhen API endpoint and credentials) to trigger and follow the run "
            "with. When omitted: the connection of the Workflow named by workflowRef, or else the "
            "ClusterRunWhenConnection named `default`."
        ),
    )

    @model_validator(mode="after")
    def _one_target(self) -> WorkflowRunSpec:
        message = "set either workflowRef, or workspaceName with one of workflowId and workflowName"
        if self.workflow_ref is not None:
            if (
                self.workflow_id is not None
                or self.workflow_name is not None
                or self.workspace_name is not None
            ):
                raise ValueError(message)
        elif self.workspace_name is None or (self.workflow_id is None) == (self.workflow_name is None):
            raise ValueError(message)
        return self


class WorkflowRunStatus(common.CRDModel):
    """The observed state of the run."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the status was computed for."
    )
    conditions: list[common.Condition] = common.conditions_field(
        "Conditions of the run: `Complete` is True once the run finished successfully (phase "
        "Completed or CompletedWithErrors), `Failed` is True once it failed or was canceled. Reasons "
        "are CamelCase."
    )
    phase: WorkflowRunPhase | None = Field(
        default=None,
        description=(
            "Where the run is: Pending (not triggered yet), Queued, Started, then one of Completed, "
            "CompletedWithErrors, Failed or Canceled."
        ),
    )
    run_session_id: int | None = Field(default=None, description="Remote id of the run session.")
    run_id: int | None = Field(default=None, description="Remote id of the workflow run.")
    workflow_id: int | None = Field(default=None, description="Remote id of the workflow that was run.")
    workflow_name: common.DnsLabel | None = Field(
        default=None, description="Short name of the workflow that was run."
    )
    workspace: common.DnsLabel | None = Field(
        default=None, description="Name of the remote workspace of the workflow."
    )
    trigger_requested_at: common.Timestamp | None = Field(
        default=None,
        description=(
            "When the operator asked RunWhen to start the run. Once set, the run is never triggered again."
        ),
    )
    queued_at: common.Timestamp | None = Field(default=None, description="When the run was queued.")
    started_at: common.Timestamp | None = Field(default=None, description="When the run started.")
    completed_at: common.Timestamp | None = Field(
        default=None, description="When the run finished (completed, failed or was canceled)."
    )
    message: str | None = Field(
        default=None, max_length=common.MAX_MESSAGE_LENGTH, description="RunWhen's message about the run."
    )

    @property
    def finished(self) -> bool:
        """The run reached a terminal phase."""
        return self.phase in TERMINAL_PHASES

    def condition(self, type_: str) -> common.Condition | None:
        """The condition of the given type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)
