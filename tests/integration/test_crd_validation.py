"""The generated CRDs against a real kube-apiserver: bad objects are rejected with the rule's message,
valid objects are accepted with their defaults applied, and the status models' output is accepted."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from kubernetes import client

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

pytestmark = pytest.mark.integration

Body = dict[str, Any]


class Objects:
    """Create/replace custom objects of any registered kind, and patch their status."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.cluster_names: list[tuple[str, str]] = []

    def create(self, body: Body) -> Body:
        info = kinds.by_kind(body["kind"])
        if info.namespaced:
            result = self.api.create_namespaced_custom_object(
                common.GROUP, common.VERSION, self.namespace, info.plural, body
            )
        else:
            result = self.api.create_cluster_custom_object(common.GROUP, common.VERSION, info.plural, body)
            self.cluster_names.append((info.plural, body["metadata"]["name"]))
        return cast(Body, result)

    def replace(self, body: Body) -> Body:
        info = kinds.by_kind(body["kind"])
        name = body["metadata"]["name"]
        if info.namespaced:
            result = self.api.replace_namespaced_custom_object(
                common.GROUP, common.VERSION, self.namespace, info.plural, name, body
            )
        else:
            result = self.api.replace_cluster_custom_object(
                common.GROUP, common.VERSION, info.plural, name, body
            )
        return cast(Body, result)

    def patch_status(self, body: Body, status: Body) -> Body:
        info = kinds.by_kind(body["kind"])
        name = body["metadata"]["name"]
        patch = {"status": status}
        if info.namespaced:
            result = self.api.patch_namespaced_custom_object_status(
                common.GROUP, common.VERSION, self.namespace, info.plural, name, patch
            )
        else:
            result = self.api.patch_cluster_custom_object_status(
                common.GROUP, common.VERSION, info.plural, name, patch
            )
        return cast(Body, result)

    def cleanup(self) -> None:
        for plural, name in self.cluster_names:
            try:
                self.api.delete_cluster_custom_object(common.GROUP, common.VERSION, plural, name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def objects(crds_installed: list[str], k8s_api: client.ApiClient, namespace: str) -> Iterator[Objects]:
    objs = Objects(k8s_api, namespace)
    yield objs
    objs.cleanup()


def example(kind: str, **spec_changes: Any) -> Body:
    """The registry's example of ``kind`` (cluster-scoped ones get a unique name), with spec changes;
    a change to ``None`` removes the field."""
    body = copy.deepcopy(kinds.by_kind(kind).example)
    if not kinds.by_kind(kind).namespaced:
        body["metadata"]["name"] = f"{body['metadata']['name']}-{uuid.uuid4().hex[:8]}"
    for key, value in spec_changes.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    return body


def rejected(exc: client.ApiException) -> str:
    assert exc.status == 422, f"expected 422 Invalid, got {exc.status}: {exc.body}"
    body = json.loads(str(exc.body))
    assert body["reason"] == "Invalid"
    return str(body["message"])


def test_every_generated_crd_is_installed_and_established(crds_installed: list[str]) -> None:
    assert sorted(crds_installed) == sorted(k.crd_name for k in kinds.KINDS)


# --- create: bad input ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    body: Callable[[], Body]
    messages: tuple[str, ...]


def _ws(**spec: Any) -> Callable[[], Body]:
    return lambda: example("Workspace", **spec)


def _with(kind: str, mutate: Callable[[Body], None]) -> Callable[[], Body]:
    def build() -> Body:
        body = example(kind)
        mutate(body)
        return body

    return build


def _set(path: str, value: Any) -> Callable[[Body], None]:
    """Set (or with ``None`` remove) a dotted path under ``spec``."""

    def mutate(body: Body) -> None:
        *parents, leaf = path.split(".")
        node = body["spec"]
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value

    return mutate


def _both(*mutations: Callable[[Body], None]) -> Callable[[Body], None]:
    def mutate(body: Body) -> None:
        for m in mutations:
            m(body)

    return mutate


def _rename(name: str) -> Callable[[Body], None]:
    def mutate(body: Body) -> None:
        body["metadata"]["name"] = name

    return mutate


ONE_WORKSPACE = "exactly one of workspaceRef or workspaceName must be set"
ONE_TARGET = "set either workflowRef, or workspaceName with one of workflowId and workflowName"

BAD_CREATES = [
    Bad("workspace-name-not-dns", _ws(name="Team_A"), ("spec.name", "should match")),
    Bad("workspace-name-too-long", _ws(name="a" * 64), ("spec.name", "63")),
    Bad(
        "workspace-metadata-name-not-a-remote-name",
        _with("Workspace", _rename("team.a")),
        ("metadata.name is not a valid remote workspace name",),
    ),
    Bad(
        "workflow-metadata-name-too-long",
        _with("Workflow", _rename("w" * 64)),
        ("metadata.name is not a valid remote workflow name",),
    ),
    Bad(
        "workspace-bad-duration",
        _ws(monitoring={"interval": "5 minutes"}),
        ("spec.monitoring.interval", "should match"),
    ),
    Bad(
        "workspace-duration-too-short",
        _ws(monitoring={"interval": "1s"}),
        ("monitoring.interval must be between 2s and 24h",),
    ),
    Bad(
        "workspace-duration-too-long",
        _ws(monitoring={"interval": "25h"}),
        ("monitoring.interval must be between 2s and 24h",),
    ),
    Bad("workspace-unknown-deletion-policy", _ws(deletionPolicy="Keep"), ('Unsupported value: "Keep"',)),
    Bad("workspace-unknown-adoption-policy", _ws(adoptionPolicy="Steal"), ('Unsupported value: "Steal"',)),
    Bad(
        "workspace-unknown-management-policy",
        _ws(managementPolicy="Ignore"),
        ('Unsupported value: "Ignore"',),
    ),
    Bad(
        "workspace-max-severity-out-of-range",
        _ws(monitoring={"issues": {"maxSeverity": 5}}),
        ("spec.monitoring.issues.maxSeverity", "less than or equal to 4"),
    ),
    Bad(
        "workspace-max-listed-out-of-range",
        _ws(monitoring={"issues": {"maxListed": 101}}),
        ("spec.monitoring.issues.maxListed", "less than or equal to 100"),
    ),
    Bad(
        "workspace-too-many-locations",
        _ws(enabledLocations=["x"] * 65),
        ("spec.enabledLocations", "must have at most 64 items"),
    ),
    Bad(
        "workspace-unknown-connection-kind",
        _ws(connectionRef={"kind": "Secret", "name": "x"}),
        ('Unsupported value: "Secret"',),
    ),
    Bad(
        "persona-threshold-above-one",
        _with("Persona", _set("filterConfidenceThreshold", 1.5)),
        ("spec.filterConfidenceThreshold", "less than or equal to 1"),
    ),
    Bad(
        "persona-run-threshold-negative",
        _with("Persona", _set("runConfidenceThreshold", -0.1)),
        ("spec.runConfidenceThreshold", "greater than or equal to 0"),
    ),
    Bad(
        "persona-bad-selection-strategy",
        _with("Persona", _set("filterIssueSelectionStrategy", "most-severe")),
        ("spec.filterIssueSelectionStrategy", "should match"),
    ),
    Bad(
        "persona-both-parents",
        _with("Persona", _set("workspaceName", "team-a")),
        (ONE_WORKSPACE,),
    ),
    Bad("persona-no-parent", _with("Persona", _set("workspaceRef", None)), (ONE_WORKSPACE,)),
    Bad(
        "workflow-both-parents",
        _with("Workflow", _set("workspaceName", "team-a")),
        (ONE_WORKSPACE,),
    ),
    Bad("workflow-no-parent", _with("Workflow", _set("workspaceRef", None)), (ONE_WORKSPACE,)),
    Bad(
        "workflow-no-definition",
        _with("Workflow", _set("definition", None)),
        ("spec.definition: Required value",),
    ),
    Bad(
        "workflow-empty-activities",
        _with("Workflow", _set("definition.fromActivities", [])),
        ("spec.definition.fromActivities", "should have at least 1 items"),
    ),
    Bad(
        "workflow-duplicate-activity-names",
        _with(
            "Workflow",
            lambda b: b["spec"]["definition"]["fromActivities"].append(
                copy.deepcopy(b["spec"]["definition"]["fromActivities"][0])
            ),
        ),
        ("spec.definition.fromActivities[1]", "Duplicate value"),
    ),
    Bad(
        "workflow-bad-session-ttl",
        _with(
            "Workflow",
            lambda b: b["spec"]["definition"]["fromActivities"][0]["actions"][0]["tasks"].update(
                sessionTTL="20 minutes"
            ),
        ),
        ("sessionTTL", "should match"),
    ),
    Bad(
        "workflow-task-without-slx",
        _with(
            "Workflow",
            lambda b: b["spec"]["definition"]["fromActivities"][0]["actions"][0]["tasks"].pop("slx"),
        ),
        ("tasks.slx: Required value",),
    ),
    Bad(
        "connection-missing-url",
        _with("RunWhenConnection", _set("url", None)),
        ("spec.url: Required value",),
    ),
    Bad(
        "connection-url-not-http",
        _with("RunWhenConnection", _set("url", "ftp://papi.example.com")),
        ("spec.url", "should match"),
    ),
    Bad(
        "connection-foreign-secret-namespace",
        _with("RunWhenConnection", _set("credentialsSecretRef.namespace", "kube-system")),
        ("credentialsSecretRef.namespace must be omitted",),
    ),
    Bad(
        "connection-rate-zero",
        _with("RunWhenConnection", _set("rateLimit", {"requestsPerSecond": 0})),
        ("spec.rateLimit.requestsPerSecond", "greater than 0"),
    ),
    Bad(
        "connection-burst-too-large",
        _with("RunWhenConnection", _set("rateLimit", {"burst": 10001})),
        ("spec.rateLimit.burst", "less than or equal to 10000"),
    ),
    Bad(
        "connection-timeout-too-long",
        _with("RunWhenConnection", _set("timeoutSeconds", 301)),
        ("spec.timeoutSeconds", "less than or equal to 300"),
    ),
    Bad(
        "connection-ca-bundle-not-pem",
        _with("RunWhenConnection", _set("caBundle", "not a certificate")),
        ("spec.caBundle", "should match"),
    ),
    Bad(
        "cluster-connection-secret-without-namespace",
        _with("ClusterRunWhenConnection", _set("credentialsSecretRef.namespace", None)),
        ("spec.credentialsSecretRef.namespace: Required value",),
    ),
    Bad(
        "cluster-connection-missing-secret-ref",
        _with("ClusterRunWhenConnection", _set("credentialsSecretRef", None)),
        ("spec.credentialsSecretRef: Required value",),
    ),
    Bad(
        "run-both-targets",
        _with("WorkflowRun", _both(_set("workflowId", 7), _set("workspaceName", "team-a"))),
        (ONE_TARGET,),
    ),
    Bad("run-no-target", _with("WorkflowRun", _set("workflowRef", None)), (ONE_TARGET,)),
    Bad(
        "run-id-without-workspace",
        _with("WorkflowRun", _both(_set("workflowRef", None), _set("workflowId", 7))),
        (ONE_TARGET,),
    ),
    Bad(
        "run-negative-ttl",
        _with("WorkflowRun", _set("ttlSecondsAfterFinished", -1)),
        ("spec.ttlSecondsAfterFinished", "greater than or equal to 0"),
    ),
    Bad(
        "location-both-workspaces",
        _with("RunnerLocation", _set("workspaceName", "team-a")),
        (ONE_WORKSPACE,),
    ),
    Bad("location-no-workspace", _with("RunnerLocation", _set("workspaceRef", None)), (ONE_WORKSPACE,)),
    Bad(
        "location-name-not-dns", _with("RunnerLocation", _set("name", "Loc_1")), ("spec.name", "should match")
    ),
    Bad(
        "location-metadata-name-not-a-location-name",
        _with("RunnerLocation", _rename("loc.one")),
        ("metadata.name is not a valid remote location name",),
    ),
    Bad(
        "location-one-secret-for-both",
        _with("RunnerLocation", _both(_set("runnerTokenSecretName", "x"), _set("uploadInfoSecretName", "x"))),
        ("runnerTokenSecretName and uploadInfoSecretName must name two different Secrets",),
    ),
    Bad(
        "location-same-secret-as-the-default",
        _with("RunnerLocation", _set("uploadInfoSecretName", "runner-registration-token")),
        ("must name two different Secrets",),
    ),
    Bad(
        "location-bad-deletion-policy",
        _with("RunnerLocation", _set("deletionPolicy", "Keep")),
        ("spec.deletionPolicy", "Unsupported value"),
    ),
]


@pytest.mark.parametrize("case", BAD_CREATES, ids=[c.id for c in BAD_CREATES])
def test_bad_object_is_rejected(objects: Objects, case: Bad) -> None:
    with pytest.raises(client.ApiException) as err:
        objects.create(case.body())
    message = rejected(err.value)
    for expected in case.messages:
        assert expected in message


# --- create: valid objects and defaults -----------------------------------------------------------


@pytest.mark.parametrize("kind", [k.kind for k in kinds.KINDS])
def test_example_is_accepted_and_parses(objects: Objects, kind: str) -> None:
    info = kinds.by_kind(kind)
    body = example(kind)
    created = objects.create(body)
    assert created["metadata"]["name"] == body["metadata"]["name"]
    # Every field given in the example survives the round trip through the API server (nothing
    # pruned), and the model reads the stored object back with the same values.
    assert_contains(created["spec"], body["spec"])
    spec = info.spec_model.model_validate(created["spec"])
    assert spec.model_dump(by_alias=True, exclude_none=True, mode="json") == created["spec"]


def assert_contains(actual: Any, expected: Any, path: str = "spec") -> None:
    """``actual`` has every field of ``expected`` with the same value (it may have more: defaults)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} was dropped"
            assert_contains(actual[key], value, f"{path}.{key}")
    else:
        assert actual == expected, path


DEFAULT_CONNECTION_REF = {"kind": "ClusterRunWhenConnection", "name": "default"}


def test_workspace_without_spec_gets_every_default(objects: Objects) -> None:
    body = {"apiVersion": common.API_VERSION, "kind": "Workspace", "metadata": {"name": "bare"}}
    created = objects.create(body)
    assert created["spec"] == {
        "connectionRef": DEFAULT_CONNECTION_REF,
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
    # The server's defaults and the model's defaults are the same.
    assert created["spec"] == workspace.WorkspaceSpec().to_dict()


def test_partial_monitoring_is_completed_with_defaults(objects: Objects) -> None:
    created = objects.create(example("Workspace", monitoring={"issues": {"maxSeverity": 2}}))
    assert created["spec"]["monitoring"] == {
        "interval": "60s",
        "includeDetails": True,
        "includeMetrics": False,
        "issues": {"maxListed": 10, "maxSeverity": 2},
    }


@pytest.mark.parametrize("kind", ["Workflow", "Persona"])
def test_workflow_and_persona_defaults(objects: Objects, kind: str) -> None:
    created = objects.create(example(kind))
    spec = created["spec"]
    assert spec["connectionRef"] == DEFAULT_CONNECTION_REF
    assert spec["deletionPolicy"] == "Delete"
    assert spec["adoptionPolicy"] == "FailIfExists"
    assert spec["managementPolicy"] == "Manage"
    assert "name" not in spec


def test_persona_unset_fields_stay_unset(objects: Objects) -> None:
    body = example("Persona")
    body["spec"] = {"workspaceName": "team-a"}
    created = objects.create(body)
    assert set(created["spec"]) == {
        "workspaceName",
        "connectionRef",
        "deletionPolicy",
        "adoptionPolicy",
        "managementPolicy",
    }


def test_connection_defaults(objects: Objects) -> None:
    created = objects.create(example("ClusterRunWhenConnection"))
    assert created["spec"]["rateLimit"] == {"requestsPerSecond": 10, "burst": 20}
    assert created["spec"]["timeoutSeconds"] == 30
    parsed = connection.ClusterConnectionSpec.model_validate(created["spec"])
    assert parsed.rate_limit.requests_per_second == 10


def test_namespaced_connection_accepts_pem_bundle_and_fractional_rate(objects: Objects) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    created = objects.create(example("RunWhenConnection", caBundle=pem, rateLimit={"requestsPerSecond": 0.5}))
    assert created["spec"]["caBundle"] == pem
    assert created["spec"]["rateLimit"] == {"requestsPerSecond": 0.5, "burst": 20}


def test_workflow_run_by_id_has_no_connection_default(objects: Objects) -> None:
    body = example("WorkflowRun", workflowRef=None, workflowId=42, workspaceName="team-a")
    created = objects.create(body)
    assert "connectionRef" not in created["spec"]
    assert created["spec"]["context"] == body["spec"]["context"]


# --- update: transition rules ---------------------------------------------------------------------


def _update(objects: Objects, created: Body, mutate: Callable[[Body], None]) -> Body:
    body = copy.deepcopy(created)
    mutate(body)
    return objects.replace(body)


NAME_IMMUTABLE = "spec.name is immutable"
NAME_ADDED = "spec.name can only be added after creation if it equals metadata.name"
PARENT_IMMUTABLE = "the workspace (workspaceRef or workspaceName) is immutable"
RUN_IMMUTABLE = "spec is immutable: create a new WorkflowRun"


@dataclass(frozen=True)
class BadUpdate:
    id: str
    initial: Callable[[], Body]
    mutate: Callable[[Body], None]
    message: str


BAD_UPDATES = [
    BadUpdate("workspace-change-name", _ws(name="first"), _set("name", "second"), NAME_IMMUTABLE),
    BadUpdate("workspace-remove-name", _ws(name="first"), _set("name", None), NAME_IMMUTABLE),
    BadUpdate("workspace-add-other-name", _ws(), _set("name", "other"), NAME_ADDED),
    BadUpdate(
        "workflow-change-name",
        lambda: example("Workflow", name="first"),
        _set("name", "second"),
        NAME_IMMUTABLE,
    ),
    BadUpdate("persona-add-other-name", lambda: example("Persona"), _set("name", "other"), NAME_ADDED),
    BadUpdate(
        "workflow-change-workspace-ref",
        lambda: example("Workflow"),
        _set("workspaceRef", {"name": "team-b"}),
        PARENT_IMMUTABLE,
    ),
    BadUpdate(
        "persona-switch-to-workspace-name",
        lambda: example("Persona"),
        _both(_set("workspaceRef", None), _set("workspaceName", "team-a")),
        PARENT_IMMUTABLE,
    ),
    BadUpdate(
        "persona-change-workspace-name",
        lambda: example("Persona", workspaceRef=None, workspaceName="team-a"),
        _set("workspaceName", "team-b"),
        PARENT_IMMUTABLE,
    ),
    BadUpdate(
        "location-change-name",
        lambda: example("RunnerLocation", name="first"),
        _set("name", "second"),
        NAME_IMMUTABLE,
    ),
    BadUpdate(
        "location-change-workspace",
        lambda: example("RunnerLocation"),
        _set("workspaceRef", {"name": "team-b"}),
        PARENT_IMMUTABLE,
    ),
    BadUpdate(
        "location-change-secret-namespace",
        lambda: example("RunnerLocation"),
        _set("secretNamespace", "elsewhere"),
        "spec.secretNamespace is immutable",
    ),
    BadUpdate(
        "location-add-secret-namespace",
        lambda: example("RunnerLocation", secretNamespace=None),
        _set("secretNamespace", "elsewhere"),
        "spec.secretNamespace is immutable",
    ),
    BadUpdate(
        "run-change-workflow",
        lambda: example("WorkflowRun"),
        _set("workflowRef", {"name": "other"}),
        RUN_IMMUTABLE,
    ),
    BadUpdate(
        "run-change-ttl",
        lambda: example("WorkflowRun"),
        _set("ttlSecondsAfterFinished", 5),
        RUN_IMMUTABLE,
    ),
    BadUpdate(
        "run-change-context",
        lambda: example("WorkflowRun"),
        _set("context", {"reason": "changed"}),
        RUN_IMMUTABLE,
    ),
    BadUpdate(
        "run-change-nested-context",
        lambda: example("WorkflowRun"),
        _set("context.alert", {"severity": 3}),
        RUN_IMMUTABLE,
    ),
    BadUpdate(
        "run-add-connection",
        lambda: example("WorkflowRun"),
        _set("connectionRef", {"kind": "RunWhenConnection", "name": "x"}),
        RUN_IMMUTABLE,
    ),
]


@pytest.mark.parametrize("case", BAD_UPDATES, ids=[c.id for c in BAD_UPDATES])
def test_bad_update_is_rejected(objects: Objects, case: BadUpdate) -> None:
    created = objects.create(case.initial())
    with pytest.raises(client.ApiException) as err:
        _update(objects, created, case.mutate)
    assert case.message in rejected(err.value)


def test_run_metadata_stays_writable(objects: Objects) -> None:
    created = objects.create(example("WorkflowRun"))

    def label_and_finalize(body: Body) -> None:
        body["metadata"]["labels"] = {"team": "a"}
        body["metadata"]["finalizers"] = [common.FINALIZER]

    updated = _update(objects, created, label_and_finalize)
    assert updated["metadata"]["labels"] == {"team": "a"}
    _update(objects, updated, lambda b: b["metadata"].pop("finalizers"))


def test_spec_name_may_be_added_when_it_equals_metadata_name(objects: Objects) -> None:
    created = objects.create(example("Workspace"))
    updated = _update(objects, created, _set("name", created["metadata"]["name"]))
    assert updated["spec"]["name"] == "team-a"


def test_other_fields_stay_mutable(objects: Objects) -> None:
    created = objects.create(example("Workflow", name="remote-name"))
    updated = _update(
        objects,
        created,
        _both(
            _set("deletionPolicy", "Orphan"),
            _set("definition.fromActivities", [{"name": "second", "actions": [{"tasks": {"slx": "other"}}]}]),
        ),
    )
    assert updated["spec"]["deletionPolicy"] == "Orphan"
    assert updated["metadata"]["generation"] == 2


def test_workspace_name_may_stay_a_non_label_once_spec_name_is_set(objects: Objects) -> None:
    # A metadata.name that is not a DNS label is fine when spec.name gives the remote name.
    created = objects.create(example("Workspace", name="team-a") | {"metadata": {"name": "team.a"}})
    updated = _update(objects, created, _set("displayName", "Team A (renamed)"))
    assert updated["spec"]["name"] == "team-a"


# --- status: the models' output is what the CRDs accept -------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _conditions(*types: str) -> list[common.Condition]:
    return [
        common.Condition(
            type=t,
            status="True",
            reason="Reconciled",
            message="ok",
            observed_generation=1,
            last_transition_time=NOW,
        )
        for t in types
    ]


STATUSES: dict[str, Any] = {
    "ClusterRunWhenConnection": connection.ConnectionStatus(
        observed_generation=1, conditions=_conditions("Ready"), auth_mode="token", last_verified_time=NOW
    ),
    "RunWhenConnection": connection.ConnectionStatus(conditions=_conditions("Ready"), auth_mode="password"),
    "Workspace": workspace.WorkspaceStatus(
        observed_generation=1,
        conditions=_conditions("Ready", "Synced"),
        last_sync_time=NOW,
        remote_name="team-a",
        health=workspace.WorkspaceHealth(
            state="Degraded",
            checked_at=NOW,
            reason="ComponentsFailing",
            message="1 of 2 components failing",
            details=[workspace.HealthDetail(component="runner", status="unhealthy", message="down")],
            metrics={"slxCount": 12, "successRate": 0.97},
        ),
        workspace_status=workspace.WorkspaceStatusFlags(workspace=True, sync=False),
        open_issues=workspace.OpenIssues(
            count=3,
            by_severity=workspace.IssueCounts(critical=1, warning=2),
            top=[
                workspace.IssueSummary(id=9, title="Pods crash", severity=1, slx_name="k8s", open_since=NOW)
            ],
        ),
    ),
    "Workflow": workflow.WorkflowStatus(
        conditions=_conditions("Ready", "Synced"), id=17, workspace="team-a", webhook_token_secret="hook"
    ),
    "Persona": persona.PersonaStatus(conditions=_conditions("Ready", "Synced"), id=4, workspace="team-a"),
    "RunnerLocation": runnerlocation.RunnerLocationStatus(
        observed_generation=1,
        conditions=_conditions("Ready", "Synced"),
        last_sync_time=NOW,
        workspace="team-a",
        location="location-01",
        location_enabled=True,
        secret_namespace="runwhen-local",
        runner_token_secret="runner-registration-token",
        upload_info_secret="uploadinfo",
        token_rotation="2026-03-01",
        runner_id="0b5e6c1e-2f3a-5d7e-9c1b-4a2f6e8d0c3b",
        runner_name="location-01",
        health="online",
        last_heartbeat=NOW,
    ),
    "WorkflowRun": workflowrun.WorkflowRunStatus(
        observed_generation=1,
        conditions=_conditions("Complete"),
        phase="Completed",
        run_session_id=5,
        run_id=6,
        workflow_id=17,
        workspace="team-a",
        trigger_requested_at=NOW,
        queued_at=NOW,
        started_at=NOW,
        completed_at=NOW,
        message="done",
    ),
}


@pytest.mark.parametrize("kind", [k.kind for k in kinds.KINDS])
def test_status_model_output_is_accepted_unchanged(objects: Objects, kind: str) -> None:
    info = kinds.by_kind(kind)
    created = objects.create(example(kind))
    status = STATUSES[kind].model_dump(by_alias=True, exclude_none=True, mode="json")
    patched = objects.patch_status(created, status)
    # A status the model leaves without observedGeneration keeps the CRD's default of 0.
    expected = {"observedGeneration": 0, **status}
    assert patched["status"] == expected
    assert info.status_model.model_validate(patched["status"]) == STATUSES[kind].model_validate(expected)


def test_a_just_applied_object_reads_not_observed(objects: Objects) -> None:
    """The CRD's status default: no write, yet observedGeneration 0 != generation 1 (kstatus reads
    it as in progress until the operator has looked at it)."""
    for kind in ("Workspace", "WorkflowRun", "ClusterRunWhenConnection"):
        created = objects.create(example(kind))
        assert created["metadata"]["generation"] == 1
        assert created["status"] == {"observedGeneration": 0}, kind


def test_status_out_of_bounds_is_rejected(objects: Objects) -> None:
    created = objects.create(example("Workspace"))
    with pytest.raises(client.ApiException) as err:
        objects.patch_status(created, {"health": {"state": "Fine"}})
    assert 'Unsupported value: "Fine"' in rejected(err.value)


def test_conditions_are_a_map_keyed_by_type(objects: Objects) -> None:
    created = objects.create(example("Workspace"))
    cond = _conditions("Ready")[0].to_dict()
    with pytest.raises(client.ApiException) as err:
        objects.patch_status(created, {"conditions": [cond, cond]})
    assert "Duplicate value" in rejected(err.value)


def test_printer_columns(objects: Objects, k8s_api: client.ApiClient, namespace: str) -> None:
    created = objects.create(example("Workspace"))
    objects.patch_status(created, STATUSES["Workspace"].to_dict())
    table = _table(k8s_api, f"/apis/{common.API_VERSION}/namespaces/{namespace}/workspaces")
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns == ["Name", "Ready", "Synced", "Health", "Open Issues", "Age"]
    row = table["rows"][0]["cells"]
    assert row[:5] == ["team-a", "True", "True", "Degraded", 3]


def test_workflow_run_printer_columns(objects: Objects, k8s_api: client.ApiClient, namespace: str) -> None:
    created = objects.create(example("WorkflowRun"))
    objects.patch_status(created, STATUSES["WorkflowRun"].to_dict())
    table = _table(k8s_api, f"/apis/{common.API_VERSION}/namespaces/{namespace}/workflowruns")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Workflow", "Phase", "Age", "Finished"]
    assert table["rows"][0]["cells"][:3] == ["restart-on-alert-manual", "restart-on-alert", "Completed"]


def test_runner_location_defaults_and_printer_columns(
    objects: Objects, k8s_api: client.ApiClient, namespace: str
) -> None:
    created = objects.create(example("RunnerLocation", secretNamespace=None))
    spec = created["spec"]
    assert spec["runnerTokenSecretName"] == runnerlocation.DEFAULT_RUNNER_TOKEN_SECRET
    assert spec["uploadInfoSecretName"] == runnerlocation.DEFAULT_UPLOAD_INFO_SECRET
    assert spec["deletionPolicy"] == "Delete"
    assert spec["connectionRef"] == {"kind": "ClusterRunWhenConnection", "name": "default"}
    assert "secretNamespace" not in spec  # the object's own namespace
    objects.patch_status(created, STATUSES["RunnerLocation"].to_dict())
    table = _table(k8s_api, f"/apis/{common.API_VERSION}/namespaces/{namespace}/runnerlocations")
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns == ["Name", "Workspace", "Location", "Ready", "Synced", "Health", "Age"]
    assert table["rows"][0]["cells"][:6] == ["location-01", "team-a", "location-01", "True", "True", "online"]


def _table(api: client.ApiClient, path: str) -> Body:
    """GET ``path`` as a server-side printed table (what kubectl get shows)."""
    method, url, headers, body, post = api.param_serialize(
        "GET",
        path,
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, headers, body, post)
    raw: bytes = response.response.data
    assert response.status == 200, raw
    return cast(Body, json.loads(raw))


def test_every_kind_is_in_the_runwhen_category(crds_installed: list[str], k8s_api: client.ApiClient) -> None:
    resources = client.CustomObjectsApi(k8s_api).get_api_resources(common.GROUP, common.VERSION)
    found = {r.kind: r for r in resources.resources if "/" not in r.name}
    assert set(found) == {k.kind for k in kinds.KINDS}
    for info in kinds.KINDS:
        res = found[info.kind]
        assert res.categories == [common.CATEGORY]
        assert res.short_names == list(info.short_names)
        assert res.namespaced == info.namespaced
