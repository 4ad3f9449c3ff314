"""Workspace, Workflow and Persona on the documented dialect (trailing slashes, integer ids, POST to
create, PATCH a workspace's drifted camelCase fields, PUT a workflow or persona by id), against the
real control plane, the emulator in its documented dialect and the operator process; the connection
detects the dialect or has it pinned. The platform dialect's lifecycles are in test_workspace.py and
test_children.py, the documented WorkflowRun in test_documented_workflowrun.py."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.contract.validator import load_exchanges
from tests.support.emulator import CONTRACT_DIR_ENV, EmulatorProcess
from tests.support.operator import RunWhenEnv, wait_for

pytestmark = pytest.mark.integration

FAST = {"platform.runwhen.com/poll-interval": "2s"}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


class Wire:
    """What the documented emulator recorded (``--record-exchanges``): the bodies the operator sent."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.emulator: EmulatorProcess | None = None

    def _lines(self) -> list[dict[str, Any]]:
        assert self.emulator is not None
        path = self.directory / f"exchanges-{self.emulator.pid}.jsonl"
        if not path.exists():
            return []
        return [record for _, record, error in load_exchanges(path) if error is None]

    def mark(self) -> int:
        """A position: ``writes(since=mark)`` lists only what came after it."""
        return len(self._lines())

    def exchanges(self, since: int = 0) -> list[dict[str, Any]]:
        """Every exchange but the logins, oldest first."""
        return [e for e in self._lines()[since:] if not e["path"].startswith("/api/v3/token")]

    def writes(self, since: int = 0) -> list[tuple[str, str, Any]]:
        """``(method, path without a trailing slash, JSON body or None)`` of every write since ``since``."""
        return [
            (e["method"], e["path"].rstrip("/"), json.loads(e["requestBody"]) if e["requestBody"] else None)
            for e in self.exchanges(since)
            if e["method"] in WRITES
        ]


@pytest.fixture
def wire(tmp_path: Path) -> Wire:
    contract_dir = os.environ.get(CONTRACT_DIR_ENV)
    return Wire(Path(contract_dir) if contract_dir else tmp_path / "exchanges")


@pytest.fixture
def rw(rw: RunWhenEnv, emulator_factory: Any, wire: Wire) -> RunWhenEnv:
    """The usual environment, wired to an emulator of the documented dialect that records its exchanges
    (into the contract directory when the contract checks run, which records them anyway)."""
    extra = [] if os.environ.get(CONTRACT_DIR_ENV) else ["--record-exchanges", str(wire.directory)]
    wire.emulator = emulator_factory(dialect="documented", extra_args=extra)
    rw.use_emulator(wire.emulator)
    return rw


def definition(slx: str = "k8s-health", title: str = "Check pods") -> dict[str, Any]:
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


def _titles(item: dict[str, Any]) -> list[str]:
    return list(item["definition"]["fromActivities"][0]["actions"][0]["tasks"]["titles"])


def _one(rw: RunWhenEnv, collection: str, workspace: str, name: str) -> dict[str, Any] | None:
    """The live remote object ``name`` of ``collection`` in ``workspace``; fails on a duplicate."""
    items = [i for i in rw.remote(collection, workspace) if i["name"] == name]
    assert len(items) <= 1, f"{len(items)} remote {collection} named {name!r}: {items}"
    return items[0] if items else None


def _wait_event(rw: RunWhenEnv, name: str, reason: str) -> None:
    # Events are written after the remote write and the status patch: wait for them, do not race them.
    wait_for(lambda: reason in rw.event_reasons(name), 15, f"a {reason} event for {name}")


def _connection_status(rw: RunWhenEnv) -> dict[str, Any]:
    return dict(rw.get("ClusterRunWhenConnection", "default").get("status") or {})


# -- the connection -----------------------------------------------------------------------------


