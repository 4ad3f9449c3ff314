"""The registry of custom resource kinds: names, scope, models, printer columns, examples.

``KINDS`` lists every kind in a stable order; ``by_kind("Workspace")`` and ``by_plural("workspaces")``
look one up. The CRD generator and the operator both read this registry, so a kind's names are defined
exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from runwhen_operator.api import (
    common,
    connection,
    persona,
    runnerlocation,
    workflow,
    workflowrun,
    workspace,
)

__all__ = [
    "DEPENDENTS",
    "KINDS",
    "OPERATOR_VERBS",
    "USES_CONNECTION",
    "KindInfo",
    "PrinterColumn",
    "Scope",
    "by_kind",
    "by_plural",
    "dependents_of",
]

Scope = Literal["Cluster", "Namespaced"]

#: What the operator does with the objects of a kind (its RBAC): read and watch them, patch their
#: metadata (Kopf's finalizer), their status and its subresources.
OPERATOR_VERBS = ("get", "list", "watch", "patch", "update")


@dataclass(frozen=True)
class PrinterColumn:
    """An ``additionalPrinterColumns`` entry (what ``kubectl get`` shows)."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            out["priority"] = self.priority
        return out


@dataclass(frozen=True)
class KindInfo:
    """Everything about one kind that is not in its spec and status models."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    scope: Scope
    description: str
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    printer_columns: tuple[PrinterColumn, ...]
    #: ``spec`` must be given (otherwise it defaults to ``{}``).
    spec_required: bool = True
    #: CEL rules on the root of the schema, where ``self.metadata.name`` is visible.
    root_validations: tuple[common.CelRule, ...] = ()
    #: A valid example object (without namespace), for documentation and tests.
    example: dict[str, Any] = field(default_factory=dict)
    #: (the parent kind, the spec field that names it): the object waits for its parent, and is
    #: woken when the parent's readiness changes (a Kopf index of the field).
    parent: tuple[str, str] | None = None
    #: The object reaches RunWhen through a connection (``spec.connectionRef``).
    uses_connection: bool = False
    #: Verbs beyond OPERATOR_VERBS the operator needs on the kind (WorkflowRun: delete, for its TTL).
    extra_verbs: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return common.GROUP

    @property
    def version(self) -> str:
        return common.VERSION

    @property
    def api_version(self) -> str:
        return common.API_VERSION

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def crd_name(self) -> str:
        """The CRD's name, the fully qualified resource name (``workspaces.platform.runwhen.com``)."""
        return f"{self.plural}.{common.GROUP}"

    @property
    def namespaced(self) -> bool:
        return self.scope == "Namespaced"

    @property
    def categories(self) -> tuple[str, ...]:
        return (common.CATEGORY,)

    @property
    def verbs(self) -> tuple[str, ...]:
        return OPERATOR_VERBS + self.extra_verbs


def _condition_column(type_: str, description: str) -> PrinterColumn:
    return PrinterColumn(type_, "string", f'.status.conditions[?(@.type=="{type_}")].status', description)


_READY = _condition_column(common.CONDITION_READY, "The remote object matches the spec.")
_SYNCED = _condition_column(common.CONDITION_SYNCED, "The last reconciliation succeeded.")
_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since the object was created.")
_CONNECTION_READY = _condition_column(
    common.CONDITION_READY, "The credentials were read and the RunWhen API accepted them."
)
_URL = PrinterColumn("URL", "string", ".spec.url", "Base URL of the RunWhen API.")
_DIALECT = PrinterColumn(
    "Dialect",
    "string",
    ".status.apiDialect",
    "The shape of the API the server speaks (Platform, Documented).",
)
_WORKSPACE = PrinterColumn("Workspace", "string", ".status.workspace", "The remote workspace.")
_REMOTE_ID = PrinterColumn("Remote ID", "integer", ".status.id", "Remote id of the object.")

