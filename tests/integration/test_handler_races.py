"""Changes that land while the operator is busy with the object, and steps that fail after a create.

Black-box, against the real control plane and the emulator: the operator's own status writes must
never hide a user's change (Kopf's diff base decides what changed, not a cache of the operator's
own answers), a deletion made while a create is under way leaves nothing behind, a failure after a
create keeps the remote identity, and remote values longer than the status schema allows are cut
instead of failing the status write.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s

from tests.support.operator import RunWhenEnv, wait_for

pytestmark = pytest.mark.integration

HOUR = {"platform.runwhen.com/poll-interval": "1h"}  # no drift check can mend what a pass missed


def _definition(slx: str) -> dict[str, object]:
    return {"fromActivities": [{"name": "a", "actions": [{"tasks": {"slx": slx}}]}]}


def test_a_spec_change_made_while_objects_sync_reaches_runwhen_within_seconds(rw: RunWhenEnv) -> None:
    """50 personas are created and, while the operator writes their statuses, each spec changes: all
    of them reach RunWhen within seconds, not at the next poll (an hour away)."""
    rw.start_operator("--poll-interval", "1h")
    rw.apply("Workspace", "busy", {"deletionPolicy": "Delete"}, annotations=HOUR)
    rw.wait_condition("Workspace", "busy")
    names = [f"p-{i:02d}" for i in range(50)]
    for name in names:
        rw.apply("Persona", name, {"workspaceRef": {"name": "busy"}, "fullName": "v1"}, annotations=HOUR)
    # The first statuses are being written now: change every spec in the middle of it.
    wait_for(lambda: sum(1 for n in names if rw.condition("Persona", n)) >= 5, 30, "the first statuses")
    changed_at = time.monotonic()
    for name in names:
        rw.apply("Persona", name, {"workspaceRef": {"name": "busy"}, "fullName": "v2"}, annotations=HOUR)

    def all_v2() -> bool:
        remote = {p["name"]: p.get("fullName") for p in rw.remote("personas", "busy")}
        return all(remote.get(n) == "v2" for n in names)

    wait_for(all_v2, 30, "every change in RunWhen")
    print(
        f"50 spec changes made during the first sync reached RunWhen in {time.monotonic() - changed_at:.1f}s"
    )
    assert len(rw.remote("personas", "busy")) == 50  # and none twice
    for name in names:
        persona = rw.get("Persona", name)
        assert persona["status"]["observedGeneration"] == persona["metadata"]["generation"] == 2


def test_deleting_an_object_while_it_is_created_leaves_nothing_behind(rw: RunWhenEnv) -> None:
    rw.start_operator()
    rw.apply("Workspace", "ws", {"deletionPolicy": "Delete"}, annotations=HOUR)
    rw.wait_condition("Workspace", "ws")
    names = [f"wf-{i}" for i in range(10)]
    for name in names:
        rw.apply(
            "Workflow",
            name,
            {"workspaceRef": {"name": "ws"}, "definition": _definition(name), "deletionPolicy": "Delete"},
        )
    for name in names:  # at once: most of them while their create is under way
        rw.delete("Workflow", name)
    for name in names:
        rw.wait_gone("Workflow", name, timeout=60)
    time.sleep(2)  # anything still in flight would have landed by now
    assert rw.remote("workflows", "ws") == []


def test_a_failed_webhook_secret_keeps_the_remote_id_and_says_why(rw: RunWhenEnv) -> None:
    """The webhook Secret belongs to another controller: the workflow is created once, its id is
    recorded, and Synced says WebhookSecretConflict (no crash loop without a condition)."""
    core = k8s.CoreV1Api(rw.api)
    owner = core.create_namespaced_config_map(
        rw.namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="someone-else"))
    )
    core.create_namespaced_secret(
        rw.namespace,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(
                name="taken",
                owner_references=[
                    k8s.V1OwnerReference(
                        api_version="v1",
                        kind="ConfigMap",
                        name="someone-else",
                        uid=owner.metadata.uid,
                        controller=True,
                    )
                ],
            ),
            string_data={"other": "data"},
        ),
    )
    rw.start_operator()
    rw.apply_hooked_workflow("taken", _definition("s"))
    wf = rw.wait_condition(
        "Workflow", "paging", "Synced", "False", reason="WebhookSecretConflict", timeout=60
    )
    remote = rw.remote("workflows", "hooks")
    assert len(remote) == 1
    assert wf["status"]["id"] == remote[0]["id"]
    assert "taken" in rw.condition("Workflow", "paging", "Synced")["message"]
    wait_for(lambda: "WebhookSecretConflict" in rw.event_reasons("paging"), 10, "the warning event")
    secret = rw.read_secret("taken")
    assert secret is not None
    assert set(secret.data or {}) == {"other"}  # not overwritten


def test_remote_values_beyond_the_status_schema_are_cut_not_refused(rw: RunWhenEnv) -> None:
    rw.start_operator()
    rw.apply("Workspace", "loud", {"monitoring": {"interval": "2s"}})
    rw.wait_condition("Workspace", "loud")
    rw.emulator.open_issue("loud", "x" * 5000, 1, "slx-" + "y" * 600)

    def listed() -> list[dict[str, object]]:
        return list(
            ((rw.get("Workspace", "loud").get("status") or {}).get("openIssues") or {}).get("top") or []
        )

    wait_for(lambda: len(listed()) == 1, 30, "the issue in status")
    title, slx = str(listed()[0]["title"]), str(listed()[0]["slxName"])
    assert 0 < len(title) < 5000
    assert title.endswith("...")
    assert slx.startswith("slx-y")
    assert len(slx) < 600


def test_rotating_the_secret_while_objects_sync_leaves_every_pass_alive(
    rw: RunWhenEnv,
    emulator_factory,  # type: ignore[no-untyped-def]
) -> None:
    """Ten rotations of the connection's Secret (password login and token, alternately) while 40
    objects sync with a 3 s access-token lifetime: every client rebuild cancels a token renewal
    someone waits for. Afterwards every object still has a live daemon (drift made by a third party
    is corrected at its 2 s poll) and a spec change reaches RunWhen within 10 s."""
    em = emulator_factory(token_lifetime=3.0, api_token="pat-rotation-0123456789")
    rw.use_emulator(em)
    proc = rw.start_operator("--connection-check-interval", "1s")
    fast = {"platform.runwhen.com/poll-interval": "2s"}
    rw.apply("Workspace", "rot", {"deletionPolicy": "Delete"}, annotations=fast)
    names = [f"p-{i:02d}" for i in range(39)]
    for name in names:
        rw.apply("Persona", name, {"workspaceRef": {"name": "rot"}, "fullName": "v1"}, annotations=fast)
    password = {"token": "", "username": em.username, "password": em.password}
    token = {"token": "pat-rotation-0123456789", "username": "", "password": ""}
    for i in range(10):
        rw.secret(rw.secret_name, token if i % 2 == 0 else password)
        time.sleep(1.5)
    rw.wait_condition("Workspace", "rot", timeout=60)
    for name in names:
        rw.wait_condition("Persona", name, timeout=60)

    for name in names[:10]:
        rw.third_party.put_child("persona", "rot", name, {"fullName": "drifted"})

    def remote_names(value: str) -> set[str]:
        return {str(p["name"]) for p in rw.remote("personas", "rot") if p.get("fullName") == value}

    wait_for(lambda: not remote_names("drifted"), 20, "every drift corrected by its object's daemon")
    changed_at = time.monotonic()
    for name in names:
        rw.apply("Persona", name, {"workspaceRef": {"name": "rot"}, "fullName": "v2"}, annotations=fast)
    wait_for(lambda: len(remote_names("v2")) == len(names), 10, "the spec change in RunWhen")
    print(f"after 10 rotations: 39 spec changes in RunWhen in {time.monotonic() - changed_at:.1f}s")
    logs = proc.logs()
    assert "CancelledError" not in logs
    assert "Traceback" not in logs
    assert proc.proc is not None
    assert proc.proc.poll() is None


def test_an_unreachable_runwhen_is_written_down_once_not_at_every_check(rw: RunWhenEnv) -> None:
    rw.start_operator()
    fast = {"platform.runwhen.com/poll-interval": "2s"}
    rw.apply(
        "Workspace", "down", {"monitoring": {"interval": "2s", "includeDetails": True}}, annotations=fast
    )
    rw.wait_condition("Workspace", "down")
    wait_for(lambda: bool((rw.get("Workspace", "down").get("status") or {}).get("health")), 30, "health")
    rw.emulator.set_faults(errorRate=1.0)
    try:

        def unreachable() -> bool:
            health = (rw.get("Workspace", "down").get("status") or {}).get("health") or {}
            return health.get("reason") == "Unreachable"

        wait_for(unreachable, 30, "health Unknown: Unreachable")
        time.sleep(3)  # the sync's own failure is written down too, once
        before = rw.get("Workspace", "down")
        time.sleep(8)  # four health checks and four drift checks, all failing
        after = rw.get("Workspace", "down")
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
            before["status"],
            after["status"],
        )
        health = rw.get("Workspace", "down")["status"]["health"]
        assert "details" not in health  # what went away is removed, not left from the last good check
    finally:
        rw.emulator.clear_faults()
    wait_for(
        lambda: (
            ((rw.get("Workspace", "down").get("status") or {}).get("health") or {}).get("reason")
            != "Unreachable"
        ),
        30,
        "health read again",
    )
