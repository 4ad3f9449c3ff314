"""The kustomize bases: CRD copies in sync with crds/, and the default install equivalent to the chart's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from tests.delivery import chart

DEPLOY = chart.ROOT / "deploy"


def _sync_module():
    spec = importlib.util.spec_from_file_location(
        "sync_deploy_crds", chart.ROOT / "hack" / "sync-deploy-crds.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return chart.tools().kubectl


def _kustomize(kubectl: Path, path: Path) -> list[chart.Obj]:
    out = chart.run([kubectl, "kustomize", path]).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_deploy_crds_are_copies_of_crds():
    sync = _sync_module()
    problems = sync.differences()
    assert not problems, f"deploy/crds is out of date ({problems}): run hack/sync-deploy-crds.py"
    generated = sorted(p.name for p in (chart.ROOT / "crds").glob("*.yaml"))
    assert generated, "no CRDs in crds/"
    listed = yaml.safe_load((DEPLOY / "crds" / "kustomization.yaml").read_text())["resources"]
    assert listed == generated


def test_sync_script_copies_and_prunes(tmp_path):
    sync = _sync_module()
    source, target = tmp_path / "crds", tmp_path / "deploy"
    source.mkdir()
    (source / "a.yaml").write_text("kind: A\n")
    (source / "b.yaml").write_text("kind: B\n")
    target.mkdir()
    (target / "stale.yaml").write_text("kind: Old\n")
    assert sync.differences(source, target) == [
        "missing: a.yaml",
        "missing: b.yaml",
        "missing: kustomization.yaml",
        "stale: stale.yaml",
    ]
    sync.sync(source, target)
    assert sync.differences(source, target) == []
    assert sorted(p.name for p in target.iterdir()) == ["a.yaml", "b.yaml", "kustomization.yaml"]
    assert yaml.safe_load((target / "kustomization.yaml").read_text())["resources"] == ["a.yaml", "b.yaml"]
    (source / "a.yaml").write_text("kind: A2\n")
    assert sync.differences(source, target) == ["differs: a.yaml"]


def test_sync_check_exit_code(tmp_path, monkeypatch, capsys):
    sync = _sync_module()
    source, target = tmp_path / "crds", tmp_path / "deploy"
    source.mkdir()
    (source / "a.yaml").write_text("kind: A\n")
    monkeypatch.setattr(sync, "SOURCE", source)
    monkeypatch.setattr(sync, "TARGET", target)
    assert sync.main(["--check"]) == 1
    assert "missing: a.yaml" in capsys.readouterr().err
    assert sync.main([]) == 0
    assert sync.main(["--check"]) == 0
    assert (target / "a.yaml").read_text() == "kind: A\n"


def _normalise(obj: chart.Obj) -> chart.Obj:
    obj = chart.strip_nones(obj)
    labels = obj["metadata"].get("labels", {})
    for key in ("helm.sh/chart", "app.kubernetes.io/managed-by"):
        labels.pop(key, None)
    return obj


@pytest.mark.parametrize(
    ("base", "values"),
    [("default", {}), ("ha", {"replicaCount": 2})],
)
def test_base_matches_the_chart(kubectl, base, values):
    helm_objs = {
        (o["kind"], o["metadata"]["name"]): _normalise(o) for o in chart.template(chart.tools().helm, values)
    }
    kustomize_objs = {
        (o["kind"], o["metadata"]["name"]): _normalise(o)
        for o in _kustomize(kubectl, DEPLOY / base)
        if o["kind"] not in ("CustomResourceDefinition", "Namespace")
    }
    assert set(kustomize_objs) == set(helm_objs)
    for key, obj in helm_objs.items():
        assert kustomize_objs[key] == obj, f"deploy/{base} and the chart differ on {key}"


def test_ha_base_elects_a_leader_on_its_lease(kubectl):
    objs = _kustomize(kubectl, DEPLOY / "ha")
    deployment = chart.one(objs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    args = chart.container(objs)["args"]
    assert "--peering=runwhen-operator" in args
    assert "--standalone" not in args
    role = chart.one(objs, "Role", "runwhen-operator-leader-election", chart.NAMESPACE)
    assert chart.rule_set(role["rules"]) == chart.lease_rules("runwhen-operator")
    binding = chart.one(objs, "RoleBinding", "runwhen-operator-leader-election", chart.NAMESPACE)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "runwhen-operator", "namespace": chart.NAMESPACE}
    ]
    # no other role touches leases; the default base has no leader election at all
    roles = chart.find(objs, "Role") + chart.find(objs, "ClusterRole")
    assert [r["metadata"]["name"] for r in roles if "coordination.k8s.io" in str(r["rules"])] == [
        "runwhen-operator-leader-election"
    ]
    default = _kustomize(kubectl, DEPLOY / "default")
    assert "--standalone" in chart.container(default)["args"]
    assert not chart.find(default, "Role")
    assert "coordination.k8s.io" not in str(default)


def test_default_base_contents(kubectl):
    objs = _kustomize(kubectl, DEPLOY / "default")
    crds = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == len(list((chart.ROOT / "crds").glob("*.yaml")))
    namespace = chart.one(objs, "Namespace")
    assert namespace["metadata"]["name"] == chart.NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objs:
        if obj["kind"] in ("Deployment", "Service", "ServiceAccount"):
            assert obj["metadata"]["namespace"] == chart.NAMESPACE


def test_samples_are_the_examples(kubectl):
    samples = _kustomize(kubectl, DEPLOY / "samples")
    kinds = sorted(o["kind"] for o in samples)
    assert kinds == [
        "ClusterRunWhenConnection",
        "Persona",
        "RunnerLocation",
        "Secret",
        "Workflow",
        "Workspace",
    ]
    conn = chart.one(samples, "ClusterRunWhenConnection", "default")
    secret = chart.one(samples, "Secret")
    assert conn["spec"]["credentialsSecretRef"] == {
        "name": secret["metadata"]["name"],
        "namespace": secret["metadata"]["namespace"],
    }
    assert secret["metadata"]["namespace"] == chart.NAMESPACE
    workflow = chart.one(samples, "Workflow")
    workspace = chart.one(samples, "Workspace")
    persona = chart.one(samples, "Persona")
    assert workflow["spec"]["workspaceRef"]["name"] == workspace["metadata"]["name"]
    assert persona["spec"]["workspaceRef"]["name"] == workspace["metadata"]["name"]
    location = chart.one(samples, "RunnerLocation")
    assert location["spec"]["workspaceRef"]["name"] == workspace["metadata"]["name"]
    assert location["metadata"]["name"] in workspace["spec"]["enabledLocations"]
    assert workflow["spec"]["webhookTokenSecretRef"]["name"]
    task = workflow["spec"]["definition"]["fromActivities"][0]["actions"][0]["tasks"]
    assert task["persona"] == persona["metadata"]["name"]
