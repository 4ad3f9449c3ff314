"""The CRD generator: structural schemas, bounds, descriptions, stable output, committed files current."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from pydantic import BaseModel, Field

from runwhen_operator import cli, crdgen, rbacgen
from runwhen_operator.api import common, kinds

ROOT = Path(__file__).resolve().parents[2]

Node = dict[str, Any]


# --- a structural-schema checker ------------------------------------------------------------------

FORBIDDEN_KEYS = {
    "$ref",
    "$defs",
    "definitions",
    "anyOf",
    "allOf",
    "oneOf",
    "not",
    "title",
    "const",
    "examples",
}


def walk(node: Node, path: str) -> Iterator[tuple[str, Node]]:
    """Every schema node under ``node`` (itself included), with a readable path."""
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from walk(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def structural_problems(root: Node) -> list[str]:
    """What makes ``root`` not structural (or not up to this project's standard): empty when fine."""
    problems: list[str] = []
    if root.get("properties", {}).get("metadata") != {"type": "object"}:
        problems.append("metadata must be exactly {type: object}")
    for path, node in walk(root, "<root>"):
        bad = FORBIDDEN_KEYS & set(node)
        if bad:
            problems.append(f"{path}: forbidden keys {sorted(bad)}")
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        if "type" not in node and not preserve:
            problems.append(f"{path}: no type")
        # Free-form: an object whose keys are not described, or (no type) any JSON value at all.
        if preserve and (node.get("type", "object") != "object" or "properties" in node):
            problems.append(f"{path}: preserve-unknown-fields on something other than a free-form value")
        if node.get("additionalProperties") is not None and not isinstance(
            node["additionalProperties"], dict
        ):
            problems.append(f"{path}: boolean additionalProperties")
        if "additionalProperties" in node and "properties" in node:
            problems.append(f"{path}: both properties and additionalProperties")
        if node.get("nullable"):
            problems.append(f"{path}: nullable")
        for name, prop in node.get("properties", {}).items():
            if path == "<root>" and name == "metadata":
                continue
            if not str(prop.get("description", "")).strip():
                problems.append(f"{path}.{name}: no description")
        for name in node.get("required", []):
            if name not in node.get("properties", {}):
                problems.append(f"{path}: required {name} is not a property")
        if "exclusiveMinimum" in node and node["exclusiveMinimum"] is not True:
            problems.append(f"{path}: exclusiveMinimum must be a boolean")
        if node.get("x-kubernetes-list-type") == "map":
            item = node.get("items", {})
            for key in node.get("x-kubernetes-list-map-keys", []):
                if key not in item.get("required", []) and "default" not in item["properties"].get(key, {}):
                    problems.append(f"{path}: list map key {key} is neither required nor defaulted")
        if path.startswith("<root>.spec") or path.startswith("<root>.status"):
            if node.get("type") == "string" and not (
                "maxLength" in node or "enum" in node or node.get("format") == "date-time"
            ):
                problems.append(f"{path}: unbounded string")
            if node.get("type") == "array" and "maxItems" not in node:
                problems.append(f"{path}: unbounded list")
        for rule in node.get("x-kubernetes-validations", []):
            if not rule.get("rule") or not rule.get("message"):
                problems.append(f"{path}: CEL rule without rule or message")
    return problems


def schema_of(info: kinds.KindInfo) -> Node:
    doc = crdgen.crd_document(info)
    root: Node = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


@pytest.mark.parametrize("info", kinds.KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(info: kinds.KindInfo) -> None:
    assert structural_problems(schema_of(info)) == []


def test_checker_finds_problems() -> None:
    bad: Node = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "description": "s",
                "properties": {
                    "a": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "a"},
                    "b": {"type": "string"},
                    "c": {"type": "array", "items": {"type": "string", "maxLength": 1}, "description": "c"},
                    "d": {"$ref": "#/$defs/D", "description": "d", "title": "D"},
                },
            },
        },
    }
    problems = "\n".join(structural_problems(bad))
    assert "<root>.spec.a: no type" in problems
    assert "<root>.spec.b: no description" in problems
    assert "<root>.spec.b: unbounded string" in problems
    assert "<root>.spec.c: unbounded list" in problems
    assert "<root>.spec.d: forbidden keys ['$ref', 'title']" in problems


