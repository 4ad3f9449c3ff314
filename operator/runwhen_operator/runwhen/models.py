"""Pydantic models of the RunWhen API v3 wire format (what the server answers).

Fields have snake_case names and camelCase aliases. Unknown fields the server sends are kept
(``extra="allow"``), and ``wire()`` gives back the camelCase dict as received, so that a newer server's
fields survive a read-modify-write. Request bodies are plain camelCase mappings built by the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

__all__ = [
    "ActivityMatch",
    "HealthDetail",
    "Issue",
    "Page",
    "Persona",
    "RunSession",
    "WebhookToken",
    "WireModel",
    "Workflow",
    "WorkflowAction",
    "WorkflowActivity",
    "WorkflowDefinition",
    "WorkflowRun",
    "WorkflowTasks",
    "Workspace",
    "WorkspaceHealth",
    "WorkspaceStatus",
    "parse_time",
]


def parse_time(value: Any) -> datetime | None:
    """A datetime or ISO 8601 text (``Z`` or an offset) as an aware datetime, naive ones taken as UTC;
    None when empty or unreadable. The one parser of times read from servers and from statuses."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class WireModel(BaseModel):
    """Base of every wire model: camelCase aliases, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        frozen=False,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the server sent it: camelCase keys, JSON types, only the fields received."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Page(WireModel):
    """One page of a list: ``{count, next, previous, results}``."""

    count: int | None = None
    next: str | None = None
    previous: str | None = None
    results: list[dict[str, Any]] = Field(default_factory=list)


# --- workspaces ---------------------------------------------------------------------------------


class Workspace(WireModel):
    name: str
    display_name: str = ""
    owner: Any = None
    config_provided: dict[str, Any] = Field(default_factory=dict)
    secrets_provided: dict[str, Any] = Field(default_factory=dict)
    enabled_locations: list[str] = Field(default_factory=list)
    slx_groups: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class WorkspaceStatus(WireModel):
    workspace: bool
    sync: bool


class HealthDetail(WireModel):
    component: str
    status: str
    message: str = ""


class WorkspaceHealth(WireModel):
    """``status`` is one of ``healthy``, ``degraded``, ``unhealthy``, ``unknown`` (kept as a string
    so that a new state from the server does not break parsing)."""

    workspace: str
    status: str
    checked_at: datetime | None = None
    details: list[HealthDetail] | None = None
    metrics: dict[str, float] | None = None


class Issue(WireModel):
    """``severity``: 1 critical, 2 major, 3 minor, 4 warning; the platform may leave it and the title
    null."""

    id: int
    title: str | None = ""
    severity: int | None = None
    slx_name: str | None = None
    open_since: datetime | None = None
    open_occurrence_count: int | None = None
    closed: bool = False


# --- workflows ----------------------------------------------------------------------------------


class WorkflowTasks(WireModel):
    slx: str | None = None
    persona: str | None = None
    titles: list[str] = Field(default_factory=list)
    session_ttl: str | None = Field(default=None, alias="sessionTTL")


class WorkflowAction(WireModel):
    tasks: WorkflowTasks | None = None


class ActivityMatch(WireModel):
    activity_verbs: list[str] = Field(default_factory=list)
    slxs: list[str] = Field(default_factory=list)


class WorkflowActivity(WireModel):
    name: str
    display_name: str = ""
    description: str = ""
    match: ActivityMatch | None = None
    actions: list[WorkflowAction] = Field(default_factory=list)


class WorkflowDefinition(WireModel):
    from_activities: list[WorkflowActivity] = Field(default_factory=list)


class Workflow(WireModel):
    id: int
    name: str
    definition: WorkflowDefinition = Field(default_factory=WorkflowDefinition)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class WorkflowRun(WireModel):
    """A triggered run: ``status`` moves ``queued -> started -> completed | completed_with_errors |
    failed`` (or ``canceled``)."""

    id: int
    workflow_id: int | None = None
    workflow_name: str | None = None
    run_session_id: int | None = None
    status: str
    status_message: str | None = None
    triggered_by: Any = None
    context: dict[str, Any] = Field(default_factory=dict)
    queued_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    canceled_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class WebhookToken(WireModel):
    """The webhook token of a workflow. ``token`` is a secret: read it with ``get_secret_value()``;
    neither it nor the ``webhook_url`` that embeds it shows in ``repr()``/``str()``. ``wire()``
    reveals both (it is the object as received)."""

    token: SecretStr
    webhook_url: str | None = None

    def __repr_args__(self) -> Any:
        # The webhook URL embeds the token: mask it there too.
        secret = self.token.get_secret_value()
        for name, value in super().__repr_args__():
            if secret and isinstance(value, str) and secret in value:
                yield name, value.replace(secret, "**********")
            else:
                yield name, value

    def wire(self) -> dict[str, Any]:
        data = super().wire()
        data["token"] = self.token.get_secret_value()
        return data


# --- personas -----------------------------------------------------------------------------------


class Persona(WireModel):
    """Every optional field may be null (a server that never set it)."""

    id: int
    name: str
    full_name: str | None = ""
    description: str | None = ""
    avatar_url: str | None = None
    filter_confidence_threshold: float | None = None
    filter_issue_selection_strategy: str | None = None
    filter_codebundle_task_tags: list[str] | None = Field(default_factory=list)
    filter_stop_words: list[str] | None = Field(default_factory=list)
    filter_scope: Any = Field(default_factory=dict)
    search_filters: dict[str, Any] | None = Field(default_factory=dict)
    run_confidence_threshold: float | None = None
    run_config: dict[str, Any] | None = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


# --- run sessions -------------------------------------------------------------------------------


class RunSession(WireModel):
    """``source`` is one of ``user``, ``alert``, ``slack``, ``workflow``, ``api``."""

    id: int
    workspace: str | None = None
    source: str | None = None
    is_active: bool | None = None
    status: str | None = None
    workflow_id: int | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    run_requests: list[Any] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
