"""Deleting a namespace that holds the objects, their RunWhenConnection and its Secret finishes.

The namespace controller deletes everything in a namespace at once, in discovery order: the Secret
goes first, then the connection and the objects. Objects with `deletionPolicy: Delete` still need
the connection's credentials to delete what they made in RunWhen, so the connection is held (Kopf's
finalizer) while objects use it, and the credentials it read stay in memory. The test control plane
has no controller-manager; `delete_namespace_as_its_controller` does what its namespace controller
does, then removes the namespace's own finalizer.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kubernetes import client as k8s

from tests.support.controlplane import delete_namespace_as_its_controller
from tests.support.operator import RunWhenEnv, wait_for

pytestmark = pytest.mark.integration

DEFINITION = {
    "fromActivities": [
        {
            "name": "on-alert",
            "match": {"activityVerbs": ["alert"], "slxs": ["k8s-health"]},
            "actions": [{"tasks": {"slx": "k8s-health", "titles": ["Check pods"]}}],
        }
    ]
}
CONNECTION_REF = {"kind": "RunWhenConnection", "name": "local"}


def _populate(rw: RunWhenEnv, namespace: str, workspace: str) -> None:
    rw.secret("local-creds", {"username": rw.emulator.username, "password": rw.emulator.password}, namespace)
    rw.apply(
        "RunWhenConnection",
        "local",
        {"url": rw.emulator.url, "credentialsSecretRef": {"name": "local-creds"}},
        namespace=namespace,
    )
    rw.apply(
        "Workspace",
        workspace,
        {"connectionRef": CONNECTION_REF, "deletionPolicy": "Delete"},
        namespace=namespace,
    )
    for child in ("triage", "restart"):
        rw.apply(
            "Workflow",
            child,
            {"connectionRef": CONNECTION_REF, "workspaceRef": {"name": workspace}, "definition": DEFINITION},
            namespace=namespace,
        )
    rw.apply(
        "Persona",
        "edgar",
        {"connectionRef": CONNECTION_REF, "workspaceRef": {"name": workspace}, "fullName": "Edgar"},
        namespace=namespace,
    )
    for kind, name in (
        ("Workspace", workspace),
        ("Workflow", "triage"),
        ("Workflow", "restart"),
        ("Persona", "edgar"),
    ):
        rw.wait_condition(kind, name, namespace=namespace, timeout=60)


def _new_namespace(rw: RunWhenEnv) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    k8s.CoreV1Api(rw.api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    return name


def test_a_namespace_deleted_with_its_connection_and_secret_finishes(rw: RunWhenEnv) -> None:
    namespace = _new_namespace(rw)
    rw.start_operator("--namespace", namespace)
    _populate(rw, namespace, "doomed")
    assert rw.remote_workspace("doomed") is not None

    started = time.monotonic()
    delete_namespace_as_its_controller(rw.api, namespace, timeout=90)
    took = time.monotonic() - started
    print(f"namespace deletion finished in {took:.1f}s")
    # What the objects made in RunWhen went with them: the workspace (its children with it).
    assert rw.remote_workspace("doomed") is None
    assert [w for w in rw.emulator.live("workflows") if w.get("workspace") == "doomed"] == []


def test_a_namespace_deletion_waits_for_an_unreachable_api_then_finishes(rw: RunWhenEnv) -> None:
    namespace = _new_namespace(rw)
    rw.start_operator("--namespace", namespace)
    _populate(rw, namespace, "stranded")

    rw.emulator.set_faults(error_rate=1.0)
    outcome: dict[str, object] = {}

    def delete() -> None:
        started = time.monotonic()
        try:
            delete_namespace_as_its_controller(rw.api, namespace, timeout=150)
        except BaseException as exc:  # reported by the test below
            outcome["error"] = exc
        else:
            outcome["took"] = time.monotonic() - started

    deleter = threading.Thread(target=delete, daemon=True)
    deleter.start()

    # While RunWhen answers nothing but errors, the objects stay and say why in their conditions.
    def says_why() -> bool:
        try:
            ws = rw.get("Workspace", "stranded", namespace=namespace)
        except k8s.ApiException:
            return False
        synced = [c for c in (ws.get("status") or {}).get("conditions") or [] if c["type"] == "Synced"]
        return (
            bool(ws["metadata"].get("deletionTimestamp")) and bool(synced) and synced[0]["status"] == "False"
        )

    wait_for(
        says_why, 60, lambda: f"workspace conditions: {rw.get('Workspace', 'stranded', namespace=namespace)}"
    )
    ws = rw.get("Workspace", "stranded", namespace=namespace)
    synced = next(c for c in ws["status"]["conditions"] if c["type"] == "Synced")
    assert "500" in synced["message"] or "503" in synced["message"] or "502" in synced["message"], synced
    conn = rw.get("RunWhenConnection", "local", namespace=namespace)
    assert conn["metadata"].get("deletionTimestamp"), "the connection is being deleted"
    reconciling = next(c for c in conn["status"]["conditions"] if c["type"] == "Reconciling")
    assert reconciling["reason"] == "InUse", reconciling
    assert "Workspace" in reconciling["message"], reconciling
    assert rw.remote_workspace("stranded") is not None
    assert deleter.is_alive(), "the namespace cannot be gone while RunWhen is unreachable"

    rw.emulator.clear_faults()
    deleter.join(150)
    assert "error" not in outcome, outcome.get("error")
    assert not deleter.is_alive()
    print(f"namespace deletion finished {outcome['took']:.1f}s after it began (API back midway)")
    assert rw.remote_workspace("stranded") is None