def _check_default(path: str, node: Node, value: Any) -> list[str]:
    """Whether a default satisfies its own schema (the API server refuses a CRD otherwise)."""
    problems: list[str] = []
    if "enum" in node and value not in node["enum"]:
        problems.append(f"{path}: default {value!r} not in enum")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in node and (
            value < node["minimum"] or (node.get("exclusiveMinimum") and value == node["minimum"])
        ):
            problems.append(f"{path}: default {value} below minimum")
        if "maximum" in node and value > node["maximum"]:
            problems.append(f"{path}: default {value} above maximum")
    if isinstance(value, str) and "pattern" in node and not re.search(node["pattern"], value):
        problems.append(f"{path}: default {value!r} does not match {node['pattern']}")
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            if name in value:
                problems += _check_default(f"{path}.{name}", sub, value[name])
    return problems


@pytest.mark.parametrize("info", kinds.KINDS, ids=lambda k: k.kind)
def test_defaults_satisfy_their_schema(info: kinds.KindInfo) -> None:
    problems: list[str] = []
    for path, node in walk(schema_of(info), "<root>"):
        if "default" in node:
            problems += _check_default(path, node, node["default"])
    assert problems == []


def _resolve(root: Node, json_path: str) -> Node | None:
    node: Node | None = root
    for part in re.sub(r"\[[^\]]*\]", "", json_path).lstrip(".").split("."):
        if node is None:
            return None
        if node.get("type") == "array":
            node = node["items"]
        node = node.get("properties", {}).get(part)
    return node


@pytest.mark.parametrize("info", kinds.KINDS, ids=lambda k: k.kind)
def test_printer_columns_point_at_schema_fields(info: kinds.KindInfo) -> None:
    root = schema_of(info)
    for column in info.printer_columns:
        if column.json_path == ".metadata.creationTimestamp":
            continue
        target = _resolve(root, column.json_path)
        assert target is not None, f"{column.name}: {column.json_path} is not in the schema"
        if column.type == "integer":
            assert target["type"] == "integer"
        if column.type == "date":
            assert target.get("format") == "date-time"


# --- the documents --------------------------------------------------------------------------------


def test_crd_documents_shape() -> None:
    docs = crdgen.crd_documents()
    assert [d["metadata"]["name"] for d in docs] == [k.crd_name for k in kinds.KINDS]
    for doc, info in zip(docs, kinds.KINDS, strict=True):
        assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
        assert doc["kind"] == "CustomResourceDefinition"
        spec = doc["spec"]
        assert spec["group"] == "platform.runwhen.com"
        assert spec["scope"] == info.scope
        assert spec["names"] == {
            "kind": info.kind,
            "listKind": f"{info.kind}List",
            "plural": info.plural,
            "singular": info.singular,
            "shortNames": list(info.short_names),
            "categories": ["runwhen"],
        }
        (version,) = spec["versions"]
        assert version["name"] == "v1alpha1"
        assert version["served"] is True
        assert version["storage"] is True
        assert version["subresources"] == {"status": {}}
        names = [c["name"] for c in version["additionalPrinterColumns"]]
        assert names == [c.name for c in info.printer_columns]


def test_printer_column_names() -> None:
    columns = {k.kind: [c.name for c in k.printer_columns] for k in kinds.KINDS}
    assert columns == {
        "ClusterRunWhenConnection": ["URL", "Dialect", "Ready", "Age"],
        "RunWhenConnection": ["URL", "Dialect", "Ready", "Age"],
        "Workspace": ["Ready", "Synced", "Health", "Open Issues", "Age"],
        "Workflow": ["Workspace", "Ready", "Synced", "Remote ID", "Age"],
        "Persona": ["Workspace", "Ready", "Synced", "Remote ID", "Age"],
        "WorkflowRun": ["Workflow", "Phase", "Age", "Finished"],
        "RunnerLocation": ["Workspace", "Location", "Ready", "Synced", "Health", "Age"],
    }


def _rules(node: Node) -> list[str]:
    return [r["message"] for r in node.get("x-kubernetes-validations", [])]


