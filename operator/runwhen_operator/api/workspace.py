"""``Workspace``: a RunWhen workspace, its monitoring, health and open issues."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from runwhen_operator.api import common

__all__ = [
    "MAX_HEALTH_DETAILS",
    "MAX_HEALTH_METRICS",
    "MAX_ISSUE_TITLE_LENGTH",
    "MAX_TOP_ISSUES",
    "HealthDetail",
    "HealthState",
    "IssueCounts",
    "IssueSummary",
    "IssuesMonitoring",
    "Monitoring",
    "OpenIssues",
    "WorkspaceHealth",
    "WorkspaceSpec",
    "WorkspaceStatus",
    "WorkspaceStatusFlags",
]

MAX_HEALTH_DETAILS = 50
MAX_HEALTH_METRICS = 100
MAX_TOP_ISSUES = 100
MAX_ISSUE_TITLE_LENGTH = 1024
MAX_SHORT_TEXT = 4096

HealthState = Literal["Healthy", "Degraded", "Unhealthy", "Unknown"]

_MIN_INTERVAL = "2s"
_MAX_INTERVAL = "24h"


class IssuesMonitoring(common.CRDModel):
    """Which open issues to summarise in the status."""

    max_listed: int = Field(
        default=10, ge=0, le=100, description="How many open issues to list in status.openIssues.top."
    )
    max_severity: int = Field(
        default=4,
        ge=1,
        le=4,
        description=(
            "Least severe issue to count and list: 1 critical, 2 major, 3 minor, 4 warning (so 4 counts "
            "every issue and 2 only critical and major ones)."
        ),
    )


class Monitoring(common.CRDModel):
    """How the operator watches the workspace's health and issues."""

    interval: common.Duration = Field(
        default="60s",
        description=(
            "How often to refresh status.health and status.openIssues, as a Go duration "
            f"(`60s`, `5m`, `1h30m`); between {_MIN_INTERVAL} and {_MAX_INTERVAL}."
        ),
        json_schema_extra=common.validations(
            common.cel(
                f"!self.matches('{common.DURATION_PATTERN}')"
                f" || (duration(self) >= duration('{_MIN_INTERVAL}')"
                f" && duration(self) <= duration('{_MAX_INTERVAL}'))",
                f"monitoring.interval must be between {_MIN_INTERVAL} and {_MAX_INTERVAL}",
            )
        ),
    )
    include_details: bool = Field(
        default=True, description="Copy the per-component health details into status.health.details."
    )
    include_metrics: bool = Field(
        default=False, description="Copy the workspace's health metrics into status.health.metrics."
    )
    issues: IssuesMonitoring = Field(
        default_factory=IssuesMonitoring,
        description="Which open issues to summarise in status.openIssues.",
        json_schema_extra={"default": {}},
    )

    @property
    def interval_seconds(self) -> float:
        """The interval in seconds."""
        return common.parse_duration(self.interval)


class WorkspaceSpec(common.ManagedSpec):
    """The desired state of a RunWhen workspace."""

    model_config = ConfigDict(json_schema_extra=common.validations(common.NAME_IMMUTABLE_RULE))

    name: common.DnsLabel | None = Field(
        default=None,
        description=(
            "Name of the remote workspace (a DNS label, at most 63 characters). Defaults to "
            "metadata.name. Immutable: it can only be set at creation, or later to metadata.name."
        ),
    )
    display_name: str | None = Field(
        default=None, max_length=256, description="Human-readable name shown in the RunWhen UI."
    )
    enabled_locations: (
        list[Annotated[str, Field(min_length=1, max_length=common.MAX_OBJECT_NAME_LENGTH)]] | None
    ) = Field(
        default=None,
        max_length=64,
        description="Names of the RunWhen runner locations the workspace may run tasks in.",
    )
    config_provided: common.FreeValue | None = Field(
        default=None,
        description=(
            "Workspace configuration, passed to RunWhen as `configProvided`: a map (`{name: value}`, "
            "sent to the platform API as its list of `{name, value}` objects) or that list itself."
        ),
    )
    slx_groups: common.FreeValue | None = Field(
        default=None,
        description=(
            "Grouping of the workspace's SLXs, passed as `slxGroups`: a map (`{group: [slx, ...]}`, sent "
            "to the platform API as a list of `{name, slxs}` objects) or the platform's list of group "
            "objects itself."
        ),
    )
    monitoring: Monitoring = Field(
        default_factory=Monitoring,
        description="How the operator reports the workspace's health and open issues in the status.",
        json_schema_extra={"default": {}},
    )
    deletion_policy: common.DeletionPolicy = Field(
        default="Orphan",
        description=(
            "What happens to the remote workspace when this resource is deleted: `Orphan` (the default) "
            "leaves it in RunWhen, `Delete` deletes it, which cascades irreversibly to its workflows, "
            "personas, run sessions and issues."
        ),
    )

    def remote_name(self, metadata_name: str) -> str:
        """The remote workspace's name: spec.name, or the resource's metadata.name."""
        return self.name or metadata_name


