"""Helpers for the delivery tests: render the Helm chart and the kustomize bases, index the objects."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "runwhen-operator"
sys.path.insert(0, str(ROOT / "hack"))
import testenv  # noqa: E402

RELEASE = "runwhen-operator"
NAMESPACE = "runwhen-system"
GROUP = "platform.runwhen.com"
NAMESPACED_KINDS = [
    "runwhenconnections",
    "workspaces",
    "workflows",
    "personas",
    "workflowruns",
    "runnerlocations",
]
ALL_KINDS = ["clusterrunwhenconnections", *NAMESPACED_KINDS]

Obj = dict[str, Any]


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path


def tools() -> Tools:
    helm, kubectl = testenv.ensure_helm()
    return Tools(helm=helm, kubectl=kubectl)


def run(
    argv: list[str | Path], *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
        )
    return proc


def set_args(values: dict[str, Any]) -> list[str]:
    """`--set-json key=value` for each entry (JSON keeps the types: ints, lists, booleans)."""
    import json

    out: list[str] = []
    for key, value in values.items():
        out += ["--set-json", f"{key}={json.dumps(value)}"]
    return out


def template(
    helm: Path,
    values: dict[str, Any] | None = None,
    *,
    namespace: str = NAMESPACE,
    release: str = RELEASE,
    extra: Iterable[str] = (),
) -> list[Obj]:
    proc = run([helm, "template", release, CHART, "--namespace", namespace, *set_args(values or {}), *extra])
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def template_fails(helm: Path, values: dict[str, Any]) -> str:
    """Render with `values`, expecting a failure; return helm's error output."""
    proc = run([helm, "template", RELEASE, CHART, *set_args(values)], check=False)
    assert proc.returncode != 0, f"helm template accepted {values}"
    return proc.stderr


def find(objs: list[Obj], kind: str, name: str | None = None, namespace: str | None = None) -> list[Obj]:
    return [
        o
        for o in objs
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objs: list[Obj], kind: str, name: str | None = None, namespace: str | None = None) -> Obj:
    found = find(objs, kind, name, namespace)
    assert len(found) == 1, (
        f"expected one {kind} {name or ''} in {namespace or 'any namespace'}, got {len(found)}"
    )
    return found[0]


def rule_set(rules: list[Obj]) -> set[tuple[str, str, str]]:
    """Flatten RBAC rules into (apiGroup, resource, verb) triples; a rule limited to resourceNames
    yields `resource[name]` for each name."""
    out: set[tuple[str, str, str]] = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, (
            f"unexpected rule keys: {rule}"
        )
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                names = rule.get("resourceNames")
                targets = [f"{resource}[{n}]" for n in names] if names else [resource]
                for target in targets:
                    for verb in rule["verbs"]:
                        out.add((group, target, verb))
    return out


def triples(group: str, resources: Iterable[str], verbs: Iterable[str]) -> set[tuple[str, str, str]]:
    return {(group, r, v) for r in resources for v in verbs}


def kind_rules(kinds: list[str]) -> set[tuple[str, str, str]]:
    """What the operator needs on its own kinds (delete only on workflowruns: TTL cleanup)."""
    main = ["get", "list", "watch", "patch", "update"]
    out = triples(GROUP, kinds, main)
    if "workflowruns" in kinds:
        out |= {(GROUP, "workflowruns", "delete")}
    out |= triples(GROUP, [f"{k}/status" for k in kinds], ["get", "patch", "update"])
    out |= triples(GROUP, [f"{k}/finalizers" for k in kinds], ["update"])
    return out


SECRETS = triples("", ["secrets"], ["get", "create", "patch", "update"])
EVENTS = triples("", ["events"], ["create", "patch"]) | triples(
    "events.k8s.io", ["events"], ["create", "patch"]
)
CRDS = triples("apiextensions.k8s.io", ["customresourcedefinitions"], ["list", "watch"])
NAMESPACES = triples("", ["namespaces"], ["list", "watch"])
LEASE_GROUP = "coordination.k8s.io"


def lease_rules(name: str) -> set[tuple[str, str, str]]:
    """Leader election: create a Lease (create cannot be limited to a name), read and renew its own."""
    return triples(LEASE_GROUP, ["leases"], ["create"]) | triples(
        LEASE_GROUP, [f"leases[{name}]"], ["get", "update"]
    )


def container(objs: list[Obj]) -> Obj:
    deployment = one(objs, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def strip_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nones(v) for v in value]
    return value
