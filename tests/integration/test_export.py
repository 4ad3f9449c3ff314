"""``runwhen-operator export`` round trip, on both dialects, against the real control plane, the
emulator and the operator process: objects made directly through the RunWhen API (odd but valid
values: unicode, empty lists, long texts, values the CRD cannot hold, a name it cannot hold) are
exported, the YAML created in the cluster, and the operator adopts every object, all Ready, with
zero writes to RunWhen; exporting again gives the same bytes."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from runwhen_operator import cli
from runwhen_operator.api import kinds
from runwhen_operator.api.common import GROUP, VERSION
from runwhen_operator.runwhen import apis, auth, client, dialect
from tests.support.operator import RunWhenEnv, wait_for

pytestmark = pytest.mark.integration

LONG = "Ünïcødé ☃ — " + "long description " * 238  # 4,060 characters: the CRD holds up to 4,096

DEFINITION: dict[str, Any] = {
    "fromActivities": [
        {
            "name": "on-alert",
            "displayName": "Alerte déclenchée ☃",
            "description": LONG,
            "match": {"activityVerbs": ["alert", "page"], "slxs": []},
            "actions": [
                {"tasks": {"slx": "k8s-pods", "persona": "edgar", "titles": [], "sessionTTL": "20m"}},
                {"tasks": {"slx": "k8s-nodes", "titles": ["Check nodes", "Vérifier les nœuds"]}},
            ],
        },
        {"name": "nightly", "actions": [{"tasks": {"slx": "k8s-pods"}}]},
    ]
}


@pytest.fixture(params=["platform", "documented"])
def env(request: pytest.FixtureRequest, rw: RunWhenEnv, emulator_factory: Any) -> RunWhenEnv:
    if request.param == "documented":
        rw.use_emulator(emulator_factory(dialect="documented"))
    return rw


async def _create(url: str, username: str, password: str) -> str:
    """The objects, made through the RunWhen API as the web UI would (the operator's client only as a
    transport); returns the dialect's name."""
    rw = client.RunWhenClient(url, auth.PasswordCredentials(username, password))
    try:
        api = await apis.verify(rw, None)
        platform = api.api_dialect is dialect.Dialect.PLATFORM
        config = (
            [{"name": "zone", "value": "eu-1"}, {"name": "alpha", "value": {"nested": [1, None]}}]
            if platform
            else {"zone": "eu-1", "alpha": {"nested": [1, None]}}
        )
        await api.new_workspace(
            "onboard",
            {
                "displayName": "Équipe d'exploitation ☃",
                "configProvided": config,
                "slxGroups": {"pods": ["k8s-pods"], "empty": []},
            },
        )
        await api.new_child(dialect.WORKFLOW, "onboard", {"name": "restart", "definition": DEFINITION})
        quiet = copy.deepcopy(DEFINITION)
        quiet["fromActivities"][0]["description"] = "x" * 5000  # longer than the CRD holds
        await api.new_child(dialect.WORKFLOW, "onboard", {"name": "quiet", "definition": quiet})
        await api.new_child(
            dialect.PERSONA,
            "onboard",
            {
                "name": "edgar",
                "fullName": "Eager Édgar 🤖",
                "description": LONG,
                "filterConfidenceThreshold": 0.7,
                "filterStopWords": [],
                "filterCodebundleTaskTags": ["k8s", "prod"],
                "filterScope": "namespace:prod" if platform else {"namespaces": ["prod"]},
                "runConfig": {"mode": "auto", "limits": {"max": 3}},
            },
        )
        await api.new_child(dialect.PERSONA, "onboard", {"name": "plain"})
        await api.new_child(dialect.PERSONA, "onboard", {"name": "verbose", "description": "y" * 5000})
        if platform:
            # A short name the platform takes and no CRD can: listed in the header, left alone.
            night = {"name": "Night_Shift", "definition": DEFINITION}
            await api.new_child(dialect.WORKFLOW, "onboard", night)
        return api.api_dialect.value
    finally:
        await rw.aclose()


