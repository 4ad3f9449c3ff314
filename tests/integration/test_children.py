"""Workflow and Persona lifecycle, webhook tokens and idempotency under faults and crashes."""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter

import pytest
from kubernetes import client as k8s
from kubernetes import watch

from tests.support.operator import GROUP, VERSION, RunWhenEnv, wait_for

pytestmark = pytest.mark.integration

FAST = {"platform.runwhen.com/poll-interval": "2s"}


def definition(slx: str = "k8s-health", title: str = "Check pods") -> dict:
    return {
        "fromActivities": [
            {
                "name": "on-alert",
                "displayName": "On alert",
                "match": {"activityVerbs": ["alert", "page"], "slxs": [slx]},
                "actions": [
                    {"tasks": {"slx": slx, "persona": "sre", "titles": [title], "sessionTTL": "20m"}}
                ],
            }
        ]
    }


def _events(rw: RunWhenEnv) -> list[k8s.CoreV1Event]:
    return list(k8s.CoreV1Api(rw.api).list_namespaced_event(rw.namespace).items)


def test_children_wait_for_the_workspace_then_sync(rw: RunWhenEnv) -> None:
    rw.start_operator()
    rw.apply(
        "Workflow", "triage", {"workspaceRef": {"name": "ops"}, "definition": definition()}, annotations=FAST
    )
    rw.apply(
        "Persona",
        "sre",
        {"workspaceRef": {"name": "ops"}, "fullName": "SRE", "filterConfidenceThreshold": 0.7},
        annotations=FAST,
    )
    rw.wait_condition("Workflow", "triage", status="False", reason="WaitingForWorkspace")
    rw.wait_condition("Persona", "sre", status="False", reason="WaitingForWorkspace")
    assert rw.remote("workflows") == []

    rw.apply("Workspace", "ops", {"displayName": "Ops", "deletionPolicy": "Delete"})
    wf = rw.wait_condition("Workflow", "triage", timeout=30)
    persona = rw.wait_condition("Persona", "sre", timeout=30)
    remote_wf = rw.remote("workflows", "ops")
    remote_p = rw.remote("personas", "ops")
    assert [w["id"] for w in remote_wf] == [wf["status"]["id"]]
    assert [p["id"] for p in remote_p] == [persona["status"]["id"]]
    assert wf["status"]["workspace"] == "ops"
    assert remote_wf[0]["definition"]["fromActivities"][0]["actions"][0]["tasks"]["titles"] == ["Check pods"]
    assert remote_p[0]["filterConfidenceThreshold"] == 0.7
    assert remote_p[0]["runConfidenceThreshold"] == 0.95  # server default kept, not fought over

    # Spec change: one write of the full body (a PUT by id, or an upsert by name).
    rw.emulator.reset_requests()
    rw.apply(
        "Workflow",
        "triage",
        {"workspaceRef": {"name": "ops"}, "definition": definition(title="Check nodes")},
        annotations=FAST,
    )
    wait_for(
        lambda: (
            rw.remote("workflows", "ops")[0]["definition"]["fromActivities"][0]["actions"][0]["tasks"][
                "titles"
            ]
            == ["Check nodes"]
        ),
        20,
        "the update",
    )
    assert rw.emulator.requests()[rw.op("workflow.update")] == 1

    # Remote drift corrected; server-side reordering of a set-like list is not drift.
    rw.third_party.put_child("workflow", "ops", "triage", {"definition": definition(title="tampered")})
    wait_for(
        lambda: (
            rw.remote("workflows", "ops")[0]["definition"]["fromActivities"][0]["actions"][0]["tasks"][
                "titles"
            ]
            == ["Check nodes"]
        ),
        20,
        "drift correction",
    )
    reordered = definition(title="Check nodes")
    reordered["fromActivities"][0]["match"]["activityVerbs"] = ["page", "alert"]
    rw.third_party.put_child("workflow", "ops", "triage", {"definition": reordered})
    rw.emulator.reset_requests()
    time.sleep(5)
    assert rw.emulator.write_count() == 0

    # Deleted remotely: recreated under a new id.
    old_id = persona["status"]["id"]
    rw.third_party.delete_child("persona", "ops", "sre")
    wait_for(
        lambda: [p["id"] for p in rw.remote("personas", "ops")] not in ([], [old_id]), 20, "persona recreated"
    )
    new_id = rw.remote("personas", "ops")[0]["id"]
    wait_for(lambda: rw.get("Persona", "sre")["status"].get("id") == new_id, 20, "new id recorded")
    wait_for(
        lambda: "Recreated" in [e.reason for e in _events(rw) if e.involved_object.name == "sre"],
        10,
        "a Recreated event",
    )

    # Delete (the default for these kinds) removes the remote object; Orphan keeps it.
    rw.apply(
        "Persona",
        "sre",
        {
            "workspaceRef": {"name": "ops"},
            "fullName": "SRE",
            "filterConfidenceThreshold": 0.7,
            "deletionPolicy": "Orphan",
        },
        annotations=FAST,
    )
    rw.wait_condition("Persona", "sre")
    rw.delete("Persona", "sre")
    rw.delete("Workflow", "triage")
    rw.wait_gone("Persona", "sre")
    rw.wait_gone("Workflow", "triage")
    assert rw.remote("workflows", "ops") == []
    assert [p["id"] for p in rw.remote("personas", "ops")] == [new_id]