class HealthDetail(common.CRDModel):
    """The health of one component of the workspace."""

    component: str = Field(max_length=common.MAX_OBJECT_NAME_LENGTH, description="Name of the component.")
    status: str = Field(max_length=64, description="Health of the component as RunWhen reports it.")
    message: str = Field(default="", max_length=MAX_SHORT_TEXT, description="Details about the component.")


class WorkspaceHealth(common.CRDModel):
    """The workspace's health as RunWhen reports it."""

    state: HealthState = Field(description="Overall health: Healthy, Degraded, Unhealthy or Unknown.")
    checked_at: common.Timestamp | None = Field(
        default=None, description="When RunWhen last checked the workspace's health."
    )
    reason: str | None = Field(
        default=None, max_length=1024, description="A CamelCase reason for the state, when not Healthy."
    )
    message: str | None = Field(
        default=None, max_length=MAX_SHORT_TEXT, description="A human-readable summary of the details."
    )
    details: list[HealthDetail] | None = Field(
        default=None,
        max_length=MAX_HEALTH_DETAILS,
        description=(
            f"Health of each component (at most {MAX_HEALTH_DETAILS}); only with "
            "spec.monitoring.includeDetails."
        ),
    )
    metrics: dict[str, float] | None = Field(
        default=None,
        max_length=MAX_HEALTH_METRICS,
        description="Health metrics by name; only with spec.monitoring.includeMetrics.",
    )


class WorkspaceStatusFlags(common.CRDModel):
    """The workspace's status flags as RunWhen reports them."""

    workspace: bool = Field(description="The workspace is provisioned and usable.")
    sync: bool = Field(description="The workspace's configuration is in sync on the RunWhen side.")


class IssueCounts(common.CRDModel):
    """Open issues by severity."""

    critical: int = Field(default=0, ge=0, description="Open issues of severity 1 (critical).")
    major: int = Field(default=0, ge=0, description="Open issues of severity 2 (major).")
    minor: int = Field(default=0, ge=0, description="Open issues of severity 3 (minor).")
    warning: int = Field(default=0, ge=0, description="Open issues of severity 4 (warning).")


class IssueSummary(common.CRDModel):
    """One open issue."""

    id: int = Field(description="Remote id of the issue.")
    title: str = Field(max_length=MAX_ISSUE_TITLE_LENGTH, description="Title of the issue.")
    severity: int | None = Field(
        default=None,
        ge=1,
        le=4,
        description="Severity: 1 critical, 2 major, 3 minor, 4 warning; omitted when RunWhen gives none.",
    )
    slx_name: str | None = Field(
        default=None, max_length=common.MAX_OBJECT_NAME_LENGTH, description="The SLX that raised the issue."
    )
    open_since: common.Timestamp | None = Field(default=None, description="When the issue was opened.")


class OpenIssues(common.CRDModel):
    """A summary of the workspace's open issues (up to spec.monitoring.issues.maxSeverity)."""

    count: int = Field(ge=0, description="Number of open issues.")
    by_severity: IssueCounts = Field(
        default_factory=IssueCounts, description="Number of open issues by severity."
    )
    top: list[IssueSummary] = Field(
        default_factory=list,
        max_length=MAX_TOP_ISSUES,
        description="The most severe (then oldest) open issues, at most spec.monitoring.issues.maxListed.",
    )


class WorkspaceStatus(common.ManagedStatus):
    """The observed state of the workspace."""

    remote_name: common.DnsLabel | None = Field(
        default=None, description="Name of the remote workspace this resource manages."
    )
    health: WorkspaceHealth | None = Field(default=None, description="The workspace's health.")
    workspace_status: WorkspaceStatusFlags | None = Field(
        default=None, description="The workspace's status flags as RunWhen reports them."
    )
    open_issues: OpenIssues | None = Field(default=None, description="A summary of the open issues.")