_URL_EXAMPLE = "https://papi.example.runwhen.com"

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        kind="ClusterRunWhenConnection",
        plural="clusterrunwhenconnections",
        singular="clusterrunwhenconnection",
        short_names=("rwcconn",),
        scope="Cluster",
        description=(
            "A cluster-wide connection to a RunWhen platform API: its URL, the Secret with the "
            "credentials, and client settings. Workspaces, workflows and personas use the "
            "ClusterRunWhenConnection named `default` unless their spec.connectionRef names another."
        ),
        spec_model=connection.ClusterConnectionSpec,
        status_model=connection.ConnectionStatus,
        printer_columns=(_URL, _DIALECT, _CONNECTION_READY, _AGE),
        example={
            "apiVersion": common.API_VERSION,
            "kind": "ClusterRunWhenConnection",
            "metadata": {"name": "default"},
            "spec": {
                "url": _URL_EXAMPLE,
                "credentialsSecretRef": {"name": "runwhen-credentials", "namespace": "runwhen-system"},
            },
        },
    ),
    KindInfo(
        kind="RunWhenConnection",
        plural="runwhenconnections",
        singular="runwhenconnection",
        short_names=("rwconn",),
        scope="Namespaced",
        description=(
            "A connection to a RunWhen platform API for the objects of one namespace: its URL, the "
            "Secret (in the same namespace) with the credentials, and client settings. Objects use it "
            "with spec.connectionRef: {kind: RunWhenConnection, name: ...}."
        ),
        spec_model=connection.ConnectionSpec,
        status_model=connection.ConnectionStatus,
        printer_columns=(_URL, _DIALECT, _CONNECTION_READY, _AGE),
        example={
            "apiVersion": common.API_VERSION,
            "kind": "RunWhenConnection",
            "metadata": {"name": "team-a"},
            "spec": {
                "url": _URL_EXAMPLE,
                "credentialsSecretRef": {"name": "runwhen-credentials"},
                "rateLimit": {"requestsPerSecond": 5, "burst": 10},
            },
        },
    ),
    KindInfo(
        kind="Workspace",
        plural="workspaces",
        singular="workspace",
        short_names=("rwws",),
        scope="Namespaced",
        description=(
            "A RunWhen workspace. The operator creates it (or adopts it, with adoptionPolicy Adopt), "
            "keeps it in line with the spec, and reports its health and open issues in the status. "
            "Deleting the resource leaves the remote workspace in place unless deletionPolicy is Delete."
        ),
        spec_model=workspace.WorkspaceSpec,
        status_model=workspace.WorkspaceStatus,
        printer_columns=(
            _READY,
            _SYNCED,
            PrinterColumn("Health", "string", ".status.health.state", "Health of the workspace."),
            PrinterColumn("Open Issues", "integer", ".status.openIssues.count", "Number of open issues."),
            _AGE,
        ),
        spec_required=False,
        root_validations=common.remote_name_root_rules("workspace"),
        uses_connection=True,
        example={
            "apiVersion": common.API_VERSION,
            "kind": "Workspace",
            "metadata": {"name": "team-a"},
            "spec": {
                "displayName": "Team A",
                "enabledLocations": ["location-01-us-west1"],
                "monitoring": {"interval": "5m", "issues": {"maxListed": 5, "maxSeverity": 2}},
            },
        },
    ),
    KindInfo(
        kind="Workflow",
        plural="workflows",
        singular="workflow",
        short_names=("rwwf",),
        scope="Namespaced",
        description=(
            "A RunWhen workflow: activities in a workspace that trigger tasks run by a persona. Use the "
            "fully qualified name workflows.platform.runwhen.com (or the short name rwwf) in kubectl: "
            "`Workflow` is also an Argo Workflows kind."
        ),
        spec_model=workflow.WorkflowSpec,
        status_model=workflow.WorkflowStatus,
        printer_columns=(_WORKSPACE, _READY, _SYNCED, _REMOTE_ID, _AGE),
        root_validations=common.remote_name_root_rules("workflow"),
        parent=("Workspace", "workspaceRef"),
        uses_connection=True,
        example={
            "apiVersion": common.API_VERSION,
            "kind": "Workflow",
            "metadata": {"name": "restart-on-alert"},
            "spec": {
                "workspaceRef": {"name": "team-a"},
                "definition": {
                    "fromActivities": [
                        {
                            "name": "on-alert",
                            "displayName": "On alert",
                            "description": "Run the triage tasks when the checkout SLX alerts.",
                            "match": {"activityVerbs": ["alert"], "slxs": ["checkout-health"]},
                            "actions": [
                                {
                                    "tasks": {
                                        "slx": "checkout-health",
                                        "persona": "eager-edgar",
                                        "titles": ["Check deployment health"],
                                        "sessionTTL": "20m",
                                    }
                                }
                            ],
                        }
                    ]
                },
                "webhookTokenSecretRef": {"name": "restart-on-alert-webhook"},
            },
        },
    ),
    KindInfo(
        kind="Persona",
        plural="personas",
        singular="persona",
        short_names=("rwp",),
        scope="Namespaced",
        description=(
            "A RunWhen persona: the filters and run settings of an AI assistant in a workspace. Fields "
            "left unset keep the server's defaults."
        ),
        spec_model=persona.PersonaSpec,
        status_model=persona.PersonaStatus,
        printer_columns=(_WORKSPACE, _READY, _SYNCED, _REMOTE_ID, _AGE),
        root_validations=common.remote_name_root_rules("persona"),
        parent=("Workspace", "workspaceRef"),
        uses_connection=True,
        example={
            "apiVersion": common.API_VERSION,
            "kind": "Persona",
            "metadata": {"name": "eager-edgar"},
            "spec": {
                "workspaceRef": {"name": "team-a"},
                "fullName": "Eager Edgar",
                "description": "Runs troubleshooting tasks eagerly.",
                "filterConfidenceThreshold": 0.6,
                "filterIssueSelectionStrategy": "MOST_SEVERE",
                "filterStopWords": ["the", "a"],
                "runConfidenceThreshold": 0.9,
            },
        },
    ),
    KindInfo(
        kind="WorkflowRun",
        plural="workflowruns",
        singular="workflowrun",
        short_names=("rwrun",),
        scope="Namespaced",
        description=(
            "One run of a RunWhen workflow. The operator starts at most one run for it, even across "
            "restarts, and follows it until it finishes; the spec is immutable."
        ),
        spec_model=workflowrun.WorkflowRunSpec,
        status_model=workflowrun.WorkflowRunStatus,
        printer_columns=(
            PrinterColumn("Workflow", "string", ".spec.workflowRef.name", "The Workflow resource run."),
            PrinterColumn("Phase", "string", ".status.phase", "Where the run is."),
            _AGE,
            PrinterColumn("Finished", "date", ".status.completedAt", "Time since the run finished."),
        ),
        parent=("Workflow", "workflowRef"),
        uses_connection=True,
        extra_verbs=("delete",),
        example={
            "apiVersion": common.API_VERSION,
            "kind": "WorkflowRun",
            "metadata": {"name": "restart-on-alert-manual"},
            "spec": {
                "workflowRef": {"name": "restart-on-alert"},
                "context": {"reason": "manual test", "alert": {"severity": 2}},
                "ttlSecondsAfterFinished": 3600,
            },
        },
    ),
    KindInfo(
        kind="RunnerLocation",
        plural="runnerlocations",
        singular="runnerlocation",
        short_names=("rwloc",),
        scope="Namespaced",
        description=(
            "A private runner location of a RunWhen workspace. The operator writes the two Secrets the "
            "runwhen-local Helm chart mounts (the runner's registration token and the workspace "
            "builder's upload configuration), enables the location in a workspace managed by a "
            "Workspace resource, and reports the health of the runner that registers for it: Ready "
            "means a runner of this location reports online."
        ),
        spec_model=runnerlocation.RunnerLocationSpec,
        status_model=runnerlocation.RunnerLocationStatus,
        printer_columns=(
            _WORKSPACE,
            PrinterColumn("Location", "string", ".status.location", "The runner location."),
            _condition_column(common.CONDITION_READY, "A runner of this location reports online."),
            _SYNCED,
            PrinterColumn("Health", "string", ".status.health", "The runner's health."),
            _AGE,
        ),
        root_validations=common.remote_name_root_rules("location"),
        parent=("Workspace", "workspaceRef"),
        uses_connection=True,
        example={
            "apiVersion": common.API_VERSION,
            "kind": "RunnerLocation",
            "metadata": {"name": "location-01"},
            "spec": {"workspaceRef": {"name": "team-a"}, "secretNamespace": "runwhen-local"},
        },
    ),
)

_BY_KIND = {k.kind: k for k in KINDS}
_BY_PLURAL = {k.plural: k for k in KINDS}

#: (kind, its parent's reference field) of every kind that has a parent.
DEPENDENTS: tuple[tuple[str, str], ...] = tuple((k.kind, k.parent[1]) for k in KINDS if k.parent)
#: The kinds whose objects use a connection.
USES_CONNECTION: tuple[str, ...] = tuple(k.kind for k in KINDS if k.uses_connection)


def dependents_of(parent: str) -> tuple[tuple[str, str], ...]:
    """(kind, reference field) of the kinds whose objects name a ``parent`` object."""
    return tuple((k.kind, k.parent[1]) for k in KINDS if k.parent and k.parent[0] == parent)


def by_kind(kind: str) -> KindInfo:
    """The kind named ``kind`` (e.g. ``"Workspace"``); ``KeyError`` if unknown."""
    return _BY_KIND[kind]


def by_plural(plural: str) -> KindInfo:
    """The kind whose plural resource name is ``plural`` (e.g. ``"workspaces"``); ``KeyError`` if unknown."""
    return _BY_PLURAL[plural]