def test_connection_detects_the_documented_dialect_and_can_pin_it(rw: RunWhenEnv, wire: Wire) -> None:
    rw.start_operator()
    conn = rw.wait_condition("ClusterRunWhenConnection", "default", timeout=30)
    assert conn["spec"]["apiDialect"] == "Auto"  # the CRD's default: detected
    assert conn["status"]["apiDialect"] == "Documented"
    # One probe decided it: the documented slashed collection path, answered 200.
    probe = wire.exchanges()[0]
    assert (probe["method"], probe["path"], probe["status"]) == ("GET", "/api/v3/workspaces/", 200), probe
    assert "page-size=1" in probe["query"], probe
    assert not any(e["path"].startswith("/api/v4/") for e in wire.exchanges())

    # Pinned: the client is rebuilt for the pinned dialect and the objects sync through it.
    rw.use_emulator(rw.emulator, api_dialect="Documented")
    conn = rw.wait_condition("ClusterRunWhenConnection", "default", timeout=30)
    assert conn["spec"]["apiDialect"] == "Documented"
    assert conn["status"]["apiDialect"] == "Documented"
    assert conn["status"]["observedGeneration"] == conn["metadata"]["generation"]
    rw.apply("Workspace", "pinned", {"displayName": "Pinned", "deletionPolicy": "Delete"})
    rw.apply("Workflow", "pinned-wf", {"workspaceRef": {"name": "pinned"}, "definition": definition()})
    rw.wait_condition("Workspace", "pinned")
    wf = rw.wait_condition("Workflow", "pinned-wf")
    remote_wf = _one(rw, "workflows", "pinned", "pinned-wf")
    assert remote_wf is not None
    assert isinstance(wf["status"]["id"], int)
    assert wf["status"]["id"] == remote_wf["id"]
    assert (rw.remote_workspace("pinned") or {}).get("displayName") == "Pinned"
    assert not any(e["path"].startswith("/api/v4/") for e in wire.exchanges())


# -- Workspace ----------------------------------------------------------------------------------

WS_SPEC: dict[str, Any] = {
    "displayName": "Alpha",
    "enabledLocations": ["location-1"],
    "configProvided": {"region": "eu-west-1", "tier": "gold"},
    "slxGroups": {"platform": ["k8s-health", "disk"], "apps": ["checkout"]},
    "deletionPolicy": "Delete",
}


def test_workspace_create_update_drift_recreate_and_delete(rw: RunWhenEnv, wire: Wire) -> None:
    rw.start_operator()
    rw.apply("Workspace", "alpha", WS_SPEC, annotations=FAST)
    obj = rw.wait_condition("Workspace", "alpha")
    assert obj["status"]["remoteName"] == "alpha"
    assert rw.condition("Workspace", "alpha", "Synced")["status"] == "True"
    remote = rw.remote_workspace("alpha")
    assert remote is not None
    assert remote["displayName"] == "Alpha"
    assert remote["enabledLocations"] == ["location-1"]
    assert remote["configProvided"] == {"region": "eu-west-1", "tier": "gold"}  # an object, not a list
    assert remote["slxGroups"] == {"platform": ["k8s-health", "disk"], "apps": ["checkout"]}
    # Created by one POST to the slashed collection with every field, camelCase, nothing after it.
    writes = wire.writes()
    assert [(m, p) for m, p, _ in writes] == [("POST", "/api/v3/workspaces")], writes
    body = writes[0][2]
    assert body["name"] == "alpha"
    assert body["displayName"] == "Alpha"
    assert body["configProvided"] == WS_SPEC["configProvided"]
    assert body["slxGroups"] == WS_SPEC["slxGroups"]

    # A spec change: one PATCH of only the drifted field.
    rw.emulator.reset_requests()
    mark = wire.mark()
    rw.apply("Workspace", "alpha", {**WS_SPEC, "displayName": "Alpha 2"}, annotations=FAST)
    wait_for(lambda: (rw.remote_workspace("alpha") or {}).get("displayName") == "Alpha 2", 30, "the PATCH")
    obj = rw.wait_condition("Workspace", "alpha")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2
    counts = rw.emulator.requests()
    assert counts[rw.op("workspace.update")] == 1, counts
    assert rw.emulator.write_count() == 1, counts
    assert wire.writes(mark) == [("PATCH", "/api/v3/workspaces/alpha", {"displayName": "Alpha 2"})]
    _wait_event(rw, "alpha", "Updated")

    # Remote drift of an object field: PATCHed back, that field only.
    mark = wire.mark()
    rw.third_party.patch_workspace("alpha", configProvided={"region": "us-east-1"})
    wait_for(
        lambda: (rw.remote_workspace("alpha") or {}).get("configProvided") == WS_SPEC["configProvided"],
        20,
        "drift correction",
    )
    corrections = [w for w in wire.writes(mark) if w[2] != {"configProvided": {"region": "us-east-1"}}]
    assert corrections == [
        ("PATCH", "/api/v3/workspaces/alpha", {"configProvided": WS_SPEC["configProvided"]})
    ], corrections
    _wait_event(rw, "alpha", "DriftCorrected")
    assert (rw.remote_workspace("alpha") or {}).get("displayName") == "Alpha 2"

    # Deleted remotely: recreated with the spec's fields.
    rw.third_party.delete_workspace("alpha")
    wait_for(lambda: rw.remote_workspace("alpha") is not None, 20, "recreation")
    remote = rw.remote_workspace("alpha")
    assert remote is not None
    assert remote["displayName"] == "Alpha 2"
    assert remote["slxGroups"] == WS_SPEC["slxGroups"]
    _wait_event(rw, "alpha", "Recreated")
    rw.wait_condition("Workspace", "alpha")

    # deletionPolicy Delete: the remote workspace goes with the resource.
    rw.delete("Workspace", "alpha")
    rw.wait_gone("Workspace", "alpha")
    assert rw.remote_workspace("alpha") is None


