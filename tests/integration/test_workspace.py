"""Workspace lifecycle against the real control plane, the emulator and the operator process."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.operator import RunWhenEnv, wait_for

pytestmark = pytest.mark.integration

FAST = {"platform.runwhen.com/poll-interval": "2s"}


def test_create_update_and_orphan_delete(rw: RunWhenEnv) -> None:
    rw.start_operator()
    rw.apply(
        "Workspace", "alpha", {"displayName": "Alpha", "enabledLocations": ["location-1"]}, annotations=FAST
    )
    obj = rw.wait_condition("Workspace", "alpha")
    assert obj["status"]["remoteName"] == "alpha"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert rw.condition("Workspace", "alpha", "Synced")["status"] == "True"
    assert "platform.runwhen.com/finalizer" in obj["metadata"]["finalizers"]
    assert not any(k.startswith("kopf.zalando.org") for k in obj["metadata"].get("annotations") or {})
    remote = rw.remote_workspace("alpha")
    assert remote is not None
    assert remote["displayName"] == "Alpha"
    assert remote["enabledLocations"] == ["location-1"]

    # A spec change is sent as a PATCH of only the drifted field.
    rw.emulator.reset_requests()
    rw.apply(
        "Workspace", "alpha", {"displayName": "Alpha 2", "enabledLocations": ["location-1"]}, annotations=FAST
    )
    wait_for(lambda: (rw.remote_workspace("alpha") or {}).get("displayName") == "Alpha 2", 30, "the PATCH")
    counts = rw.emulator.requests()
    assert counts[rw.op("workspace.update")] == 1
    assert rw.emulator.write_count() == 1, counts  # no replace, no second write
    obj = rw.wait_condition("Workspace", "alpha")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2

    # Workspace defaults to deletionPolicy Orphan: the CR goes, the remote workspace stays.
    rw.delete("Workspace", "alpha")
    rw.wait_gone("Workspace", "alpha")
    assert rw.remote_workspace("alpha") is not None


def test_remote_drift_is_corrected_and_delete_policy_removes(rw: RunWhenEnv) -> None:
    rw.start_operator()
    rw.apply("Workspace", "beta", {"displayName": "Beta", "deletionPolicy": "Delete"}, annotations=FAST)
    rw.wait_condition("Workspace", "beta")
    rw.third_party.patch_workspace("beta", displayName="changed behind our back")
    wait_for(lambda: (rw.remote_workspace("beta") or {}).get("displayName") == "Beta", 20, "drift correction")
    # The Event is written after the remote fix and the status patch: wait for it, do not race it.
    wait_for(lambda: "DriftCorrected" in rw.event_reasons("beta"), 10, "a DriftCorrected event")
    assert "Updated" not in rw.event_reasons("beta")  # remote drift, not a spec change

    # Deleted remotely: recreated.
    rw.third_party.delete_workspace("beta")
    wait_for(lambda: rw.remote_workspace("beta") is not None, 20, "recreation")

    rw.delete("Workspace", "beta")
    rw.wait_gone("Workspace", "beta")
    assert rw.remote_workspace("beta") is None


def test_adoption_policies(rw: RunWhenEnv) -> None:
    rw.third_party.create_workspace("taken", displayName="Made elsewhere")
    rw.start_operator()
    rw.apply("Workspace", "taken", {"displayName": "Ours now"})
    obj = rw.wait_condition("Workspace", "taken", status="False", reason="AlreadyExists")
    assert "adoptionPolicy" in rw.condition("Workspace", "taken")["message"]
    assert "remoteName" not in (obj.get("status") or {})
    assert rw.remote_workspace("taken")["displayName"] == "Made elsewhere"

    rw.apply("Workspace", "taken", {"displayName": "Ours now", "adoptionPolicy": "Adopt"})
    rw.wait_condition("Workspace", "taken", reason="Available")
    wait_for(
        lambda: rw.remote_workspace("taken")["displayName"] == "Ours now", 20, "the adopted workspace updated"
    )
    wait_for(lambda: "Adopted" in rw.event_reasons("taken"), 10, "an Adopted event")


def test_observe_only_never_writes(rw: RunWhenEnv) -> None:
    rw.third_party.create_workspace("watched", displayName="Remote truth")
    rw.emulator.reset_requests()
    rw.start_operator()
    rw.apply(
        "Workspace",
        "watched",
        {"displayName": "Different", "managementPolicy": "ObserveOnly", "deletionPolicy": "Delete"},
        annotations=FAST,
    )
    obj = rw.wait_condition("Workspace", "watched", reason="Observed")
    assert obj["status"]["remoteName"] == "watched"
    rw.apply("Workspace", "missing", {"managementPolicy": "ObserveOnly"})
    rw.wait_condition("Workspace", "missing", status="False", reason="NotFound")
    time.sleep(5)
    rw.delete("Workspace", "watched")
    rw.wait_gone("Workspace", "watched")
    assert rw.emulator.write_count() == 0
    assert rw.remote_workspace("watched")["displayName"] == "Remote truth"
    assert rw.remote_workspace("missing") is None


def test_paused_and_reconcile_requested_at(rw: RunWhenEnv) -> None:
    rw.start_operator("--poll-interval", "1h")
    rw.apply("Workspace", "gamma", {"displayName": "Gamma"})
    rw.wait_condition("Workspace", "gamma")
    rw.annotate("Workspace", "gamma", {"platform.runwhen.com/paused": "true"})
    rw.wait_condition("Workspace", "gamma", "Synced", "False", reason="ReconcilePaused")
    rw.emulator.reset_requests()
    rw.apply(
        "Workspace",
        "gamma",
        {"displayName": "Gamma while paused"},
        annotations={"platform.runwhen.com/paused": "true"},
    )
    time.sleep(3)
    assert rw.remote_workspace("gamma")["displayName"] == "Gamma"
    assert sum(v for k, v in rw.emulator.requests().items() if "/workspaces" in k and "token" not in k) == 0

    # Unpausing applies the change; with an hour-long poll interval, drift is only seen on request.
    rw.annotate("Workspace", "gamma", {"platform.runwhen.com/paused": None})
    wait_for(lambda: rw.remote_workspace("gamma")["displayName"] == "Gamma while paused", 20, "unpaused sync")
    rw.third_party.patch_workspace("gamma", displayName="drifted")
    time.sleep(3)
    assert rw.remote_workspace("gamma")["displayName"] == "drifted"
    rw.annotate("Workspace", "gamma", {"platform.runwhen.com/reconcile-requested-at": "now-1"})
    wait_for(
        lambda: rw.remote_workspace("gamma")["displayName"] == "Gamma while paused", 10, "requested reconcile"
    )


def test_health_and_open_issues_follow_the_remote(rw: RunWhenEnv) -> None:
    rw.start_operator()
    rw.apply("Workspace", "delta", {"monitoring": {"interval": "2s", "issues": {"maxListed": 2}}})
    rw.wait_condition("Workspace", "delta")
    # No runner reports yet: nothing says the workspace is healthy.
    wait_for(
        lambda: (
            (rw.get("Workspace", "delta").get("status") or {}).get("health", {}).get("state") == "Unknown"
        ),
        20,
        "health Unknown without runners",
    )
    rw.emulator.set_runners("delta", [{"name": "loc-1", "health": "online"}])
    wait_for(
        lambda: (
            (rw.get("Workspace", "delta").get("status") or {}).get("health", {}).get("state") == "Healthy"
        ),
        20,
        "health Healthy",
    )
    first = rw.emulator.open_issue("delta", "Pods crash-looping", 1, "k8s-health")
    rw.emulator.open_issue("delta", "Disk filling", 3, "disk")
    rw.emulator.open_issue("delta", "Cert expires soon", 4, "certs")
    rw.emulator.set_runners(
        "delta",
        [{"name": "loc-1", "health": "online"}, {"name": "loc-2", "health": "stale"}],
    )

    def issues_seen() -> bool:
        status = rw.get("Workspace", "delta").get("status") or {}
        return (status.get("openIssues") or {}).get("count") == 3 and status["health"]["state"] == "Degraded"

    wait_for(issues_seen, 20, "3 open issues and Degraded")
    status = rw.get("Workspace", "delta")["status"]
    assert status["openIssues"]["bySeverity"] == {"critical": 1, "major": 0, "minor": 1, "warning": 1}
    assert [i["title"] for i in status["openIssues"]["top"]] == ["Pods crash-looping", "Disk filling"]
    assert "runner/loc-2: degraded (stale" in status["health"]["message"], status["health"]
    assert [d["component"] for d in status["health"]["details"]] == ["runner/loc-1", "runner/loc-2"]
    rw.emulator.close_issue("delta", first["id"])
    wait_for(lambda: rw.get("Workspace", "delta")["status"]["openIssues"]["count"] == 2, 20, "issue closed")
    assert rw.get("Workspace", "delta")["status"]["openIssues"]["bySeverity"]["critical"] == 0


def test_idle_resync_writes_nothing(rw: RunWhenEnv) -> None:
    proc = rw.start_operator("--poll-interval", "2s")
    names = [f"idle-{i}" for i in range(8)]
    for name in names:
        rw.apply("Workspace", name, {"displayName": name, "monitoring": {"interval": "4s"}})
    # Accepted by the CRD (slxGroups is free-form there) but rejected by RunWhen: groups are objects.
    rw.apply("Workspace", "bad-groups", {"slxGroups": ["k8s-health"]})
    for name in names:
        rw.wait_condition("Workspace", name)
        wait_for(
            lambda n=name: bool((rw.get("Workspace", n).get("status") or {}).get("health")), 20, "health"
        )
    bad = rw.wait_condition("Workspace", "bad-groups", "Synced", "False", reason="InvalidSpec")
    message = rw.condition("Workspace", "bad-groups", "Synced")["message"]
    assert "slxGroups[0]" in message, message
    assert rw.condition("Workspace", "bad-groups")["reason"] == "InvalidSpec"
    # Refused before anything was sent: no workspace was created.
    assert "remoteName" not in bad["status"]
    assert rw.remote_workspace("bad-groups") is None
    time.sleep(3)  # let the first monitor passes settle
    before = rw.k8s_resource_versions("Workspace")
    rw.emulator.reset_requests()
    time.sleep(60)
    after = rw.k8s_resource_versions("Workspace")
    counts = rw.emulator.requests()
    assert after == before, "an idle minute changed the custom resources"
    # Not one write, so not one retry of the rejected create either: it waits for a spec change.
    assert rw.emulator.write_count() == 0
    assert counts[rw.op("workspace.create")] == 0
    # The drift checks really ran: one coalesced list of workspaces per interval, not one GET each.
    # Eight objects polled every ~2 s would be ~240 reads a minute one by one; shared listings no
    # older than half the interval make it about one read a second whatever the number of objects.
    lists = counts[rw.op("workspace.list")]
    assert 10 <= lists <= 100, counts
    assert counts[rw.op("workspace.get")] == 0
    # And the health monitor ran every ~4 s for each workspace (reads only).
    assert counts[rw.op("workspace.health")] >= 8 * 10
    assert "Traceback" not in proc.logs()
    warnings = [e for e in _events_of(rw, "bad-groups") if e.type == "Warning"]
    assert len(warnings) == 1, [e.message for e in warnings]

    # Fixing the spec is what makes it try again.
    rw.apply("Workspace", "bad-groups", {"slxGroups": {"platform": ["k8s-health"]}})
    rw.wait_condition("Workspace", "bad-groups", reason="Available")
    # A map in the spec is the platform's list of group objects.
    assert rw.remote_workspace("bad-groups")["slxGroups"] == [{"name": "platform", "slxs": ["k8s-health"]}]


def test_credentials_rotation_and_wrong_password(rw: RunWhenEnv) -> None:
    rw.start_operator("--connection-check-interval", "2s")
    rw.apply("Workspace", "eps", {"displayName": "Eps"})
    rw.wait_condition("Workspace", "eps")
    # Same credentials, rotated to a token: the connection is rebuilt, everything stays Ready.
    rw.secret(rw.secret_name, {"token": rw.emulator.api_token, "username": "", "password": ""})
    rw.emulator.reset_requests()
    rw.annotate("Workspace", "eps", {"platform.runwhen.com/reconcile-requested-at": "1"})
    wait_for(
        lambda: rw.get("ClusterRunWhenConnection", "default").get("status", {}).get("authMode") == "token",
        90,
        "the rotated Secret picked up",
    )
    rw.wait_condition("Workspace", "eps")
    # A wrong password: the connection turns NotReady with the reason, and so does a CR that needs it.
    rw.secret(rw.secret_name, {"token": "", "username": rw.emulator.username, "password": "wrong"})
    conn = None

    def not_ready() -> bool:
        nonlocal conn
        conn = rw.get("ClusterRunWhenConnection", "default")
        ready = [c for c in (conn.get("status") or {}).get("conditions", []) if c["type"] == "Ready"]
        return bool(ready) and ready[0]["status"] == "False" and ready[0]["reason"] == "Unauthorized"

    wait_for(not_ready, 30, lambda: f"connection Unauthorized: {conn}")
    rw.apply("Workspace", "zeta", {"displayName": "Zeta"})
    obj = rw.wait_condition("Workspace", "zeta", status="False", reason="ConnectionNotReady")
    assert "ClusterRunWhenConnection default" in rw.condition("Workspace", "zeta")["message"]
    assert "wrong" not in str(obj)
    assert "wrong" not in str(conn)


def _events_of(rw: RunWhenEnv, name: str) -> list[Any]:
    from kubernetes import client as k8s

    events = k8s.CoreV1Api(rw.api).list_namespaced_event(rw.namespace).items
    return [e for e in events if e.involved_object.name == name]