def test_cel_rules_are_where_they_belong() -> None:
    ws = schema_of(kinds.by_kind("Workspace"))
    assert any("spec.name can only be added" in m for m in _rules(ws))
    assert any("metadata.name is not a valid remote workspace name" in m for m in _rules(ws))
    assert any("spec.name is immutable" in m for m in _rules(ws["properties"]["spec"]))
    assert ws["properties"]["spec"]["default"] == {}
    assert "required" not in ws
    for kind in ("Workflow", "Persona"):
        root = schema_of(kinds.by_kind(kind))
        spec_rules = _rules(root["properties"]["spec"])
        assert "exactly one of workspaceRef or workspaceName must be set" in spec_rules
        assert any(
            m.startswith("the workspace (workspaceRef or workspaceName) is immutable") for m in spec_rules
        )
        assert any("spec.name is immutable" in m for m in spec_rules)
        assert root["required"] == ["spec"]
    run = schema_of(kinds.by_kind("WorkflowRun"))["properties"]["spec"]
    assert "spec is immutable: create a new WorkflowRun" in _rules(run)
    assert {"rule": "self == oldSelf", "message": "spec is immutable: create a new WorkflowRun"} in run[
        "x-kubernetes-validations"
    ]
    conn = schema_of(kinds.by_kind("RunWhenConnection"))["properties"]["spec"]["properties"]
    assert any("must be omitted" in m for m in _rules(conn["credentialsSecretRef"]))
    cluster = schema_of(kinds.by_kind("ClusterRunWhenConnection"))["properties"]["spec"]["properties"]
    assert cluster["credentialsSecretRef"]["required"] == ["name", "namespace"]
    assert _rules(cluster["credentialsSecretRef"]) == []


def test_schema_details() -> None:
    ws = schema_of(kinds.by_kind("Workspace"))["properties"]
    spec = ws["spec"]["properties"]
    assert spec["deletionPolicy"]["default"] == "Orphan"
    assert spec["deletionPolicy"]["enum"] == ["Delete", "Orphan"]
    assert spec["name"]["pattern"] == common.DNS_LABEL_PATTERN
    assert "default" not in spec["name"]
    # Any JSON value: a map in the documented dialect, a list of {name, value} on the platform.
    assert spec["configProvided"] == {
        "x-kubernetes-preserve-unknown-fields": True,
        "description": spec["configProvided"]["description"],
    }
    assert spec["monitoring"]["properties"]["interval"]["default"] == "60s"
    conditions = ws["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    wf = schema_of(kinds.by_kind("Workflow"))["properties"]["spec"]["properties"]
    assert wf["deletionPolicy"]["default"] == "Delete"
    tasks = wf["definition"]["properties"]["fromActivities"]["items"]["properties"]["actions"]["items"]
    assert set(tasks["properties"]["tasks"]["properties"]) == {"slx", "persona", "titles", "sessionTTL"}
    rate = schema_of(kinds.by_kind("RunWhenConnection"))["properties"]["spec"]["properties"]["rateLimit"]
    assert rate["properties"]["requestsPerSecond"] == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1000,
        "default": 10,
        "description": rate["properties"]["requestsPerSecond"]["description"],
    }
    persona_spec = schema_of(kinds.by_kind("Persona"))["properties"]["spec"]["properties"]
    assert persona_spec["filterConfidenceThreshold"]["minimum"] == 0
    assert persona_spec["filterConfidenceThreshold"]["maximum"] == 1
    assert not [
        name
        for name, prop in persona_spec.items()
        if "default" in prop and name.startswith(("filter", "run"))
    ]


# --- generator errors -----------------------------------------------------------------------------


class _Union(BaseModel):
    value: int | str = Field(description="either")


class _Undocumented(BaseModel):
    value: int


class _OpenDict(BaseModel):
    value: dict[str, Any] = Field(description="free")


class _Tuple(BaseModel):
    value: Annotated[tuple[int, str], Field(description="pair")]


@pytest.mark.parametrize(
    ("model", "error"),
    [
        (_Union, "union of 2 types"),
        (_Undocumented, "property without a description"),
        (_OpenDict, "use common.FreeForm"),
        (_Tuple, "unsupported schema keywords"),
    ],
)
def test_generator_refuses_non_structural_models(model: type[BaseModel], error: str) -> None:
    with pytest.raises(crdgen.SchemaError, match=re.escape(error)):
        crdgen.model_schema(model)


# --- output ---------------------------------------------------------------------------------------


def test_render_is_deterministic_and_round_trips() -> None:
    first = crdgen.render_all()
    assert first == crdgen.render_all()
    assert sorted(first) == sorted(f"platform.runwhen.com_{k.plural}.yaml" for k in kinds.KINDS)
    for info in kinds.KINDS:
        text = first[crdgen.filename(info)]
        assert text.startswith(crdgen.HEADER)
        assert "make crds" in text.splitlines()[0]
        assert yaml.safe_load(text) == crdgen.crd_document(info)


def test_stream_holds_every_crd() -> None:
    docs = [d for d in yaml.safe_load_all(crdgen.render_stream()) if d]
    assert docs == crdgen.crd_documents()


