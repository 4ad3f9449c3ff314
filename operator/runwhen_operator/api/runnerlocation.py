"""``RunnerLocation``: a private runner location of a workspace, and the Secrets its runner mounts.

The ``runwhen-local`` Helm chart runs a workspace builder and a private runner in a cluster; both read
their credentials from two Secrets. The operator writes them (owned by the RunnerLocation when they
are in its namespace) and mirrors the health of the runner that registers for the location.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from runwhen_operator.api import common

__all__ = [
    "ANNOTATION_LOCATION",
    "ANNOTATION_OWNER",
    "ANNOTATION_WORKSPACE",
    "DEFAULT_RUNNER_TOKEN_SECRET",
    "DEFAULT_UPLOAD_INFO_SECRET",
    "LABEL_LOCATION",
    "RUNNER_HEALTH",
    "RUNNER_TOKEN_KEY",
    "UPLOAD_INFO_KEY",
    "RunnerLocationSpec",
    "RunnerLocationStatus",
]

#: The chart's Secret names and keys (runwhen-contrib/helm-charts, chart ``runwhen-local``).
DEFAULT_RUNNER_TOKEN_SECRET = "runner-registration-token"
RUNNER_TOKEN_KEY = "token"
DEFAULT_UPLOAD_INFO_SECRET = "uploadinfo"
UPLOAD_INFO_KEY = "uploadInfo.yaml"

#: On the Secrets the operator writes: who wrote them, for which workspace and location.
ANNOTATION_OWNER = f"{common.GROUP}/runnerlocation"
ANNOTATION_WORKSPACE = f"{common.GROUP}/workspace"
ANNOTATION_LOCATION = f"{common.GROUP}/location"
LABEL_LOCATION = f"{common.GROUP}/location"

#: A runner's health as RunWhen reports it.
RUNNER_HEALTH = ("online", "stale", "unknown")
RunnerHealth = Literal["online", "stale", "unknown"]

_LOCATION_RULES = (
    *common.WORKSPACE_PARENT_RULES,
    common.NAME_IMMUTABLE_RULE,
    common.cel(
        "has(self.secretNamespace) == has(oldSelf.secretNamespace)"
        " && (!has(self.secretNamespace) || self.secretNamespace == oldSelf.secretNamespace)",
        "spec.secretNamespace is immutable (it can be neither added nor removed): the Secrets "
        "already written would be left behind",
        field_path=".secretNamespace",
    ),
    common.cel(
        "!has(self.runnerTokenSecretName) || !has(self.uploadInfoSecretName)"
        " || self.runnerTokenSecretName != self.uploadInfoSecretName",
        "runnerTokenSecretName and uploadInfoSecretName must name two different Secrets",
        field_path=".uploadInfoSecretName",
    ),
)


class RunnerLocationSpec(common.CRDModel):
    """The desired state of a runner location."""

    model_config = ConfigDict(json_schema_extra=common.validations(*_LOCATION_RULES))

    connection_ref: common.ConnectionRef = Field(
        default_factory=common.ConnectionRef,
        description=(
            "The connection (RunWhen API endpoint and credentials) to use. When omitted, the "
            "ClusterRunWhenConnection named `default` is used. A RunWhenConnection is looked up in the "
            "namespace of this object. Reading a runner token needs admin permission on the workspace."
        ),
        json_schema_extra={"default": {}},
    )
    workspace_ref: common.LocalObjectRef | None = Field(
        default=None,
        description=(
            "A Workspace resource in the same namespace; the location waits until it is Ready and is "
            "added to the workspace's enabled locations. Exactly one of workspaceRef and workspaceName "
            "must be set, and the choice cannot be changed later."
        ),
    )
    workspace_name: common.DnsLabel | None = Field(
        default=None,
        description=(
            "Name of a remote workspace that is not managed by a Workspace resource (its enabled "
            "locations are left as they are). Exactly one of workspaceRef and workspaceName must be "
            "set, and the choice cannot be changed later."
        ),
    )
    name: common.DnsLabel | None = Field(
        default=None,
        description=(
            "Name of the runner location in RunWhen (a DNS label). Defaults to metadata.name. "
            "Immutable: it can only be set at creation, or later to metadata.name."
        ),
    )
    secret_namespace: common.DnsLabel | None = Field(
        default=None,
        description=(
            "Namespace of the two Secrets (where runwhen-local is installed). Defaults to the namespace "
            "of this object. Secrets in this object's namespace are owned by it (deleted with it); "
            "Secrets in another namespace are labelled but not owned, and stay when it is deleted. "
            "Immutable."
        ),
    )
    runner_token_secret_name: common.ObjectName = Field(
        default=DEFAULT_RUNNER_TOKEN_SECRET,
        description=(
            f"Name of the Secret with the runner's registration token (key `{RUNNER_TOKEN_KEY}`), as "
            "the runwhen-local chart mounts it."
        ),
    )
    upload_info_secret_name: common.ObjectName = Field(
        default=DEFAULT_UPLOAD_INFO_SECRET,
        description=(
            f"Name of the Secret with the workspace builder's upload configuration (key "
            f"`{UPLOAD_INFO_KEY}`), as the runwhen-local chart mounts it with "
            "`workspaceBuilder.uploadInfo.secretProvided`."
        ),
    )
    deletion_policy: common.DeletionPolicy = Field(
        default="Delete",
        description=(
            "What happens in RunWhen when this resource is deleted: `Delete` removes the location's "
            "runner registrations and the location from the enabled locations of a workspace managed "
            "by a Workspace resource; `Orphan` leaves both."
        ),
    )

    def remote_name(self, metadata_name: str) -> str:
        """The location's name: spec.name, or the resource's metadata.name."""
        return self.name or metadata_name


class RunnerLocationStatus(common.CRDModel):
    """The observed state of the runner location."""

    last_handled_configuration: str | None = common.last_handled_field()
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the status was computed for."
    )
    conditions: list[common.Condition] = common.conditions_field(
        "Conditions of the object: `Ready` is True when a runner of this location reports online; "
        "`Synced` reports whether the Secrets are written and the location is enabled. Reasons are "
        "CamelCase."
    )
    last_sync_time: common.Timestamp | None = Field(
        default=None,
        description="When the operator last changed something: a Secret, the workspace or this status.",
    )
    last_handled_reconcile_at: str | None = Field(
        default=None,
        max_length=256,
        description=(
            "The value of the platform.runwhen.com/reconcile-requested-at annotation that the "
            "operator last acted on."
        ),
    )
    workspace: common.DnsLabel | None = Field(
        default=None, description="Name of the remote workspace the location belongs to."
    )
    location: common.DnsLabel | None = Field(default=None, description="Name of the runner location.")
    location_enabled: bool | None = Field(
        default=None,
        description=(
            "The location is in the workspace's enabled locations (set only for a workspace managed by "
            "a Workspace resource)."
        ),
    )
    secret_namespace: common.DnsLabel | None = Field(
        default=None, description="Namespace of the Secrets, once written."
    )
    runner_token_secret: common.ObjectName | None = Field(
        default=None, description="Name of the Secret holding the runner's registration token, once written."
    )
    upload_info_secret: common.ObjectName | None = Field(
        default=None, description="Name of the Secret holding the upload configuration, once written."
    )
    token_rotation: str | None = Field(
        default=None,
        max_length=256,
        description=(
            f"The value of the annotation {common.ANNOTATION_ROTATE_RUNNER_TOKEN} whose rotation was "
            "done last."
        ),
    )
    runner_id: str | None = Field(
        default=None,
        max_length=common.MAX_OBJECT_NAME_LENGTH,
        description="Id of the runner registered for the location (RunWhen's `value`).",
    )
    runner_name: str | None = Field(
        default=None,
        max_length=common.MAX_OBJECT_NAME_LENGTH,
        description="Name of the runner registered for the location, as RunWhen shows it.",
    )
    health: RunnerHealth | None = Field(
        default=None,
        description=(
            "The runner's health as RunWhen reports it (online, stale, unknown); omitted while no "
            "runner has registered for the location."
        ),
    )
    last_heartbeat: common.Timestamp | None = Field(
        default=None, description="When the runner last reported to RunWhen."
    )
