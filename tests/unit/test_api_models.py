"""The custom resource models: names, parsing, defaults, bounds and the status dicts they produce."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from runwhen_operator.api import (
    common,
    connection,
    kinds,
    persona,
    runnerlocation,
    workflow,
    workflowrun,
    workspace,
)

# --- pinned names ---------------------------------------------------------------------------------


def test_pinned_names() -> None:
    assert common.GROUP == "platform.runwhen.com"
    assert common.VERSION == "v1alpha1"
    assert common.API_VERSION == "platform.runwhen.com/v1alpha1"
    assert common.FINALIZER == "platform.runwhen.com/finalizer"
    assert common.ANNOTATION_PAUSED == "platform.runwhen.com/paused"
    assert common.ANNOTATION_POLL_INTERVAL == "platform.runwhen.com/poll-interval"
    assert common.ANNOTATION_RECONCILE_REQUESTED_AT == "platform.runwhen.com/reconcile-requested-at"
    assert common.CATEGORY == "runwhen"


def test_registry_names() -> None:
    table = {(k.kind, k.plural, k.singular, k.short_names, k.scope, k.crd_name) for k in kinds.KINDS}
    assert table == {
        (
            "ClusterRunWhenConnection",
            "clusterrunwhenconnections",
            "clusterrunwhenconnection",
            ("rwcconn",),
            "Cluster",
            "clusterrunwhenconnections.platform.runwhen.com",
        ),
        (
            "RunWhenConnection",
            "runwhenconnections",
            "runwhenconnection",
            ("rwconn",),
            "Namespaced",
            "runwhenconnections.platform.runwhen.com",
        ),
        ("Workspace", "workspaces", "workspace", ("rwws",), "Namespaced", "workspaces.platform.runwhen.com"),
        ("Workflow", "workflows", "workflow", ("rwwf",), "Namespaced", "workflows.platform.runwhen.com"),
        ("Persona", "personas", "persona", ("rwp",), "Namespaced", "personas.platform.runwhen.com"),
        (
            "WorkflowRun",
            "workflowruns",
            "workflowrun",
            ("rwrun",),
            "Namespaced",
            "workflowruns.platform.runwhen.com",
        ),
        (
            "RunnerLocation",
            "runnerlocations",
            "runnerlocation",
            ("rwloc",),
            "Namespaced",
            "runnerlocations.platform.runwhen.com",
        ),
    }
    assert kinds.by_kind("Workspace").spec_model is workspace.WorkspaceSpec
    assert kinds.by_plural("personas").status_model is persona.PersonaStatus
    assert kinds.by_kind("WorkflowRun").list_kind == "WorkflowRunList"
    with pytest.raises(KeyError):
        kinds.by_kind("Widget")


def test_registry_models() -> None:
    models = {k.kind: (k.spec_model, k.status_model) for k in kinds.KINDS}
    assert models == {
        "ClusterRunWhenConnection": (connection.ClusterConnectionSpec, connection.ConnectionStatus),
        "RunWhenConnection": (connection.ConnectionSpec, connection.ConnectionStatus),
        "Workspace": (workspace.WorkspaceSpec, workspace.WorkspaceStatus),
        "Workflow": (workflow.WorkflowSpec, workflow.WorkflowStatus),
        "Persona": (persona.PersonaSpec, persona.PersonaStatus),
        "WorkflowRun": (workflowrun.WorkflowRunSpec, workflowrun.WorkflowRunStatus),
        "RunnerLocation": (runnerlocation.RunnerLocationSpec, runnerlocation.RunnerLocationStatus),
    }


# --- durations and timestamps ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60s", 60),
        ("5m", 300),
        ("1h30m", 5400),
        ("1h0m0s", 3600),
        ("1.5h", 5400),
        ("500ms", 0.5),
        ("2us", 2e-6),
        ("2\u00b5s", 2e-6),
        ("10ns", 1e-8),
        ("0", 0),
        ("0s", 0),
        ("-5m", -300),
        ("+5m", 300),
        ("1m30.5s", 90.5),
        (".5s", 0.5),
        ("5.s", 5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert common.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "5", "5 minutes", "m", "1x", ".s", "1h 30m", "h1", "1hh", "--1s", "-", "1d"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        common.parse_duration(text)


@pytest.mark.parametrize("text", ["60s", "5m", "1h30m", "1.5h", "500ms", "0", "2us", "10ns"])
def test_duration_pattern_accepts_what_the_parser_parses(text: str) -> None:
    assert re.fullmatch(common.DURATION_PATTERN, text)
    common.parse_duration(text)


@pytest.mark.parametrize("text", ["5", "5 minutes", "-5m", "1d", "h", "1.s", ".5s", ""])
def test_duration_pattern_rejects(text: str) -> None:
    assert re.fullmatch(common.DURATION_PATTERN, text) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5400, "1h30m"), (60, "1m"), (0, "0s"), (0.5, "500ms"), (90.5, "1m30.5s"), (3600, "1h"), (-30, "-30s")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert common.format_duration(seconds) == text
    assert common.parse_duration(text) == pytest.approx(seconds)


def test_format_timestamp() -> None:
    assert (
        common.format_timestamp(datetime(2026, 3, 1, 12, 0, 0, 999999, tzinfo=UTC)) == "2026-03-01T12:00:00Z"
    )
    plus_two = timezone(timedelta(hours=2))
    assert common.format_timestamp(datetime(2026, 3, 1, 14, 0, tzinfo=plus_two)) == "2026-03-01T12:00:00Z"
    assert common.format_timestamp(datetime(2026, 3, 1, 12, 0)) == "2026-03-01T12:00:00Z"


def test_truncate() -> None:
    assert common.truncate("short", 10) == "short"
    cut = common.truncate("x" * 20, 10)
    assert len(cut) == 10
    assert cut.endswith("\u2026")


# --- examples and defaults ------------------------------------------------------------------------


@pytest.mark.parametrize("info", kinds.KINDS, ids=lambda k: k.kind)
def test_examples_parse(info: kinds.KindInfo) -> None:
    body = copy.deepcopy(info.example)
    assert body["apiVersion"] == common.API_VERSION
    assert body["kind"] == info.kind
    spec = info.spec_model.model_validate(body["spec"])
    # Every field of the example comes back (nested objects with their defaults filled in).
    assert _contains(spec.model_dump(by_alias=True, exclude_none=True, mode="json"), body["spec"])


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in expected.items()
        )
    return bool(actual == expected)


def test_workspace_defaults() -> None:
    spec = workspace.WorkspaceSpec.model_validate({})
    assert spec.to_dict() == {
        "connectionRef": {"kind": "ClusterRunWhenConnection", "name": "default"},
        "deletionPolicy": "Orphan",
        "adoptionPolicy": "FailIfExists",
        "managementPolicy": "Manage",
        "monitoring": {
            "interval": "60s",
            "includeDetails": True,
            "includeMetrics": False,
            "issues": {"maxListed": 10, "maxSeverity": 4},
        },
    }
    assert spec.monitoring.interval_seconds == 60
    assert spec.remote_name("team-a") == "team-a"
    assert workspace.WorkspaceSpec(name="remote").remote_name("team-a") == "remote"


@pytest.mark.parametrize("model", [workflow.WorkflowSpec, persona.PersonaSpec])
def test_workflow_and_persona_delete_by_default(model: type[common.WorkspaceParentSpec]) -> None:
    body: dict[str, Any] = {"workspaceName": "team-a"}
    if model is workflow.WorkflowSpec:
        body["definition"] = {"fromActivities": [{"name": "a", "actions": [{"tasks": {"slx": "s"}}]}]}
    spec = model.model_validate(body)
    assert spec.deletion_policy == "Delete"
    assert spec.adoption_policy == "FailIfExists"
    assert spec.management_policy == "Manage"
    assert spec.connection_ref == common.ConnectionRef(kind="ClusterRunWhenConnection", name="default")


def test_persona_leaves_unset_fields_unset() -> None:
    spec = persona.PersonaSpec.model_validate({"workspaceRef": {"name": "team-a"}})
    assert set(spec.to_dict()) == {
        "workspaceRef",
        "connectionRef",
        "deletionPolicy",
        "adoptionPolicy",
        "managementPolicy",
    }
    assert spec.filter_confidence_threshold is None


def test_connection_defaults() -> None:
    spec = connection.ConnectionSpec.model_validate(
        {"url": "https://papi.example.com", "credentialsSecretRef": {"name": "creds"}}
    )
    assert spec.rate_limit == connection.RateLimit(requests_per_second=10, burst=20)
    assert spec.timeout_seconds == 30
    assert spec.ca_bundle is None


def test_field_names_and_aliases_both_parse() -> None:
    by_alias = workspace.WorkspaceSpec.model_validate({"displayName": "A", "deletionPolicy": "Delete"})
    by_name = workspace.WorkspaceSpec.model_validate({"display_name": "A", "deletion_policy": "Delete"})
    assert by_alias == by_name
    assert workspace.WorkspaceSpec(display_name="A", deletion_policy="Delete") == by_alias


def test_unknown_keys_are_ignored() -> None:
    spec = workspace.WorkspaceSpec.model_validate({"displayName": "A", "fromTheFuture": 1})
    assert "fromTheFuture" not in spec.to_dict()


@pytest.mark.parametrize("ttl", ["1.5h", "500us", "0", "1d", "20 m"])
def test_session_ttl_is_whole_units(ttl: str) -> None:
    with pytest.raises(ValidationError):
        workflow.WorkflowTasks.model_validate({"slx": "s", "sessionTTL": ttl})


def test_session_ttl_alias() -> None:
    tasks = workflow.WorkflowTasks.model_validate({"slx": "s", "sessionTTL": "20m"})
    assert tasks.session_ttl == "20m"
    assert tasks.to_dict() == {"slx": "s", "sessionTTL": "20m"}


# --- bounds and rules -----------------------------------------------------------------------------

_WORKFLOW_DEFINITION = {"fromActivities": [{"name": "a", "actions": [{"tasks": {"slx": "s"}}]}]}


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (workspace.WorkspaceSpec, {"name": "Team_A"}),
        (workspace.WorkspaceSpec, {"name": "a" * 64}),
        (workspace.WorkspaceSpec, {"name": "-a"}),
        (workspace.WorkspaceSpec, {"deletionPolicy": "Keep"}),
        (workspace.WorkspaceSpec, {"adoptionPolicy": "Steal"}),
        (workspace.WorkspaceSpec, {"managementPolicy": "Ignore"}),
        (workspace.WorkspaceSpec, {"monitoring": {"interval": "5 minutes"}}),
        (workspace.WorkspaceSpec, {"monitoring": {"issues": {"maxSeverity": 5}}}),
        (workspace.WorkspaceSpec, {"monitoring": {"issues": {"maxSeverity": 0}}}),
        (workspace.WorkspaceSpec, {"monitoring": {"issues": {"maxListed": 101}}}),
        (workspace.WorkspaceSpec, {"enabledLocations": ["x"] * 65}),
        (workspace.WorkspaceSpec, {"displayName": "x" * 257}),
        (workspace.WorkspaceSpec, {"connectionRef": {"kind": "Secret"}}),
        (persona.PersonaSpec, {"workspaceName": "w", "filterConfidenceThreshold": 1.5}),
        (persona.PersonaSpec, {"workspaceName": "w", "runConfidenceThreshold": -0.1}),
        (persona.PersonaSpec, {"workspaceName": "w", "filterIssueSelectionStrategy": "most-severe"}),
        (persona.PersonaSpec, {"workspaceName": "w", "avatarUrl": "file:///etc/passwd"}),
        (persona.PersonaSpec, {"workspaceName": "w", "workspaceRef": {"name": "w"}}),
        (persona.PersonaSpec, {}),
        (workflow.WorkflowSpec, {"workspaceName": "w"}),
        (workflow.WorkflowSpec, {"workspaceName": "w", "definition": {"fromActivities": []}}),
        (workflow.WorkflowSpec, {"definition": _WORKFLOW_DEFINITION}),
        (
            workflow.WorkflowSpec,
            {"workspaceName": "w", "definition": {"fromActivities": [{"name": "a", "actions": []}]}},
        ),
        (
            workflow.WorkflowSpec,
            {
                "workspaceName": "w",
                "definition": {
                    "fromActivities": [
                        {"name": "a", "actions": [{"tasks": {"slx": "s", "sessionTTL": "20 minutes"}}]}
                    ]
                },
            },
        ),
        (connection.ConnectionSpec, {"credentialsSecretRef": {"name": "c"}}),
        (connection.ConnectionSpec, {"url": "ftp://x", "credentialsSecretRef": {"name": "c"}}),
        (
            connection.ConnectionSpec,
            {"url": "https://x", "credentialsSecretRef": {"name": "c", "namespace": "o"}},
        ),
        (
            connection.ConnectionSpec,
            {
                "url": "https://x",
                "credentialsSecretRef": {"name": "c"},
                "rateLimit": {"requestsPerSecond": 0},
            },
        ),
        (
            connection.ConnectionSpec,
            {"url": "https://x", "credentialsSecretRef": {"name": "c"}, "rateLimit": {"burst": 10001}},
        ),
        (
            connection.ConnectionSpec,
            {"url": "https://x", "credentialsSecretRef": {"name": "c"}, "timeoutSeconds": 0},
        ),
        (
            connection.ConnectionSpec,
            {"url": "https://x", "credentialsSecretRef": {"name": "c"}, "caBundle": "nope"},
        ),
        (connection.ClusterConnectionSpec, {"url": "https://x", "credentialsSecretRef": {"name": "c"}}),
        (workflowrun.WorkflowRunSpec, {}),
        (workflowrun.WorkflowRunSpec, {"workflowRef": {"name": "w"}, "workflowId": 1}),
        (workflowrun.WorkflowRunSpec, {"workflowId": 1}),
        (workflowrun.WorkflowRunSpec, {"workspaceName": "w"}),
        (workflowrun.WorkflowRunSpec, {"workflowId": 0, "workspaceName": "w"}),
        (workflowrun.WorkflowRunSpec, {"workflowRef": {"name": "w"}, "ttlSecondsAfterFinished": -1}),
    ],
)
def test_invalid_specs_are_rejected(model: type[common.CRDModel], body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(body)


def test_exactly_one_workspace_message() -> None:
    with pytest.raises(ValidationError, match="exactly one of workspaceRef or workspaceName must be set"):
        persona.PersonaSpec.model_validate({})


def test_workflow_run_forms() -> None:
    by_ref = workflowrun.WorkflowRunSpec.model_validate({"workflowRef": {"name": "w"}})
    assert by_ref.workflow_ref == common.LocalObjectRef(name="w")
    assert by_ref.connection_ref is None
    by_id = workflowrun.WorkflowRunSpec.model_validate({"workflowId": 3, "workspaceName": "team-a"})
    assert (by_id.workflow_id, by_id.workspace_name) == (3, "team-a")
    with pytest.raises(
        ValidationError,
        match="set either workflowRef, or workspaceName with one of workflowId and workflowName",
    ):
        workflowrun.WorkflowRunSpec.model_validate({"workflowId": 3})


@pytest.mark.parametrize(
    "value", ["", "  \n", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"]
)
def test_ca_bundle_accepts_empty_or_pem(value: str) -> None:
    spec = connection.ConnectionSpec.model_validate(
        {"url": "https://x", "credentialsSecretRef": {"name": "c"}, "caBundle": value}
    )
    assert spec.ca_bundle == value


def test_fractional_rate_limit() -> None:
    assert connection.RateLimit.model_validate({"requestsPerSecond": 0.5}).requests_per_second == 0.5


# --- status ---------------------------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _ready() -> common.Condition:
    return common.Condition(
        type="Ready", status="True", reason="Reconciled", observed_generation=2, last_transition_time=NOW
    )


def test_workspace_status_dumps_to_the_status_patch() -> None:
    status = workspace.WorkspaceStatus(
        observed_generation=2,
        conditions=[_ready()],
        last_sync_time=NOW,
        remote_name="team-a",
        health=workspace.WorkspaceHealth(state="Healthy", checked_at=NOW, metrics={"rate": 0.5}),
        workspace_status=workspace.WorkspaceStatusFlags(workspace=True, sync=True),
        open_issues=workspace.OpenIssues(
            count=1,
            by_severity=workspace.IssueCounts(major=1),
            top=[workspace.IssueSummary(id=7, title="Down", severity=2, slx_name="web", open_since=NOW)],
        ),
    )
    assert status.model_dump(by_alias=True, exclude_none=True, mode="json") == {
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Reconciled",
                "message": "",
                "observedGeneration": 2,
                "lastTransitionTime": "2026-03-01T12:00:00Z",
            }
        ],
        "lastSyncTime": "2026-03-01T12:00:00Z",
        "remoteName": "team-a",
        "health": {"state": "Healthy", "checkedAt": "2026-03-01T12:00:00Z", "metrics": {"rate": 0.5}},
        "workspaceStatus": {"workspace": True, "sync": True},
        "openIssues": {
            "count": 1,
            "bySeverity": {"critical": 0, "major": 1, "minor": 0, "warning": 0},
            "top": [
                {
                    "id": 7,
                    "title": "Down",
                    "severity": 2,
                    "slxName": "web",
                    "openSince": "2026-03-01T12:00:00Z",
                }
            ],
        },
    }


def test_status_parses_back_from_the_object() -> None:
    raw: dict[str, Any] = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Conflict",
                "lastTransitionTime": "2026-03-01T12:00:00Z",
            }
        ],
        "id": 12,
        "workspace": "team-a",
    }
    status = workflow.WorkflowStatus.model_validate(raw)
    assert status.id == 12
    cond = status.condition("Ready")
    assert cond is not None
    assert cond.status == "False"
    assert cond.last_transition_time == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert status.condition("Synced") is None
    assert status.to_dict() == raw | {"conditions": [raw["conditions"][0] | {"message": ""}]}


def test_condition_reason_must_be_camel_case() -> None:
    with pytest.raises(ValidationError):
        common.Condition(type="Ready", status="True", reason="not camel", last_transition_time=NOW)
    with pytest.raises(ValidationError):
        common.Condition.model_validate(
            {"type": "Ready", "status": "Yes", "reason": "Ok", "lastTransitionTime": NOW}
        )


def test_health_details_are_bounded() -> None:
    details = [
        workspace.HealthDetail(component=f"c{i}", status="ok")
        for i in range(workspace.MAX_HEALTH_DETAILS + 1)
    ]
    with pytest.raises(ValidationError):
        workspace.WorkspaceHealth(state="Healthy", details=details)
    workspace.WorkspaceHealth(state="Healthy", details=details[: workspace.MAX_HEALTH_DETAILS])


def test_workflow_run_status() -> None:
    status = workflowrun.WorkflowRunStatus(phase="Started", run_id=3, trigger_requested_at=NOW)
    assert not status.finished
    assert status.to_dict() == {
        "conditions": [],
        "phase": "Started",
        "runId": 3,
        "triggerRequestedAt": "2026-03-01T12:00:00Z",
    }
    for phase in ("Completed", "CompletedWithErrors", "Failed", "Canceled"):
        assert workflowrun.WorkflowRunStatus.model_validate({"phase": phase}).finished
    with pytest.raises(ValidationError):
        workflowrun.WorkflowRunStatus.model_validate({"phase": "Running"})


def test_connection_status() -> None:
    status = connection.ConnectionStatus(auth_mode="token", last_verified_time=NOW, conditions=[_ready()])
    assert status.to_dict()["authMode"] == "token"
    assert status.condition("Ready") == _ready()
    with pytest.raises(ValidationError):
        connection.ConnectionStatus.model_validate({"authMode": "basic"})
