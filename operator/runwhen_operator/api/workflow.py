"""``Workflow``: a RunWhen workflow (activities matched to tasks run by a persona)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from runwhen_operator.api import common

__all__ = [
    "SESSION_TTL_PATTERN",
    "WEBHOOK_SECRET_KEY_TOKEN",
    "WEBHOOK_SECRET_KEY_URL",
    "ActivityMatch",
    "FromActivity",
    "WorkflowAction",
    "WorkflowDefinition",
    "WorkflowSpec",
    "WorkflowStatus",
    "WorkflowTasks",
]

#: Keys of the webhook Secret (spec.webhookTokenSecretRef).
WEBHOOK_SECRET_KEY_TOKEN = "token"
WEBHOOK_SECRET_KEY_URL = "webhookUrl"

_Verb = Annotated[str, Field(min_length=1, max_length=128)]
_SlxName = Annotated[str, Field(min_length=1, max_length=common.MAX_OBJECT_NAME_LENGTH)]
_Title = Annotated[str, Field(min_length=1, max_length=512)]

#: A session TTL: whole numbers with units ``ms``, ``s``, ``m``, ``h`` (``20m``, ``1h30m``). Narrower than
#: a Go duration because RunWhen accepts no fractions and no ``ns``/``us``.
SESSION_TTL_PATTERN = "^([0-9]+(ms|s|m|h))+$"


class ActivityMatch(common.CRDModel):
    """Which activities trigger the workflow."""

    activity_verbs: list[_Verb] | None = Field(
        default=None, max_length=50, description="Activity verbs that match (e.g. `alert`, `issue`)."
    )
    slxs: list[_SlxName] | None = Field(
        default=None, max_length=100, description="Names of the SLXs whose activities match."
    )


class WorkflowTasks(common.CRDModel):
    """The tasks an action runs."""

    slx: _SlxName = Field(description="Name of the SLX whose tasks run.")
    persona: common.DnsLabel | None = Field(
        default=None, description="Remote name of the persona (AI assistant) that runs the tasks."
    )
    titles: list[_Title] | None = Field(
        default=None, max_length=100, description="Titles of the SLX's tasks to run; all tasks when omitted."
    )
    session_ttl: str | None = Field(
        default=None,
        alias="sessionTTL",
        max_length=common.MAX_DURATION_LENGTH,
        pattern=SESSION_TTL_PATTERN,
        description=(
            "How long the run session stays open: whole numbers with units ms, s, m or h (e.g. `20m`, "
            "`1h30m`)."
        ),
    )


class WorkflowAction(common.CRDModel):
    """One action of an activity."""

    tasks: WorkflowTasks = Field(description="Run tasks of an SLX.")


class FromActivity(common.CRDModel):
    """An activity that triggers the workflow, and what it does."""

    name: str = Field(
        min_length=1,
        max_length=common.MAX_OBJECT_NAME_LENGTH,
        description="Name of the activity trigger, unique within the workflow.",
    )
    display_name: str | None = Field(default=None, max_length=256, description="Human-readable name.")
    description: str | None = Field(default=None, max_length=4096, description="What the trigger is for.")
    match: ActivityMatch | None = Field(default=None, description="Which activities trigger the workflow.")
    actions: list[WorkflowAction] = Field(
        min_length=1, max_length=20, description="What to do when a matching activity occurs, in order."
    )


class WorkflowDefinition(common.CRDModel):
    """The definition of the workflow."""

    from_activities: list[FromActivity] = Field(
        min_length=1,
        max_length=50,
        description="Activity triggers of the workflow, keyed by name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class WorkflowSpec(common.WorkspaceParentSpec):
    """The desired state of a RunWhen workflow."""

    model_config = ConfigDict(
        json_schema_extra=common.validations(*common.WORKSPACE_PARENT_RULES, common.NAME_IMMUTABLE_RULE)
    )

    name: common.DnsLabel | None = Field(
        default=None,
        description=(
            "Name of the remote workflow (a DNS label). Defaults to metadata.name. Immutable: it can "
            "only be set at creation, or later to metadata.name."
        ),
    )
    definition: WorkflowDefinition = Field(description="The workflow's definition.")
    webhook_token_secret_ref: common.LocalObjectRef | None = Field(
        default=None,
        description=(
            "A Secret in the same namespace the operator writes the workflow's webhook token (key "
            f"`{WEBHOOK_SECRET_KEY_TOKEN}`) and URL (key `{WEBHOOK_SECRET_KEY_URL}`) into. The operator "
            "creates the Secret and owns it."
        ),
    )

    def remote_name(self, metadata_name: str) -> str:
        """The remote workflow's name: spec.name, or the resource's metadata.name."""
        return self.name or metadata_name


class WorkflowStatus(common.ManagedStatus):
    """The observed state of the workflow."""

    id: int | None = Field(default=None, description="Remote id of the workflow.")
    workspace: common.DnsLabel | None = Field(
        default=None, description="Name of the remote workspace the workflow is in."
    )
    webhook_token_secret: common.ObjectName | None = Field(
        default=None, description="Name of the Secret holding the webhook token, once written."
    )
    webhook_token_rotation: str | None = Field(
        default=None,
        max_length=256,
        description=(
            f"The value of the annotation {common.ANNOTATION_ROTATE_WEBHOOK_TOKEN} whose rotation was "
            "done last."
        ),
    )