def test_workspace_orphan_and_adoption(rw: RunWhenEnv) -> None:
    rw.third_party.create_workspace("taken", displayName="Made elsewhere", configProvided={"owner": "them"})
    before = rw.remote_workspace("taken")
    rw.emulator.reset_requests()
    rw.start_operator()

    # The default deletionPolicy of a Workspace is Orphan: the remote workspace stays.
    rw.apply("Workspace", "kept", {"displayName": "Kept"})
    rw.wait_condition("Workspace", "kept")
    rw.delete("Workspace", "kept")
    rw.wait_gone("Workspace", "kept")
    assert (rw.remote_workspace("kept") or {}).get("displayName") == "Kept"

    # FailIfExists (the default): the existing workspace is not taken over, nor written.
    rw.emulator.reset_requests()
    spec = {"displayName": "Ours now", "configProvided": {"owner": "us"}}
    rw.apply("Workspace", "taken", spec, annotations=FAST)
    obj = rw.wait_condition("Workspace", "taken", status="False", reason="AlreadyExists")
    assert "adoptionPolicy" in rw.condition("Workspace", "taken")["message"]
    assert "remoteName" not in (obj.get("status") or {})
    wait_for(lambda: rw.emulator.requests()[rw.op("workspace.list")] >= 2, 20, "a second look")
    assert rw.emulator.write_count() == 0
    assert rw.remote_workspace("taken") == before

    # Adopt: taken over and brought to the spec.
    rw.apply("Workspace", "taken", {**spec, "adoptionPolicy": "Adopt"}, annotations=FAST)
    obj = rw.wait_condition("Workspace", "taken", reason="Available")
    assert obj["status"]["remoteName"] == "taken"
    wait_for(
        lambda: (rw.remote_workspace("taken") or {}).get("displayName") == "Ours now",
        20,
        "adopted and updated",
    )
    remote = rw.remote_workspace("taken")
    assert remote is not None
    assert remote["configProvided"] == {"owner": "us"}
    assert remote["createdAt"] == (before or {}).get("createdAt")  # the same workspace, not a new one
    assert [w["name"] for w in rw.remote("workspaces")].count("taken") == 1
    _wait_event(rw, "taken", "Adopted")


# -- Workflow -----------------------------------------------------------------------------------


