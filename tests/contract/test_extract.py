"""papi.json, the committed extract of the RunWhen server's OpenAPI document: current, whole, loadable."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from openapi_core import OpenAPI

from tests.contract.validator import DEFAULT_DOCUMENT

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "extract-papi-contract.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extract_papi_contract", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


extractor = _load_script()
SOURCE: Path = extractor.DEFAULT_SOURCE
needs_source = pytest.mark.skipif(not SOURCE.exists(), reason=f"{SOURCE} is not present")


def _committed() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEFAULT_DOCUMENT.read_text(encoding="utf-8"))
    return data


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert part in node, f"unresolvable: {ref}"
        node = node[part]
    return node


@needs_source
def test_committed_copy_is_what_the_script_writes() -> None:
    expected = extractor.build(SOURCE)
    assert DEFAULT_DOCUMENT.read_bytes() == expected, "stale: run hack/extract-papi-contract.py and commit"
    assert extractor.build(SOURCE) == expected, "the script is not deterministic"


@needs_source
def test_extract_names_the_source_and_copies_it_verbatim() -> None:
    raw = SOURCE.read_bytes()
    source = json.loads(raw)
    document = _committed()
    assert document["x-extracted-from"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert document["info"] == source["info"]
    assert document["openapi"] == source["openapi"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation == source["paths"][path][method], f"{method.upper()} {path}"
    for kind, entries in document["components"].items():
        for name, value in entries.items():
            assert value == source["components"][kind][name], f"{kind}/{name}"


def test_holds_exactly_the_listed_operations() -> None:
    document = _committed()
    held = {(method, path) for path, item in document["paths"].items() for method in item}
    assert held == set(extractor.OPERATIONS)
    assert len(extractor.OPERATIONS) == len(set(extractor.OPERATIONS))
    assert document["x-extracted-from"]["operations"] == len(extractor.OPERATIONS)


def test_every_ref_resolves_and_every_component_is_used() -> None:
    document = _committed()
    refs = _refs(document)
    assert refs
    for ref in refs:
        _resolve(document, ref)
    referenced = {ref.rsplit("/", 1)[1] for ref in refs}
    assert set(document["components"]["schemas"]) == referenced
    schemes = {
        name
        for item in document["paths"].values()
        for op in item.values()
        for r in op.get("security", [])
        for name in r
    }
    assert set(document["components"].get("securitySchemes", {})) == schemes


def test_loads_in_openapi_core() -> None:
    api = OpenAPI.from_dict(_committed())  # validates the document against the OpenAPI 3.1 schema
    assert api.spec["info"]["title"] == "papi"
    assert api.spec["openapi"].startswith("3.1")


def test_rendering_is_stable() -> None:
    document = _committed()
    assert extractor.render(document) == DEFAULT_DOCUMENT.read_bytes()


def test_extract_follows_references_transitively() -> None:
    source = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/a": {
                "parameters": [],
                "get": {
                    "responses": {
                        "200": {
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}
                        }
                    },
                    "security": [{"Bearer": []}],
                },
                "post": {"responses": {"200": {"description": "unused"}}},
            },
            "/b": {"get": {"responses": {"200": {"description": "not listed"}}}},
        },
        "components": {
            "schemas": {
                "A": {"properties": {"b": {"$ref": "#/components/schemas/B"}}},
                "B": {"items": {"$ref": "#/components/schemas/C"}},
                "C": {"type": "string"},
                "Unused": {"type": "integer"},
            },
            "securitySchemes": {"Bearer": {"type": "http", "scheme": "bearer"}, "Other": {"type": "http"}},
        },
    }
    document = extractor.extract(source, "0" * 64, (("get", "/a"),))
    assert set(document["paths"]) == {"/a"}
    assert set(document["paths"]["/a"]) == {"parameters", "get"}
    assert set(document["components"]["schemas"]) == {"A", "B", "C"}
    assert set(document["components"]["securitySchemes"]) == {"Bearer"}
    assert document["x-extracted-from"]["sha256"] == "0" * 64
    with pytest.raises(KeyError):
        extractor.extract(source, "0" * 64, (("delete", "/a"),))