def _export(env: RunWhenEnv, target: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("RUNWHEN_TOKEN", raising=False)
    monkeypatch.setenv("RUNWHEN_USERNAME", env.emulator.username)
    monkeypatch.setenv("RUNWHEN_PASSWORD", env.emulator.password)
    argv = ["export", "--url", env.emulator.url, "--workspace", "onboard", "-n", env.namespace]
    assert cli.main([*argv, "--output", str(target)]) == 0
    return target.read_text(encoding="utf-8")


def test_exported_workspace_is_adopted_with_zero_writes_and_exports_the_same_again(
    env: RunWhenEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, control_plane: Any
) -> None:
    which = asyncio.run(_create(env.emulator.url, env.emulator.username, env.emulator.password))
    before = {c: env.remote(c, "onboard") for c in ("workflows", "personas")}
    first = _export(env, tmp_path / "first.yaml", monkeypatch)
    assert f"({which} API)" in first
    documents = [d for d in yaml.safe_load_all(first) if d]
    names = [(d["kind"], d["metadata"]["name"]) for d in documents]
    assert names == [
        ("Workspace", "onboard"),
        ("Workflow", "quiet"),
        ("Workflow", "restart"),
        ("Persona", "edgar"),
        ("Persona", "plain"),
        ("Persona", "verbose"),
    ]
    # What the CRD cannot hold is said above its object, and nothing secret is printed.
    assert "# spec.definition.fromActivities[0].description left out" in first
    assert "# spec.description left out: the CRD cannot hold a string of 5000 characters" in first
    if which == "Platform":
        assert '# Not exported: workflow "Night_Shift": its name is not a DNS label' in first
    for secret in (env.emulator.password, env.emulator.api_token):
        assert not secret or secret not in first

    env.emulator.reset_requests()
    env.start_operator()
    env.wait_condition("ClusterRunWhenConnection", "default", timeout=30)
    for document in documents:
        # Created as JSON, as `kubectl create -f` sends it: the harness's server-side apply sends YAML
        # with JSON escapes, which cannot carry a character outside the BMP (the persona's emoji).
        plural = kinds.by_kind(document["kind"]).plural
        env.custom.create_namespaced_custom_object(GROUP, VERSION, env.namespace, plural, document)
    for kind, name in names:
        found = env.wait_condition(kind, name, timeout=60)
        assert env.condition(kind, name, "Synced")["status"] == "True", found["status"]
    # Every object was looked at (its remote identity recorded) and nothing was written.
    for kind, name in names[1:]:
        wait_for(lambda k=kind, n=name: env.get(k, n).get("status", {}).get("id") is not None, 30, name)
    assert env.get("Workspace", "onboard")["status"]["remoteName"] == "onboard"
    assert env.emulator.write_count() == 0, env.emulator.requests()
    # A requested reconcile of each object (a fresh read, bypassing every cache) finds it in sync too.
    for kind, name in names:
        env.annotate(kind, name, {"platform.runwhen.com/reconcile-requested-at": "export-check"})
    for kind, name in names:
        wait_for(
            lambda k=kind, n=name: (
                env.get(k, n).get("status", {}).get("lastHandledReconcileAt") == "export-check"
            ),
            30,
            f"{kind} {name} to handle the requested reconcile",
        )
    assert env.emulator.write_count() == 0, env.emulator.requests()
    assert {c: env.remote(c, "onboard") for c in ("workflows", "personas")} == before

    second = _export(env, tmp_path / "second.yaml", monkeypatch)
    assert second.encode() == first.encode()
    # The connection object and its Secret, read with the kubeconfig, give the same (the `default`
    # connection is the default connectionRef, so none is printed).
    for name in ("RUNWHEN_TOKEN", "RUNWHEN_USERNAME", "RUNWHEN_PASSWORD", "RUNWHEN_URL"):
        monkeypatch.delenv(name, raising=False)
    target = tmp_path / "third.yaml"
    argv = ["export", "--connection", "default", "--kubeconfig", str(control_plane.kubeconfig)]
    assert cli.main([*argv, "-w", "onboard", "-n", env.namespace, "-o", str(target)]) == 0
    assert target.read_bytes() == first.encode()
    assert env.emulator.write_count() == 0, env.emulator.requests()
