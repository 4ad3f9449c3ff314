"""Names, building blocks and shared types of the ``platform.runwhen.com`` custom resources.

Every model here is a pydantic model whose fields carry camelCase aliases. A spec is parsed from a
custom resource body with ``WorkspaceSpec.model_validate(body["spec"])`` (field names work too), and a
status model serialises to exactly the dict to patch with
``status.model_dump(by_alias=True, exclude_none=True, mode="json")``.

The same models are the source of the CRD schemas (see ``runwhen_operator.crdgen``): the
``description`` of each field becomes the text of ``kubectl explain``, its constraints become OpenAPI
bounds, and ``x-kubernetes-*`` keys given through ``json_schema_extra`` are copied verbatim.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "ANNOTATION_PAUSED",
    "ANNOTATION_POLL_INTERVAL",
    "ANNOTATION_RECONCILE_REQUESTED_AT",
    "ANNOTATION_ROTATE_RUNNER_TOKEN",
    "ANNOTATION_ROTATE_WEBHOOK_TOKEN",
    "API_VERSION",
    "CATEGORY",
    "CONDITION_READY",
    "CONDITION_RECONCILING",
    "CONDITION_STALLED",
    "CONDITION_SYNCED",
    "DNS_LABEL_MAX_LENGTH",
    "DNS_LABEL_PATTERN",
    "DURATION_PATTERN",
    "FINALIZER",
    "GROUP",
    "MAX_CONDITIONS",
    "MAX_DURATION_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "MAX_OBJECT_NAME_LENGTH",
    "NAME_IMMUTABLE_RULE",
    "PAUSED_VALUES",
    "STATUS_LAST_HANDLED",
    "VERSION",
    "WORKSPACE_PARENT_RULES",
    "AdoptionPolicy",
    "CRDModel",
    "CelRule",
    "Condition",
    "ConditionStatus",
    "ConnectionKind",
    "ConnectionRef",
    "DeletionPolicy",
    "DnsLabel",
    "Duration",
    "FreeForm",
    "FreeValue",
    "LocalObjectRef",
    "ManagedSpec",
    "ManagedStatus",
    "ManagementPolicy",
    "ObjectName",
    "Timestamp",
    "WorkspaceParentSpec",
    "cel",
    "conditions_field",
    "format_duration",
    "format_timestamp",
    "last_handled_field",
    "parse_duration",
    "remote_name_root_rules",
    "truncate",
    "validations",
]

# --- names --------------------------------------------------------------------------------------

GROUP = "platform.runwhen.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "runwhen"

FINALIZER = f"{GROUP}/finalizer"
ANNOTATION_PAUSED = f"{GROUP}/paused"
ANNOTATION_POLL_INTERVAL = f"{GROUP}/poll-interval"
ANNOTATION_RECONCILE_REQUESTED_AT = f"{GROUP}/reconcile-requested-at"
#: On a Workflow: any new value rotates the webhook token (a new token is read into the Secret).
ANNOTATION_ROTATE_WEBHOOK_TOKEN = f"{GROUP}/rotate-webhook-token"
#: On a RunnerLocation: any new value reads a new runner token and upload configuration into its Secrets.
ANNOTATION_ROTATE_RUNNER_TOKEN = f"{GROUP}/rotate-runner-token"

CONDITION_READY = "Ready"
CONDITION_SYNCED = "Synced"
#: kstatus's abnormal-true conditions: work under way / needs a human. Present only while true.
CONDITION_RECONCILING = "Reconciling"
CONDITION_STALLED = "Stalled"
#: The values of the paused annotation that pause (the Argo CD health scripts accept the same ones:
#: they run without Lua's string library, so they cannot lower-case or trim).
PAUSED_VALUES = frozenset({"true", "True", "TRUE"})

# --- bounds -------------------------------------------------------------------------------------
# Every string and list in the schemas is bounded: the API server estimates the cost of each CEL rule
# from these bounds and rejects a CRD whose rules could exceed its budget. Status writers should
# truncate to these bounds (see ``truncate``) instead of failing the status update.

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_MAX_LENGTH = 63
MAX_OBJECT_NAME_LENGTH = 253
MAX_MESSAGE_LENGTH = 32768
MAX_CONDITIONS = 16
MAX_DURATION_LENGTH = 64

#: Go-style durations as the CRDs accept them: ``0`` or a sequence of decimal numbers with a unit
#: (``ns``, ``us``, ``ms``, ``s``, ``m``, ``h``), e.g. ``60s``, ``5m``, ``1h30m``, ``1.5h``.
DURATION_PATTERN = "^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$"

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek small letter mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(value: str) -> float:
    """Parse a Go-style duration (``"1h30m"``, ``"60s"``, ``"1.5h"``, ``"-5m"``, ``"0"``) into seconds.

    The grammar is Go's ``time.ParseDuration``: an optional sign, then one or more decimal numbers
    each followed by a unit (``ns``, ``us``/``µs``, ``ms``, ``s``, ``m``, ``h``); ``"0"`` alone needs
    no unit. Anything else raises ``ValueError``.
    """
    if not isinstance(value, str):
        raise ValueError(f"duration must be a string, not {type(value).__name__}")
    text = value.strip()
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f"invalid duration {value!r}")
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None or match.group(1) in ("", "."):
            raise ValueError(
                f"invalid duration {value!r}: expected numbers with units such as 30s, 5m or 1h30m"
            )
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Format seconds as a compact Go-style duration: ``5400`` -> ``"1h30m"``, ``0.5`` -> ``"500ms"``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    whole = int(seconds)
    fraction = seconds - whole
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs or fraction or not out:
        out += f"{round(secs + fraction, 3):g}s"
    return out


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with second precision (``2026-03-01T12:00:00Z``), as Kubernetes writes times.

    A naive datetime is taken to be UTC.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate(text: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """Cut ``text`` to at most ``limit`` characters, marking the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "\u2026"