def test_workflow_create_update_drift_recreate_and_delete(rw: RunWhenEnv, wire: Wire) -> None:
    rw.start_operator()
    rw.apply("Workspace", "ops", {"displayName": "Ops", "deletionPolicy": "Delete"})
    spec: dict[str, Any] = {"workspaceRef": {"name": "ops"}, "definition": definition()}
    rw.apply("Workflow", "triage", spec, annotations=FAST)
    rw.apply("Workflow", "kept", {**spec, "deletionPolicy": "Orphan"}, annotations=FAST)
    wf = rw.wait_condition("Workflow", "triage")
    rw.wait_condition("Workflow", "kept")
    remote = _one(rw, "workflows", "ops", "triage")
    assert remote is not None
    first_id = wf["status"]["id"]
    assert isinstance(first_id, int)
    assert first_id == remote["id"]
    assert wf["status"]["workspace"] == "ops"
    assert remote["definition"] == definition()  # stored exactly as sent
    posts = [w for w in wire.writes() if w[1] == "/api/v3/workspaces/ops/workflows"]
    assert [m for m, _, _ in posts] == ["POST", "POST"], posts  # one create each

    # A spec change: one PUT of the full object, by id.
    rw.emulator.reset_requests()
    mark = wire.mark()
    rw.apply("Workflow", "triage", {**spec, "definition": definition(title="Check nodes")}, annotations=FAST)
    wait_for(lambda: _titles(_one(rw, "workflows", "ops", "triage") or {}) == ["Check nodes"], 20, "the PUT")
    counts = rw.emulator.requests()
    assert counts[rw.op("workflow.update")] == 1, counts
    assert rw.emulator.write_count() == 1, counts
    [(method, path, body)] = wire.writes(mark)
    assert (method, path) == ("PUT", f"/api/v3/workspaces/ops/workflows/{first_id}")
    assert body["name"] == "triage"
    assert body["definition"] == definition(title="Check nodes")
    assert rw.get("Workflow", "triage")["status"]["id"] == first_id
    _wait_event(rw, "triage", "Updated")

    # Remote drift: PUT back.
    mark = wire.mark()
    rw.third_party.put_child("workflow", "ops", "triage", {"definition": definition(title="tampered")})
    wait_for(
        lambda: _titles(_one(rw, "workflows", "ops", "triage") or {}) == ["Check nodes"],
        20,
        "drift correction",
    )
    _wait_event(rw, "triage", "DriftCorrected")
    tampered = {"definition": definition(title="tampered"), "name": "triage"}
    ours = [w for w in wire.writes(mark) if w[2] != tampered]
    assert [(m, p) for m, p, _ in ours] == [("PUT", f"/api/v3/workspaces/ops/workflows/{first_id}")], ours

    # Deleted remotely: recreated under a new id, which the status records.
    rw.third_party.delete_child("workflow", "ops", "triage")
    wait_for(
        lambda: (_one(rw, "workflows", "ops", "triage") or {}).get("id") not in (None, first_id),
        20,
        "recreated",
    )
    recreated = _one(rw, "workflows", "ops", "triage")
    assert recreated is not None
    assert _titles(recreated) == ["Check nodes"]
    wait_for(
        lambda: rw.get("Workflow", "triage")["status"].get("id") == recreated["id"], 20, "new id recorded"
    )
    _wait_event(rw, "triage", "Recreated")

    # Delete (the default for workflows) removes the remote object; Orphan keeps it.
    kept_id = rw.get("Workflow", "kept")["status"]["id"]
    mark = wire.mark()
    rw.delete("Workflow", "triage")
    rw.delete("Workflow", "kept")
    rw.wait_gone("Workflow", "triage")
    rw.wait_gone("Workflow", "kept")
    assert _one(rw, "workflows", "ops", "triage") is None
    assert (_one(rw, "workflows", "ops", "kept") or {}).get("id") == kept_id
    assert wire.writes(mark) == [("DELETE", f"/api/v3/workspaces/ops/workflows/{recreated['id']}", None)]


# -- Persona ------------------------------------------------------------------------------------

PERSONA: dict[str, Any] = {
    "workspaceRef": {"name": "ops"},
    "fullName": "Site Reliability",
    "description": "Handles paging alerts",
    "filterConfidenceThreshold": 0.7,
    "filterCodebundleTaskTags": ["k8s", "disk"],
    "filterScope": {"namespaces": ["prod", "staging"]},
    "runConfig": {"maxParallel": 2},
}


