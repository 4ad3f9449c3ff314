#!/usr/bin/env python3
"""Extract the operations the project uses from the RunWhen Platform API's own OpenAPI document.

The running RunWhen server (papi) publishes a FastAPI-generated OpenAPI 3.1 document of 417 operations.
This script copies, verbatim, only the operations the operator and the emulator's platform dialect use,
plus every component they reference (transitively), into a small self-contained document that the
contract tests validate recorded exchanges against:

    hack/extract-papi-contract.py [SOURCE] [--output PATH]    write the extract (default: see below)
    hack/extract-papi-contract.py --check                     exit 1 when the committed extract is stale

SOURCE defaults to ../shared/reference/runwhen-papi/openapi.json next to the checkout (the captured
document; its README records where it comes from). The output is written with sorted keys and a fixed
indentation, so running the script again on the same source gives byte-identical output.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "reference" / "runwhen-papi" / "openapi.json"
DEFAULT_OUTPUT = ROOT / "operator" / "runwhen_operator" / "emulator" / "papi.json"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Every (method, path template) the project uses, spelled exactly as the source document spells it
# (the document names the same template's parameter differently on different methods, e.g.
# {workspace_short_name} for GET and {workspace_name} for PATCH/DELETE of a workspace).
OPERATIONS: tuple[tuple[str, str], ...] = (
    # auth
    ("post", "/api/v3/token/"),
    ("post", "/api/v3/token/refresh/"),
    ("post", "/api/v3/token/verify/"),
    # workspaces
    ("get", "/api/v3/workspaces"),
    ("post", "/api/v3/workspaces"),
    ("get", "/api/v3/workspaces/{workspace_short_name}"),
    ("patch", "/api/v3/workspaces/{workspace_name}"),
    ("delete", "/api/v3/workspaces/{workspace_name}"),
    ("get", "/api/v3/workspaces/{workspace_name}/status"),
    ("get", "/api/v3/workspaces/{workspace_name}/index-health"),
    ("get", "/api/v3/workspaces/{workspace_name}/runners"),
    ("get", "/api/v3/workspaces/{workspace_name}/issues"),
    ("get", "/api/v3/workspaces/{workspace_name}/runner-token"),
    ("get", "/api/v3/workspaces/{workspace_name}/upload-config"),
    ("delete", "/api/v3/workspaces/{workspace_name}/runners/{runner_id}"),
    # deprecated: answers 410 (the emulator does too); upload-config replaces it
    ("get", "/api/v3/workspaces/{workspace_name}/generate-workspace-builder-config"),
    # workflows: v3 reads, run and webhook token; v4 reads, upsert and delete
    ("get", "/api/v3/workspaces/{workspace_short_name}/workflows"),
    ("get", "/api/v3/workspaces/{workspace_short_name}/workflows/{workflow_short_name}"),
    ("post", "/api/v3/workspaces/{workspace_short_name}/workflows/{workflow_short_name}/run"),
    ("get", "/api/v3/workspaces/{workspace_short_name}/workflows/{workflow_short_name}/token"),
    ("patch", "/api/v3/workspaces/{workspace_short_name}/workflows/{workflow_short_name}/rotate-token"),
    ("get", "/api/v3/workspaces/{workspace_short_name}/workflows/{workflow_short_name}/webhook-url"),
    ("get", "/api/v4/workspaces/{workspace_name}/workflows"),
    ("get", "/api/v4/workspaces/{workspace_name}/workflows/{workflow_name}"),
    ("post", "/api/v4/workspaces/{workspace_name}/workflows/sync-typed"),
    ("delete", "/api/v4/workspaces/{workspace_name}/workflows/{workflow_name}"),
    # personas: v3 reads; v4 reads, upsert and delete
    ("get", "/api/v3/workspaces/{workspace_short_name}/personas"),
    ("get", "/api/v3/workspaces/{workspace_short_name}/personas/{persona_short_name}"),
    ("get", "/api/v4/workspaces/{workspace_name}/personas"),
    ("get", "/api/v4/workspaces/{workspace_name}/personas/{persona_short_name}"),
    ("post", "/api/v4/workspaces/{workspace_name}/personas/sync-typed"),
    ("delete", "/api/v4/workspaces/{workspace_name}/personas/{persona_short_name}"),
    # run sessions
    ("get", "/api/v3/workspaces/{workspace_name}/runsessions"),
    ("post", "/api/v3/workspaces/{workspace_name}/runsessions"),
    ("get", "/api/v3/workspaces/{workspace_name}/runsessions/{runsession_id}"),
    # The document has no .../runsessions/{id}/deactivate under /api/v3/workspaces/; its only
    # deactivate operation is this one (the v3 alternative is PATCH .../runsessions/{id} {"active": false}).
    ("post", "/api/v1/run-sessions/{session_id}/deactivate"),
)


def _refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` string anywhere in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> tuple[tuple[str, ...], Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are supported: {ref!r}")
    parts = tuple(p.replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/"))
    node: Any = document
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"unresolvable reference {ref!r}")
        node = node[part]
    return parts, node


def extract(
    source: dict[str, Any], sha256: str, operations: tuple[tuple[str, str], ...] = OPERATIONS
) -> dict[str, Any]:
    """The sub-document of ``source`` holding ``operations`` and what they reference."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path in operations:
        item = source.get("paths", {}).get(path)
        if item is None or method not in item:
            raise KeyError(f"{method.upper()} {path} is not in the source document")
        target = paths.setdefault(
            path, {key: copy.deepcopy(value) for key, value in item.items() if key not in HTTP_METHODS}
        )
        target[method] = copy.deepcopy(item[method])

    components: dict[str, dict[str, Any]] = {}
    pending = list(_refs(paths))
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        parts, node = _resolve(source, ref)
        if len(parts) != 3 or parts[0] != "components":
            raise ValueError(f"unexpected reference target {ref!r}")
        components.setdefault(parts[1], {})[parts[2]] = copy.deepcopy(node)
        pending.extend(_refs(node))

    schemes = source.get("components", {}).get("securitySchemes", {})
    for operation in (op for item in paths.values() for m, op in item.items() if m in HTTP_METHODS):
        for requirement in operation.get("security", source.get("security", [])):
            for name in requirement:
                components.setdefault("securitySchemes", {})[name] = copy.deepcopy(schemes[name])

    document: dict[str, Any] = {
        "openapi": source["openapi"],
        "info": copy.deepcopy(source["info"]),
        "paths": paths,
        "components": components,
        "x-extracted-from": {
            "document": "runwhen-papi/openapi.json",
            "sha256": sha256,
            "operations": len(operations),
            "generator": "hack/extract-papi-contract.py",
            "note": (
                "The operations the project uses and the components they reference, copied verbatim "
                "from the RunWhen Platform API server's own OpenAPI document; do not edit, re-run the script."
            ),
        },
    }
    for key in ("security", "jsonSchemaDialect"):
        if key in source:
            document[key] = copy.deepcopy(source[key])
    return document


def render(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def build(source_path: Path) -> bytes:
    """The extract of the document at ``source_path``, as the bytes the script writes."""
    raw = source_path.read_bytes()
    return render(extract(json.loads(raw), hashlib.sha256(raw).hexdigest()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="compare with --output instead of writing")
    args = parser.parse_args(argv)
    data = build(args.source)
    if args.check:
        current = args.output.read_bytes() if args.output.exists() else b""
        if current != data:
            print(f"{args.output} is stale: run hack/extract-papi-contract.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(OPERATIONS)} operations, {len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
