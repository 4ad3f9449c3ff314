"""RunnerLocation against the real control plane, the emulator and the operator process: the two
Secrets the runwhen-local chart mounts, a quiet resync, a lost Secret, a rotation, the runner's
health in the status, deletion under both policies, and no token anywhere but in its Secret."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.operator import RunWhenEnv, wait_for

pytestmark = pytest.mark.integration

TOKEN_SECRET = "runner-registration-token"
UPLOAD_SECRET = "uploadinfo"
ROTATE = "platform.runwhen.com/rotate-runner-token"


def _wait_event(rw: RunWhenEnv, name: str, reason: str) -> None:
    """Kopf posts the operator's Events in the background: wait for one rather than expect it the
    moment the status shows its cause."""
    wait_for(
        lambda: reason in rw.event_reasons(name), 15, lambda: f"{name}: {reason} in {rw.event_reasons(name)}"
    )


def _events(rw: RunWhenEnv, name: str) -> list[k8s.CoreV1Event]:
    events = k8s.CoreV1Api(rw.api).list_namespaced_event(rw.namespace).items
    return [e for e in events if e.involved_object.name == name]


def _remote(rw: RunWhenEnv, workspace: str) -> dict[str, Any]:
    found = rw.remote_workspace(workspace)
    assert found is not None, f"no remote workspace {workspace}"
    return found


def _secret_versions(rw: RunWhenEnv, *names: str) -> dict[str, str]:
    versions = {}
    for name in names:
        secret = rw.read_secret(name)
        assert secret is not None, name
        versions[name] = secret.metadata.resource_version
    return versions


def _upload_info(rw: RunWhenEnv, name: str = UPLOAD_SECRET) -> dict[str, Any]:
    text = rw.secret_value(name, "uploadInfo.yaml")
    assert text is not None
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def test_secrets_resync_lost_secret_rotation_health_and_no_leaks(rw: RunWhenEnv) -> None:
    proc = rw.start_operator("--poll-interval", "2s")
    # The Workspace's spec owns its enabled locations: the RunnerLocation's location stays in them.
    rw.apply("Workspace", "ops", {"enabledLocations": ["public-01"], "deletionPolicy": "Delete"})
    rw.apply("RunnerLocation", "loc-a", {"workspaceRef": {"name": "ops"}})

    obj = rw.wait_condition("RunnerLocation", "loc-a", "Synced", timeout=60)
    rw.wait_condition("RunnerLocation", "loc-a", "Ready", "False", reason="WaitingForRunner")
    obj = rw.get("RunnerLocation", "loc-a")
    status = obj["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Reconciling"]["status"] == "True"
    assert "Stalled" not in conditions
    assert "docs/runner.md" in conditions["Ready"]["message"]
    assert (status["workspace"], status["location"], status["locationEnabled"]) == ("ops", "loc-a", True)
    assert status["runnerTokenSecret"] == TOKEN_SECRET
    assert status["uploadInfoSecret"] == UPLOAD_SECRET
    assert status["secretNamespace"] == rw.namespace

    # The Secrets, in the chart's shape, owned and labelled.
    remote = _remote(rw, "ops")
    token = rw.secret_value(TOKEN_SECRET, "token")
    assert token
    assert token == remote["runnerTokens"]["loc-a"]
    info = _upload_info(rw)
    assert info["token"] == remote["uploadTokens"]["loc-a"]
    assert info["workspaceName"] == "ops"
    assert info["locationName"] == info["defaultLocation"] == "loc-a"
    assert info["papiURL"] == rw.emulator.url
    assert info["workspaceOwnerEmail"]
    for name, key in ((TOKEN_SECRET, "token"), (UPLOAD_SECRET, "uploadInfo.yaml")):
        secret = rw.read_secret(name)
        assert secret is not None
        assert list(secret.data) == [key]
        owner = secret.metadata.owner_references[0]
        assert (owner.kind, owner.name, owner.controller) == ("RunnerLocation", "loc-a", True)
        assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "runwhen-operator"
        assert secret.metadata.labels["platform.runwhen.com/location"] == "loc-a"
        assert secret.metadata.annotations["platform.runwhen.com/runnerlocation"] == f"{rw.namespace}/loc-a"
    # Enabled in the workspace, beside what the Workspace's spec lists; the Workspace keeps it there.
    assert sorted(remote["enabledLocations"]) == ["loc-a", "public-01"]
    assert rw.emulator.requests()[rw.op("runner.token")] == 1
    assert rw.emulator.requests()[rw.op("runner.upload")] == 1
    _wait_event(rw, "loc-a", "SecretsWritten")
    assert "WaitingForWorkspace" not in rw.event_reasons("loc-a")  # a wait is a condition, not an event

    # Resyncs and a restart: runners are listed, nothing is read from RunWhen's tokens, nothing written.
    time.sleep(3)
    proc.kill()
    rw.emulator.reset_requests()
    versions = rw.k8s_resource_versions("RunnerLocation")
    ws_versions = rw.k8s_resource_versions("Workspace")
    secrets = _secret_versions(rw, TOKEN_SECRET, UPLOAD_SECRET)
    events = len(_events(rw, "loc-a"))
    proc.start()
    proc.wait_healthy()
    time.sleep(7)
    requests = rw.emulator.requests()
    assert requests[rw.op("runner.list")] >= 2  # it did look, more than once
    assert requests[rw.op("runner.token")] == 0
    assert requests[rw.op("runner.upload")] == 0
    assert rw.emulator.write_count() == 0
    assert rw.k8s_resource_versions("RunnerLocation") == versions
    assert rw.k8s_resource_versions("Workspace") == ws_versions
    assert _secret_versions(rw, TOKEN_SECRET, UPLOAD_SECRET) == secrets
    assert len(_events(rw, "loc-a")) == events
    assert sorted(_remote(rw, "ops")["enabledLocations"]) == ["loc-a", "public-01"]

    # The runner reports in: Ready, with its id and heartbeat in the status.
    runner = rw.emulator.heartbeat("ops", "loc-a")
    obj = rw.wait_condition("RunnerLocation", "loc-a", reason="RunnerOnline", timeout=30)
    status = obj["status"]
    assert (status["health"], status["runnerId"], status["runnerName"]) == (
        "online",
        runner["value"],
        "loc-a",
    )
    assert status["lastHeartbeat"].startswith(runner["lastHeartbeat"][:19])
    conditions = {c["type"] for c in status["conditions"]}
    assert "Reconciling" not in conditions
    assert "Stalled" not in conditions
    _wait_event(rw, "loc-a", "RunnerOnline")
    # It goes quiet: stale, not Ready, work under way rather than stalled.
    rw.emulator.heartbeat("ops", "loc-a", health="stale")
    obj = rw.wait_condition("RunnerLocation", "loc-a", "Ready", "False", reason="RunnerStale", timeout=30)
    assert obj["status"]["health"] == "stale"
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Reconciling"] == "True"
    rw.emulator.heartbeat("ops", "loc-a")
    rw.wait_condition("RunnerLocation", "loc-a", reason="RunnerOnline", timeout=30)

    # A lost Secret comes back with a fresh token; the other one is left alone.
    rw.emulator.reset_requests()
    upload_before = rw.read_secret(UPLOAD_SECRET).metadata.resource_version  # type: ignore[union-attr]
    k8s.CoreV1Api(rw.api).delete_namespaced_secret(TOKEN_SECRET, rw.namespace)
    wait_for(lambda: rw.secret_value(TOKEN_SECRET, "token") not in (None, token), 20, "token Secret back")
    second = rw.secret_value(TOKEN_SECRET, "token")
    assert second == _remote(rw, "ops")["runnerTokens"]["loc-a"]
    assert rw.emulator.requests()[rw.op("runner.token")] == 1
    assert rw.emulator.requests()[rw.op("runner.upload")] == 0
    assert rw.read_secret(UPLOAD_SECRET).metadata.resource_version == upload_before  # type: ignore[union-attr]

    # A rotation asked for by annotation: both Secrets rewritten, once per new value.
    first_upload = info["token"]
    rw.annotate("RunnerLocation", "loc-a", {ROTATE: "2026-12-01"})
    wait_for(
        lambda: rw.get("RunnerLocation", "loc-a")["status"].get("tokenRotation") == "2026-12-01",
        20,
        "rotated",
    )
    third = rw.secret_value(TOKEN_SECRET, "token")
    rotated_info = _upload_info(rw)
    assert third not in (None, token, second)
    assert third == _remote(rw, "ops")["runnerTokens"]["loc-a"]
    assert rotated_info["token"] not in (first_upload,)
    assert rotated_info["token"] == _remote(rw, "ops")["uploadTokens"]["loc-a"]
    time.sleep(4)
    assert rw.emulator.requests()[rw.op("runner.token")] == 2  # the lost Secret, then the rotation
    assert rw.emulator.requests()[rw.op("runner.upload")] == 1

    # No token anywhere but in its Secret: not in the log, the status or an event.
    logs = proc.logs()
    assert "DEBUG" in logs
    everything = [token, second, third, first_upload, rotated_info["token"]]
    texts = [str(rw.get("RunnerLocation", "loc-a")), str(rw.get("Workspace", "ops"))]
    texts += [
        f"{e.reason} {e.message}" for e in k8s.CoreV1Api(rw.api).list_namespaced_event(rw.namespace).items
    ]
    for value in everything:
        assert value
        assert value not in logs
        assert not any(value in text for text in texts)
    assert "Traceback" not in logs


def test_delete_and_orphan(rw: RunWhenEnv) -> None:
    rw.start_operator("--poll-interval", "2s")
    # The Workspace leaves its enabled locations alone: the RunnerLocations add theirs.
    rw.apply("Workspace", "ops", {"deletionPolicy": "Delete"})
    rw.apply("RunnerLocation", "loc-d", {"workspaceRef": {"name": "ops"}})
    # loc-d owns the default Secrets before loc-o exists, so which one is refused does not depend
    # on which of two fresh objects the operator happens to reconcile first.
    rw.wait_condition("RunnerLocation", "loc-d", "Synced", timeout=60)
    other = {"runnerTokenSecretName": "o-token", "uploadInfoSecretName": "o-upload"}
    rw.apply("RunnerLocation", "loc-o", {"workspaceRef": {"name": "ops"}, "deletionPolicy": "Orphan"})
    # Two locations cannot share one pair of Secrets: the second is told so, and then given its own.
    conflict = rw.wait_condition("RunnerLocation", "loc-o", "Synced", "False", reason="SecretConflict")
    assert (
        "controlled by another object"
        in {c["type"]: c for c in conflict["status"]["conditions"]}["Synced"]["message"]
    )
    rw.apply(
        "RunnerLocation", "loc-o", {"workspaceRef": {"name": "ops"}, "deletionPolicy": "Orphan", **other}
    )
    for name in ("loc-d", "loc-o"):
        rw.wait_condition("RunnerLocation", name, "Synced", timeout=60)
    assert rw.secret_value("o-token", "token") == _remote(rw, "ops")["runnerTokens"]["loc-o"]
    wait_for(lambda: sorted(_remote(rw, "ops")["enabledLocations"]) == ["loc-d", "loc-o"], 20, "both enabled")
    _wait_event(rw, "loc-d", "LocationEnabled")
    rw.emulator.heartbeat("ops", "loc-d")
    rw.emulator.heartbeat("ops", "loc-o")
    rw.emulator.heartbeat("ops", "elsewhere")  # another location's runner: never touched
    rw.wait_condition("RunnerLocation", "loc-d", reason="RunnerOnline", timeout=30)
    orphan = rw.wait_condition("RunnerLocation", "loc-o", reason="RunnerOnline", timeout=30)
    orphan_id = orphan["status"]["runnerId"]

    rw.emulator.reset_requests()
    rw.delete("RunnerLocation", "loc-d")
    rw.wait_gone("RunnerLocation", "loc-d", timeout=30)
    remote = _remote(rw, "ops")
    assert sorted(r["name"] for r in remote["runners"]) == ["elsewhere", "loc-o"]
    assert remote["enabledLocations"] == ["loc-o"]
    assert rw.emulator.requests()[rw.op("runner.delete")] == 1
    _wait_event(rw, "loc-d", "Deleted")

    rw.delete("RunnerLocation", "loc-o")
    rw.wait_gone("RunnerLocation", "loc-o", timeout=30)
    remote = _remote(rw, "ops")
    assert [r["value"] for r in remote["runners"] if r["name"] == "loc-o"] == [orphan_id]
    assert remote["enabledLocations"] == ["loc-o"]
    assert rw.emulator.requests()[rw.op("runner.delete")] == 1
    _wait_event(rw, "loc-o", "Orphaned")
    # The Workspace's own resync keeps the orphaned location: its spec does not own the list.
    time.sleep(3)
    assert _remote(rw, "ops")["enabledLocations"] == ["loc-o"]


def test_unmanaged_workspace_and_another_secret_namespace(rw: RunWhenEnv) -> None:
    """A workspace named by workspaceName is not touched; Secrets in another namespace are labelled,
    not owned (an owner reference cannot cross namespaces)."""
    rw.start_operator("--poll-interval", "2s")
    rw.third_party.create_workspace("shared")
    other = f"{rw.namespace}-local"
    core = k8s.CoreV1Api(rw.api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=other)))
    try:
        rw.apply(
            "RunnerLocation",
            "edge",
            {"workspaceName": "shared", "name": "edge-01", "secretNamespace": other},
        )
        rw.wait_condition("RunnerLocation", "edge", "Synced", timeout=60)
        secret = core.read_namespaced_secret(TOKEN_SECRET, other)
        assert not secret.metadata.owner_references
        assert secret.metadata.labels["platform.runwhen.com/location"] == "edge-01"
        token = base64.b64decode(secret.data["token"]).decode()
        assert token == _remote(rw, "shared")["runnerTokens"]["edge-01"]
        info = yaml.safe_load(
            base64.b64decode(core.read_namespaced_secret(UPLOAD_SECRET, other).data["uploadInfo.yaml"])
        )
        assert (info["workspaceName"], info["locationName"]) == ("shared", "edge-01")
        assert rw.get("RunnerLocation", "edge")["status"].get("locationEnabled") is None
        assert "edge-01" not in (_remote(rw, "shared").get("enabledLocations") or [])
        rw.emulator.heartbeat("shared", "edge-01")
        rw.wait_condition("RunnerLocation", "edge", reason="RunnerOnline", timeout=30)
        rw.delete("RunnerLocation", "edge")
        rw.wait_gone("RunnerLocation", "edge", timeout=30)
        assert [r for r in _remote(rw, "shared")["runners"] if r["name"] == "edge-01"] == []
        # Not owned: the Secrets stay with the runner's install.
        assert core.read_namespaced_secret(TOKEN_SECRET, other).data["token"]
    finally:
        core.delete_namespace(other)


def test_documented_dialect(rw: RunWhenEnv, emulator_factory) -> None:  # type: ignore[no-untyped-def]
    rw.use_emulator(emulator_factory(dialect="documented"))
    rw.start_operator("--poll-interval", "2s")
    rw.apply("Workspace", "docs", {"deletionPolicy": "Delete"})
    rw.apply("RunnerLocation", "loc-doc", {"workspaceRef": {"name": "docs"}})
    rw.wait_condition("RunnerLocation", "loc-doc", "Synced", timeout=60)
    remote = _remote(rw, "docs")
    assert rw.secret_value(TOKEN_SECRET, "token") == remote["runnerTokens"][""]  # one per workspace
    info = _upload_info(rw)
    assert info["token"] == remote["uploadTokens"][""]
    assert (info["workspaceName"], info["locationName"], info["defaultLocation"]) == (
        "docs",
        "loc-doc",
        "loc-doc",
    )
    assert remote["enabledLocations"] == ["loc-doc"]
    assert rw.emulator.requests()[rw.op("runner.upload")] == 1
    rw.emulator.heartbeat("docs", "loc-doc")
    rw.wait_condition("RunnerLocation", "loc-doc", reason="RunnerOnline", timeout=30)
    rw.delete("RunnerLocation", "loc-doc")
    rw.wait_gone("RunnerLocation", "loc-doc", timeout=30)
    remote = _remote(rw, "docs")
    assert remote["runners"] == []
    assert remote["enabledLocations"] == []