def test_children_applied_with_their_workspace_are_written_twice_each(rw: RunWhenEnv) -> None:
    """Kopf's finalizer and one status write per child, not a `WaitingForWorkspace` write before
    Ready: a new child waits quietly (``--parent-wait``) for the Workspace's first verdict."""
    rw.start_operator()
    rw.apply("Workspace", "first", {"displayName": "First"})
    rw.wait_condition("Workspace", "first")  # the connection is verified: what follows is the kind's own cost
    custom = rw.custom
    start_rv = custom.list_namespaced_custom_object(GROUP, VERSION, rw.namespace, "personas")["metadata"][
        "resourceVersion"
    ]
    modified: Counter[str] = Counter()
    reasons: dict[str, list[str]] = {}
    stop = threading.Event()

    def count() -> None:
        w = watch.Watch()
        for event in w.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            rw.namespace,
            "personas",
            resource_version=start_rv,
            timeout_seconds=60,
        ):
            obj = event["object"]
            name = obj["metadata"]["name"]
            if event["type"] == "MODIFIED":
                modified[name] += 1
                ready = [c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"]
                reasons.setdefault(name, []).extend(c["reason"] for c in ready)
            if stop.is_set():
                w.stop()

    watcher = threading.Thread(target=count, daemon=True)
    watcher.start()
    rw.apply("Workspace", "together", {"displayName": "Together", "deletionPolicy": "Delete"})
    names = [f"p-{i}" for i in range(8)]
    for name in names:
        rw.apply("Persona", name, {"workspaceRef": {"name": "together"}, "fullName": name.upper()})
    for name in names:
        rw.wait_condition("Persona", name, timeout=30)
    time.sleep(2.0)  # any trailing write
    stop.set()
    rw.apply(
        "Persona", "p-last", {"workspaceRef": {"name": "together"}, "fullName": "LAST"}
    )  # ends the watch
    watcher.join(30)
    assert {n: modified[n] for n in names} == dict.fromkeys(names, 2), reasons
    assert all("WaitingForWorkspace" not in reasons.get(n, []) for n in names), reasons


def test_adoption_and_unmanaged_parent(rw: RunWhenEnv) -> None:
    rw.third_party.create_workspace("shared")
    rw.third_party.create_child("persona", "shared", "oncall", {"fullName": "Made by hand"})
    made = rw.remote("personas", "shared")[0]
    rw.start_operator()
    rw.apply("Persona", "oncall", {"workspaceName": "shared", "fullName": "Managed"})
    rw.wait_condition("Persona", "oncall", status="False", reason="AlreadyExists")
    assert rw.remote("personas", "shared")[0]["fullName"] == "Made by hand"
    rw.apply(
        "Persona", "oncall", {"workspaceName": "shared", "fullName": "Managed", "adoptionPolicy": "Adopt"}
    )
    obj = rw.wait_condition("Persona", "oncall", reason="Available")
    assert obj["status"]["id"] == made["id"]
    wait_for(
        lambda: rw.remote("personas", "shared")[0]["fullName"] == "Managed", 20, "adopted persona updated"
    )
    assert len(rw.remote("personas", "shared")) == 1


def test_webhook_token_secret_and_no_secret_leaks(rw: RunWhenEnv, emulator_factory) -> None:  # type: ignore[no-untyped-def]
    # Credentials that cannot appear by accident (the shared emulator's are admin/admin).
    secret_emulator = emulator_factory(password="pw-7Hq2-never-logged", token_lifetime=3.0)
    rw.use_emulator(secret_emulator)
    proc = rw.start_operator()
    rw.apply("Workspace", "hooks", {})
    rw.apply(
        "Workflow",
        "paging",
        {
            "workspaceRef": {"name": "hooks"},
            "definition": definition(),
            "webhookTokenSecretRef": {"name": "paging-webhook"},
        },
    )
    wf = rw.wait_condition("Workflow", "paging")
    wait_for(lambda: rw.read_secret("paging-webhook") is not None, 20, "webhook Secret")
    secret = rw.read_secret("paging-webhook")
    assert secret is not None
    remote_wf = rw.remote("workflows", "hooks")[0]
    assert remote_wf["id"] == wf["status"]["id"]

    token = base64.b64decode(secret.data["token"]).decode()
    assert token == remote_wf["webhookToken"]  # what the server holds
    assert remote_wf["tokenRetrieved"] is True  # read once, as the platform allows
    assert "/workflows/paging/" in base64.b64decode(secret.data["webhookUrl"]).decode()
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("Workflow", "paging", True)
    assert rw.get("Workflow", "paging")["status"]["webhookTokenSecret"] == "paging-webhook"
    # The token is in the Secret and nowhere else.
    assert token not in str(rw.get("Workflow", "paging"))
    assert not any(token in (e.message or "") for e in _events(rw))
    time.sleep(4)  # outlive one access token: a refresh happens too
    rw.annotate("Workflow", "paging", {"platform.runwhen.com/reconcile-requested-at": "again"})
    wait_for(
        lambda: rw.get("Workflow", "paging")["status"].get("lastHandledReconcileAt") == "again", 20, "resync"
    )
    logs = proc.logs()
    assert "DEBUG" in logs  # the operator ran at debug level: the most talkative
    for secret_value in (token, rw.emulator.password):
        assert secret_value not in logs
        assert secret_value not in str(rw.get("ClusterRunWhenConnection", "default"))
        assert not any(secret_value in (e.message or "") for e in _events(rw))


def test_fifty_and_fifty_under_faults_and_crashes_make_no_duplicates(rw: RunWhenEnv) -> None:
    n = 50
    proc = rw.start_operator("--workers", "16")
    rw.apply("Workspace", "bulk", {"deletionPolicy": "Delete"})
    rw.wait_condition("Workspace", "bulk")
    rw.emulator.set_faults(errorRate=0.2, failAfterCommitRate=0.2, seed=7)
    for i in range(n):
        rw.apply(
            "Workflow",
            f"wf-{i}",
            {"workspaceRef": {"name": "bulk"}, "definition": definition(slx=f"slx-{i}")},
        )
        rw.apply("Persona", f"p-{i}", {"workspaceRef": {"name": "bulk"}, "fullName": f"Persona {i}"})
    rng = random.Random(3)
    for _ in range(3):  # three crashes in the middle of the sync
        time.sleep(rng.uniform(1.0, 3.0))
        proc.kill()
        proc.start()
        proc.wait_healthy()

    def all_ready() -> bool:
        for kind, _prefix in (("Workflow", "wf"), ("Persona", "p")):
            items = rw.custom.list_namespaced_custom_object(
                "platform.runwhen.com", "v1alpha1", rw.namespace, kind.lower() + "s"
            )["items"]
            ready = [
                i
                for i in items
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (i.get("status") or {}).get("conditions", [])
                )
            ]
            if len(ready) != n:
                return False
        return True

    wait_for(all_ready, 240, "all 100 Ready under faults")
    rw.emulator.clear_faults()
    wf_names = Counter(w["name"] for w in rw.remote("workflows", "bulk"))
    p_names = Counter(p["name"] for p in rw.remote("personas", "bulk"))
    assert sum(wf_names.values()) == n, wf_names.most_common(3)
    assert max(wf_names.values()) == 1, wf_names.most_common(3)
    assert sum(p_names.values()) == n, p_names.most_common(3)
    assert max(p_names.values()) == 1, p_names.most_common(3)
    # Every CR records the id of the one remote object of its name.
    ids = {w["name"]: w["id"] for w in rw.remote("workflows", "bulk")}
    for i in range(0, n, 7):
        assert rw.get("Workflow", f"wf-{i}")["status"]["id"] == ids[f"wf-{i}"]

    rw.emulator.set_faults(errorRate=0.2, failAfterCommitRate=0.2, seed=11)
    for i in range(n):
        rw.delete("Workflow", f"wf-{i}")
        rw.delete("Persona", f"p-{i}")
    for i in range(n):
        rw.wait_gone("Workflow", f"wf-{i}", timeout=120)
        rw.wait_gone("Persona", f"p-{i}", timeout=120)
    rw.emulator.clear_faults()
    assert rw.remote("workflows", "bulk") == []
    assert rw.remote("personas", "bulk") == []