def test_persona_create_update_drift_recreate_and_delete(rw: RunWhenEnv, wire: Wire) -> None:
    rw.start_operator()
    rw.apply("Workspace", "ops", {"displayName": "Ops", "deletionPolicy": "Delete"})
    rw.apply("Persona", "sre", PERSONA, annotations=FAST)
    rw.apply("Persona", "kept", {**PERSONA, "deletionPolicy": "Orphan"}, annotations=FAST)
    persona = rw.wait_condition("Persona", "sre")
    rw.wait_condition("Persona", "kept")
    remote = _one(rw, "personas", "ops", "sre")
    assert remote is not None
    first_id = persona["status"]["id"]
    assert isinstance(first_id, int)
    assert first_id == remote["id"]
    assert persona["status"]["workspace"] == "ops"
    assert remote["fullName"] == "Site Reliability"
    assert remote["description"] == "Handles paging alerts"
    assert remote["filterConfidenceThreshold"] == 0.7
    assert remote["filterCodebundleTaskTags"] == ["k8s", "disk"]
    assert remote["filterScope"] == {"namespaces": ["prod", "staging"]}  # an object on this dialect
    assert remote["runConfig"] == {"maxParallel": 2}
    assert remote["runConfidenceThreshold"] == 0.95  # the server's default, kept and not fought over

    # A spec change: one PUT of the full object, by id.
    rw.emulator.reset_requests()
    mark = wire.mark()
    rw.apply("Persona", "sre", {**PERSONA, "fullName": "SRE on call"}, annotations=FAST)
    wait_for(
        lambda: (_one(rw, "personas", "ops", "sre") or {}).get("fullName") == "SRE on call", 20, "the PUT"
    )
    counts = rw.emulator.requests()
    assert counts[rw.op("persona.update")] == 1, counts
    assert rw.emulator.write_count() == 1, counts
    [(method, path, body)] = wire.writes(mark)
    assert (method, path) == ("PUT", f"/api/v3/workspaces/ops/personas/{first_id}")
    assert body["name"] == "sre"
    assert body["filterScope"] == {"namespaces": ["prod", "staging"]}  # a full replace keeps the rest
    assert (_one(rw, "personas", "ops", "sre") or {}).get("filterConfidenceThreshold") == 0.7
    _wait_event(rw, "sre", "Updated")

    # Remote drift (another client replaced it, resetting what it left out): PUT back.
    mark = wire.mark()
    rw.third_party.put_child("persona", "ops", "sre", {"fullName": "tampered"})

    def corrected() -> bool:
        item = _one(rw, "personas", "ops", "sre") or {}
        return item.get("fullName") == "SRE on call" and item.get("filterScope") == PERSONA["filterScope"]

    wait_for(corrected, 20, "drift correction")
    _wait_event(rw, "sre", "DriftCorrected")
    ours = [w for w in wire.writes(mark) if w[2] != {"fullName": "tampered", "name": "sre"}]
    assert [(m, p) for m, p, _ in ours] == [("PUT", f"/api/v3/workspaces/ops/personas/{first_id}")], ours

    # Deleted remotely: recreated under a new id, which the status records.
    rw.third_party.delete_child("persona", "ops", "sre")
    wait_for(
        lambda: (_one(rw, "personas", "ops", "sre") or {}).get("id") not in (None, first_id), 20, "recreated"
    )
    recreated = _one(rw, "personas", "ops", "sre")
    assert recreated is not None
    assert recreated["fullName"] == "SRE on call"
    wait_for(lambda: rw.get("Persona", "sre")["status"].get("id") == recreated["id"], 20, "new id recorded")
    _wait_event(rw, "sre", "Recreated")

    # Delete (the default for personas) removes the remote object; Orphan keeps it.
    kept_id = rw.get("Persona", "kept")["status"]["id"]
    mark = wire.mark()
    rw.delete("Persona", "sre")
    rw.delete("Persona", "kept")
    rw.wait_gone("Persona", "sre")
    rw.wait_gone("Persona", "kept")
    assert _one(rw, "personas", "ops", "sre") is None
    assert (_one(rw, "personas", "ops", "kept") or {}).get("id") == kept_id
    assert wire.writes(mark) == [("DELETE", f"/api/v3/workspaces/ops/personas/{recreated['id']}", None)]


# -- adoption of workflows and personas -----------------------------------------------------------