@pytest.mark.parametrize("directory", [crdgen.CRD_DIR, crdgen.CHART_CRD_DIR], ids=str)
def test_committed_crds_are_current(directory: Path) -> None:
    expected = crdgen.render_all()
    present = {p.name: p.read_text() for p in (ROOT / directory).glob("*.yaml")}
    assert sorted(present) == sorted(expected), f"{directory} is stale: run `make crds`"
    for name, text in expected.items():
        assert present[name] == text, f"{directory / name} is stale: run `make crds`"


def test_committed_reference_is_current() -> None:
    assert (ROOT / crdgen.REFERENCE_PATH).read_text() == crdgen.render_reference(), (
        "docs/crd-reference.md is stale: run `make crds`"
    )


def test_reference_documents_every_field_and_rule() -> None:
    text = crdgen.render_reference()
    for info in kinds.KINDS:
        assert f"## {info.kind}" in text
        for path, node in walk(schema_of(info)["properties"]["spec"], "spec"):
            if node is not schema_of(info)["properties"]["spec"] and not path.endswith(("[]", ".*")):
                assert f"`{path.replace('[].', '[].')}`" in text, path
    assert "spec is immutable: create a new WorkflowRun" in text
    assert common.ANNOTATION_PAUSED in text


def test_write_all(tmp_path: Path) -> None:
    stale = tmp_path / "crds" / "platform.runwhen.com_gadgets.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    keep = tmp_path / "crds" / "README.md"
    keep.write_text("not generated")
    written = crdgen.write_all(tmp_path)
    assert not stale.exists()
    assert keep.exists()
    files = crdgen.render_all()
    for directory in (crdgen.CRD_DIR, crdgen.CHART_CRD_DIR):
        assert {p.name: p.read_text() for p in (tmp_path / directory).glob("*.yaml")} == files
    assert (tmp_path / crdgen.REFERENCE_PATH).read_text() == crdgen.render_reference()
    assert len(written) == 2 * len(files) + 1


def test_cli_prints_the_stream(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["crds"]) == 0
    out = capsys.readouterr().out
    assert out == crdgen.render_stream()


def test_cli_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["crds", "--write", "--root", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "crds").iterdir()) == sorted(crdgen.render_all())
    assert (tmp_path / "charts/runwhen-operator/crds").is_dir()
    assert (tmp_path / "docs/crd-reference.md").is_file()
    assert "wrote" in capsys.readouterr().out


# --- RBAC on the kinds ------------------------------------------------------------------------------


def test_committed_rbac_rules_are_what_the_registry_generates() -> None:
    assert rbacgen.check(ROOT) == [], "the RBAC rules on the kinds are stale: run `make crds`"


def _granted(rules: list[dict[str, Any]]) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for rule in rules:
        if common.GROUP in rule.get("apiGroups", []):
            for resource in rule["resources"]:
                granted.setdefault(resource, set()).update(rule["verbs"])
    return granted


def test_the_cluster_role_grants_every_kind_what_the_operator_does_with_it() -> None:
    role = yaml.safe_load((ROOT / rbacgen.CLUSTER_ROLE).read_text())
    granted = _granted(role["rules"])
    for info in kinds.KINDS:
        assert set(info.verbs) <= granted[info.plural], info.kind
        assert set(rbacgen.STATUS_VERBS) <= granted[f"{info.plural}/status"], info.kind
        assert granted[f"{info.plural}/finalizers"] >= {"update"}, info.kind
    assert "delete" in granted["workflowruns"]  # its TTL deletes it
    assert "delete" not in granted["workspaces"]
    assert set(granted) == {f"{k.plural}{sub}" for k in kinds.KINDS for sub in ("", "/status", "/finalizers")}


def test_a_new_kind_gets_its_rules_from_its_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = kinds.by_kind("Workspace")
    extra = dataclasses.replace(
        workspace, kind="RunnerThing", plural="runnerthings", singular="runnerthing", short_names=("rwrt",)
    )
    monkeypatch.setattr(kinds, "KINDS", (*kinds.KINDS, extra))
    rules = [
        {"apiGroups": [common.GROUP], "resources": list(r), "verbs": list(v)}
        for r, v in rbacgen.kind_rules(namespaced=True)
    ]
    granted = _granted(rules)
    assert {"runnerthings", "runnerthings/status", "runnerthings/finalizers"} <= set(granted)
    helpers = rbacgen.render_chart_helpers((ROOT / rbacgen.CHART_HELPERS).read_text())
    assert "    - runnerthings/finalizers" in helpers
    role = rbacgen.render_cluster_role((ROOT / rbacgen.CLUSTER_ROLE).read_text())
    assert "    - runnerthings/status" in role