# --- CEL validation rules -----------------------------------------------------------------------

CelRule = dict[str, str]


def cel(rule: str, message: str, *, field_path: str | None = None, reason: str | None = None) -> CelRule:
    """One ``x-kubernetes-validations`` entry.

    ``field_path`` (for example ``.spec.name``) tells the API server which field to blame, ``reason``
    is one of ``FieldValueInvalid`` (the default), ``FieldValueForbidden``, ``FieldValueRequired``,
    ``FieldValueDuplicate``.
    """
    entry: CelRule = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def validations(*rules: CelRule, **extra: Any) -> dict[str, Any]:
    """``json_schema_extra`` for a field or model carrying CEL rules (and any other extension keys)."""
    out: dict[str, Any] = {"x-kubernetes-validations": list(rules)} if rules else {}
    out.update(extra)
    return out


# --- shared types -------------------------------------------------------------------------------


class CRDModel(BaseModel):
    """Base of every custom resource model: camelCase aliases, field names accepted too.

    Unknown keys are ignored when parsing (the API server prunes them anyway), so that an operator
    reading an object written against a newer schema keeps working.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as it appears in a custom resource: camelCase keys, JSON types, no unset fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


#: A free-form JSON object. In the CRD it is ``type: object`` with
#: ``x-kubernetes-preserve-unknown-fields: true``; CEL rules cannot see inside it.
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

#: Any JSON value (an object, a list, a string, ...), for fields whose shape differs between the API
#: dialects. In the CRD it has no type and ``x-kubernetes-preserve-unknown-fields: true``.
FreeValue = Annotated[Any, WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]

#: A time as Kubernetes writes it (RFC 3339, UTC, seconds). Parsed from any ISO 8601 string.
Timestamp = Annotated[
    datetime,
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]

#: A DNS label (RFC 1123): lower-case alphanumerics and '-', at most 63 characters. Remote names of
#: workspaces, workflows and personas have this form.
DnsLabel = Annotated[str, Field(min_length=1, max_length=DNS_LABEL_MAX_LENGTH, pattern=DNS_LABEL_PATTERN)]

#: The name of a Kubernetes object (a DNS subdomain, at most 253 characters).
ObjectName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_OBJECT_NAME_LENGTH,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ),
]

#: A Go-style duration string (see ``DURATION_PATTERN`` and ``parse_duration``).
Duration = Annotated[str, Field(max_length=MAX_DURATION_LENGTH, pattern=DURATION_PATTERN)]

ConditionStatus = Literal["True", "False", "Unknown"]
ConnectionKind = Literal["ClusterRunWhenConnection", "RunWhenConnection"]
DeletionPolicy = Literal["Delete", "Orphan"]
AdoptionPolicy = Literal["FailIfExists", "Adopt"]
ManagementPolicy = Literal["Manage", "ObserveOnly"]


class LocalObjectRef(CRDModel):
    """A reference to another object in the same namespace."""

    name: ObjectName = Field(description="Name of the object, in the namespace of the referring object.")


class ConnectionRef(CRDModel):
    """Which connection (RunWhen API endpoint and credentials) to use."""

    kind: ConnectionKind = Field(
        default="ClusterRunWhenConnection",
        description=(
            "Kind of the connection: ClusterRunWhenConnection (cluster-scoped) or RunWhenConnection "
            "(in the namespace of the referring object)."
        ),
    )
    name: ObjectName = Field(default="default", description="Name of the connection object.")


_CONNECTION_REF_DESCRIPTION = (
    "The connection (RunWhen API endpoint and credentials) to manage this object with. When omitted, "
    "the ClusterRunWhenConnection named `default` is used. A RunWhenConnection is looked up in the "
    "namespace of this object."
)


class ManagedSpec(CRDModel):
    """Fields every managed kind (Workspace, Workflow, Persona) has."""

    connection_ref: ConnectionRef = Field(
        default_factory=ConnectionRef,
        description=_CONNECTION_REF_DESCRIPTION,
        json_schema_extra={"default": {}},
    )
    deletion_policy: DeletionPolicy = Field(
        default="Delete",
        description=(
            "What happens to the remote object when this resource is deleted: `Delete` deletes it, "
            "`Orphan` leaves it in RunWhen."
        ),
    )
    adoption_policy: AdoptionPolicy = Field(
        default="FailIfExists",
        description=(
            "What to do when a remote object of the same name already exists and this resource has not "
            "created it: `FailIfExists` reports a conflict and never touches it, `Adopt` takes it over "
            "(and from then on reconciles it to this spec)."
        ),
    )
    management_policy: ManagementPolicy = Field(
        default="Manage",
        description=(
            "`Manage` creates, updates and deletes the remote object to match this spec. `ObserveOnly` "
            "never writes to RunWhen: it only reports the remote object's state in the status (the "
            "remote object must exist; deletionPolicy is ignored)."
        ),
    )


_WORKSPACE_REF_DESCRIPTION = (
    "A Workspace resource in the same namespace that manages the remote workspace; the object waits "
    "until that Workspace is Ready. Exactly one of workspaceRef and workspaceName must be set, and the "
    "choice cannot be changed later."
)
_WORKSPACE_NAME_DESCRIPTION = (
    "Name of a remote workspace that is not managed by a Workspace resource. Exactly one of "
    "workspaceRef and workspaceName must be set, and the choice cannot be changed later."
)

#: CEL rules of a spec with a workspace parent: exactly one parent, and the parent is immutable.
WORKSPACE_PARENT_RULES: tuple[CelRule, ...] = (
    cel(
        "has(self.workspaceRef) != has(self.workspaceName)",
        "exactly one of workspaceRef or workspaceName must be set",
    ),
    cel(
        "has(self.workspaceRef) == has(oldSelf.workspaceRef)"
        " && has(self.workspaceName) == has(oldSelf.workspaceName)"
        " && (!has(self.workspaceRef) || self.workspaceRef.name == oldSelf.workspaceRef.name)"
        " && (!has(self.workspaceName) || self.workspaceName == oldSelf.workspaceName)",
        "the workspace (workspaceRef or workspaceName) is immutable: changing it would orphan the "
        "remote object; create a new object instead",
    ),
)


#: CEL rule on a spec with a ``name`` field (the remote name): once set it cannot change or be removed.
NAME_IMMUTABLE_RULE = cel(
    "!has(oldSelf.name) || (has(self.name) && self.name == oldSelf.name)",
    "spec.name is immutable: it names the remote object; create a new object instead",
    field_path=".name",
)


def remote_name_root_rules(kind: str) -> tuple[CelRule, ...]:
    """Root-level CEL rules of a kind whose ``spec.name`` defaults to ``metadata.name``.

    ``self.metadata.name`` is only visible to rules on the root of the schema. The rules: a
    ``spec.name`` added after creation must equal metadata.name (the remote name already in use),
    and without a ``spec.name`` metadata.name itself must be a valid remote name.
    """
    return (
        cel(
            "has(oldSelf.spec.name) || !has(self.spec.name) || self.spec.name == self.metadata.name",
            "spec.name can only be added after creation if it equals metadata.name (the remote name "
            "already in use)",
            field_path=".spec.name",
        ),
        cel(
            f"has(self.spec.name) || (size(self.metadata.name) <= {DNS_LABEL_MAX_LENGTH}"
            f" && self.metadata.name.matches('{DNS_LABEL_PATTERN}'))",
            f"metadata.name is not a valid remote {kind} name (a DNS label of at most "
            f"{DNS_LABEL_MAX_LENGTH} characters): set spec.name",
            field_path=".spec.name",
            reason="FieldValueRequired",
        ),
    )


class WorkspaceParentSpec(ManagedSpec):
    """A managed kind that lives in a remote workspace (Workflow, Persona)."""

    workspace_ref: LocalObjectRef | None = Field(default=None, description=_WORKSPACE_REF_DESCRIPTION)
    workspace_name: DnsLabel | None = Field(default=None, description=_WORKSPACE_NAME_DESCRIPTION)

    @model_validator(mode="after")
    def _exactly_one_workspace(self) -> WorkspaceParentSpec:
        if (self.workspace_ref is None) == (self.workspace_name is None):
            raise ValueError("exactly one of workspaceRef or workspaceName must be set")
        return self


# --- status -------------------------------------------------------------------------------------


class Condition(CRDModel):
    """An observation of one aspect of the object (the shape of `metav1.Condition`)."""

    type: str = Field(
        min_length=1,
        max_length=316,
        pattern=(
            r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        ),
        description=(
            "Type of the condition, in CamelCase: `Ready` (in sync and usable) or `Synced` (the last "
            "reconciliation succeeded); a WorkflowRun has `Complete` and `Failed`."
        ),
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="A CamelCase, machine-readable reason for the last transition.",
    )
    message: str = Field(
        default="",
        max_length=MAX_MESSAGE_LENGTH,
        description="A human-readable message with details about the last transition.",
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the condition was set for.",
    )
    last_transition_time: Timestamp = Field(
        description="When the condition last changed from one status to another.",
    )


_CONDITIONS_DESCRIPTION = (
    "Conditions of the object: `Ready` is True only when the remote object matches the spec (kstatus and "
    "Flux compatible); `Synced` reports whether the last reconciliation succeeded. Reasons are CamelCase."
)


def conditions_field(description: str = _CONDITIONS_DESCRIPTION) -> Any:
    """A ``conditions`` field: a list keyed by ``type``."""
    return Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        description=description,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


#: Where Kopf keeps the spec, labels and annotations it last handled (its diff base): in status, so
#: that a handled change is one status write with the operator's own fields.
STATUS_LAST_HANDLED = "lastHandledConfiguration"
#: An object is at most about 1.5 MiB in etcd: its diff base cannot be longer than this.
MAX_LAST_HANDLED_LENGTH = 1_572_864


def last_handled_field() -> Any:
    return Field(
        default=None,
        max_length=MAX_LAST_HANDLED_LENGTH,
        description=(
            "The spec, labels and annotations the operator last handled, as JSON (Kopf's diff base: "
            "a change to any of them is handled once). Written together with the rest of the status."
        ),
    )


class ManagedStatus(CRDModel):
    """Status fields every managed kind has."""

    last_handled_configuration: str | None = last_handled_field()

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the status was computed for."
    )
    conditions: list[Condition] = conditions_field()
    last_sync_time: Timestamp | None = Field(
        default=None,
        description=(
            "When the operator last changed something: the remote object or this status. A quiet "
            "resync that finds everything in sync does not move it (it writes nothing at all)."
        ),
    )
    last_handled_reconcile_at: str | None = Field(
        default=None,
        max_length=256,
        description=(
            "The value of the platform.runwhen.com/reconcile-requested-at annotation that the "
            "operator last acted on (a fresh read of the remote object, bypassing any cache)."
        ),
    )
    create_pending: bool | None = Field(
        default=None,
        description=(
            "A create request was sent to RunWhen and its outcome is not known yet. Until it is, the "
            "operator looks for the remote object instead of creating it again, so that it is never "
            "created twice."
        ),
    )

    def condition(self, type_: str) -> Condition | None:
        """The condition of the given type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)