def test_workflow_and_persona_adoption(rw: RunWhenEnv) -> None:
    rw.third_party.create_workspace("shared")
    rw.third_party.create_child("workflow", "shared", "triage", {"definition": definition(title="by hand")})
    rw.third_party.create_child("persona", "shared", "oncall", {"fullName": "Made by hand"})
    made_wf = _one(rw, "workflows", "shared", "triage")
    made_p = _one(rw, "personas", "shared", "oncall")
    assert made_wf is not None
    assert made_p is not None
    rw.emulator.reset_requests()
    rw.start_operator()

    # FailIfExists (the default): neither is taken over, nor written.
    wf_spec: dict[str, Any] = {"workspaceName": "shared", "definition": definition(title="managed")}
    p_spec: dict[str, Any] = {"workspaceName": "shared", "fullName": "Managed"}
    rw.apply("Workflow", "triage", wf_spec, annotations=FAST)
    rw.apply("Persona", "oncall", p_spec, annotations=FAST)
    wf = rw.wait_condition("Workflow", "triage", status="False", reason="AlreadyExists")
    persona = rw.wait_condition("Persona", "oncall", status="False", reason="AlreadyExists")
    assert "adoptionPolicy" in rw.condition("Workflow", "triage")["message"]
    assert "adoptionPolicy" in rw.condition("Persona", "oncall")["message"]
    assert "id" not in (wf.get("status") or {})
    assert "id" not in (persona.get("status") or {})
    assert rw.emulator.write_count() == 0
    assert _one(rw, "workflows", "shared", "triage") == made_wf
    assert _one(rw, "personas", "shared", "oncall") == made_p

    # Adopt: the existing objects are taken over (their ids recorded) and brought to the spec.
    rw.apply("Workflow", "triage", {**wf_spec, "adoptionPolicy": "Adopt"}, annotations=FAST)
    rw.apply("Persona", "oncall", {**p_spec, "adoptionPolicy": "Adopt"}, annotations=FAST)
    wf = rw.wait_condition("Workflow", "triage", reason="Available")
    persona = rw.wait_condition("Persona", "oncall", reason="Available")
    assert wf["status"]["id"] == made_wf["id"]
    assert persona["status"]["id"] == made_p["id"]
    wait_for(
        lambda: _titles(_one(rw, "workflows", "shared", "triage") or {}) == ["managed"],
        20,
        "workflow updated",
    )
    wait_for(
        lambda: (_one(rw, "personas", "shared", "oncall") or {}).get("fullName") == "Managed",
        20,
        "persona updated",
    )
    assert (_one(rw, "workflows", "shared", "triage") or {}).get("id") == made_wf["id"]
    assert (_one(rw, "personas", "shared", "oncall") or {}).get("id") == made_p["id"]
    counts = rw.emulator.requests()
    assert counts[rw.op("workflow.create")] == 0, counts
    assert counts[rw.op("persona.create")] == 0, counts
    assert counts[rw.op("workflow.update")] == 1, counts
    assert counts[rw.op("persona.update")] == 1, counts
    _wait_event(rw, "triage", "Adopted")
    _wait_event(rw, "oncall", "Adopted")


# -- webhook token ------------------------------------------------------------------------------


def test_webhook_token_secret(rw: RunWhenEnv) -> None:
    rw.start_operator()
    rw.apply_hooked_workflow("paging-webhook", definition())
    wf = rw.wait_condition("Workflow", "paging")
    wait_for(lambda: rw.read_secret("paging-webhook") is not None, 20, "the webhook Secret")
    written = rw.read_secret("paging-webhook")
    assert written is not None
    remote_wf = _one(rw, "workflows", "hooks", "paging")
    assert remote_wf is not None
    assert remote_wf["id"] == wf["status"]["id"]
    token = base64.b64decode(written.data["token"]).decode()
    assert token == remote_wf["webhookToken"]  # what the server holds for that workflow
    url = base64.b64decode(written.data["webhookUrl"]).decode()
    assert url.endswith(f"/api/v3/webhooks/workflows/{token}"), url
    owner = written.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("Workflow", "paging", True)
    wait_for(
        lambda: rw.get("Workflow", "paging")["status"].get("webhookTokenSecret") == "paging-webhook",
        20,
        "the Secret recorded in status",
    )
    assert token not in json.dumps(rw.get("Workflow", "paging"))
    assert rw.emulator.requests()[rw.op("workflow.token")] == 1