ROTATE = "PATCH /api/v3/workspaces/{workspace_short_name}/workflows/{workflow_short_name}/rotate-token"


def test_webhook_secret_is_the_source_of_truth(rw: RunWhenEnv) -> None:
    """The platform hands a webhook token out once: the Secret is never read from RunWhen again on a
    resync or restart; a lost Secret and the rotation annotation rotate it."""
    proc = rw.start_operator("--poll-interval", "2s")
    rw.apply("Workspace", "hooks", {})
    spec = {
        "workspaceRef": {"name": "hooks"},
        "definition": definition(),
        "webhookTokenSecretRef": {"name": "paging-webhook"},
    }
    rw.apply("Workflow", "paging", spec)
    rw.wait_condition("Workflow", "paging")
    wait_for(lambda: rw.secret_value("paging-webhook", "token") is not None, 20, "webhook Secret")
    first = rw.secret_value("paging-webhook", "token")
    assert first == rw.remote("workflows", "hooks")[0]["webhookToken"]
    assert rw.emulator.requests()[rw.op("workflow.token")] == 1

    # Resyncs and a restart read neither the token nor write anything.
    time.sleep(3)
    proc.kill()
    rw.emulator.reset_requests()
    versions = rw.k8s_resource_versions("Workflow")
    proc.start()
    proc.wait_healthy()
    time.sleep(6)
    assert rw.emulator.requests()[rw.op("workflow.token")] == 0
    assert rw.emulator.write_count() == 0
    assert rw.k8s_resource_versions("Workflow") == versions
    assert rw.secret_value("paging-webhook", "token") == first

    # The Secret is lost: the token cannot be read again, so it is rotated and the new one written.
    k8s.CoreV1Api(rw.api).delete_namespaced_secret("paging-webhook", rw.namespace)
    wait_for(lambda: rw.secret_value("paging-webhook", "token") not in (None, first), 20, "Secret back")
    second = rw.secret_value("paging-webhook", "token")
    assert second == rw.remote("workflows", "hooks")[0]["webhookToken"]
    assert rw.emulator.requests()[ROTATE] == 1

    # A rotation asked for by annotation, once per new value.
    rw.annotate("Workflow", "paging", {"platform.runwhen.com/rotate-webhook-token": "2026-12-01"})
    wait_for(lambda: rw.secret_value("paging-webhook", "token") not in (None, second), 20, "rotated")
    wait_for(
        lambda: rw.get("Workflow", "paging")["status"].get("webhookTokenRotation") == "2026-12-01",
        20,
        "rotation recorded",
    )
    assert rw.secret_value("paging-webhook", "token") == rw.remote("workflows", "hooks")[0]["webhookToken"]
    time.sleep(4)
    assert rw.emulator.requests()[ROTATE] == 2  # handled once, not at every pass
    assert "Traceback" not in proc.logs()
