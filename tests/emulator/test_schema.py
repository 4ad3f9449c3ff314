"""The OpenAPI document: served as packaged, and the emulator's answers conform to it (schemathesis)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import runwhen_operator.emulator
from tests.support.emulator import EmulatorProcess

SPEC = Path(runwhen_operator.emulator.__file__).with_name("openapi.yaml")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_MODE = 10


def test_served_schema_is_the_packaged_document(emulator: EmulatorProcess) -> None:
    packaged = SPEC.read_text(encoding="utf-8")
    served = httpx.get(emulator.api_url + "schema/")
    assert served.status_code == 200
    assert served.headers["Content-Type"].startswith("application/vnd.oai.openapi")
    assert served.text == packaged
    as_json = httpx.get(emulator.api_url + "schema", params={"format": "json"})
    assert as_json.headers["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert as_json.json() == yaml.safe_load(packaged)
    assert as_json.json()["openapi"].startswith("3.1")


def test_every_route_is_documented(emulator: EmulatorProcess) -> None:
    document = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    documented = {
        f"{method.upper()} {path.rstrip('/')}"
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    from runwhen_operator.emulator.documented import ROUTES

    served = {
        f"{method} {template.rstrip('/')}"
        for template, methods in ROUTES
        if template.startswith("/api/v3/")
        for method in methods
    }
    assert documented == served


def _seed(emulator: EmulatorProcess) -> dict[str, Any]:
    """A workspace ``demo`` with one of everything; returns path parameter values that exist."""
    emulator.reset()
    with emulator.client() as api:
        api.post("workspaces/", json={"name": "demo"})
        workflow = api.post("workspaces/demo/workflows/", json={"name": "wf"}).json()
        persona = api.post("workspaces/demo/personas/", json={"name": "p"}).json()
        session = api.post("workspaces/demo/runsessions", json={"source": "user"}).json()
        token = api.get(f"workspaces/demo/workflows/{workflow['id']}/token").json()["token"]
    issue = emulator.open_issue("demo", "t", 2, "slx", run_session_id=session["id"])
    emulator.set_runs("completed", step_seconds=0.05)
    return {
        "workspace_name": "demo",
        "workflow_id": workflow["id"],
        "persona_id": persona["id"],
        "runsession_id": session["id"],
        "issue_id": issue["id"],
        "token": token,
    }


def test_api_conforms_to_the_document(emulator: EmulatorProcess) -> None:
    schema = schemathesis.openapi.from_url(emulator.api_url + "schema/")
    headers = {"Authorization": f"Bearer {emulator.api_token}"}
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        if operation.path == "/api/v3/schema/":
            continue
        known = _seed(emulator)
        names = {parameter.name for parameter in operation.path_parameters}
        existing = {name: value for name, value in known.items() if name in names}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(generation_mode=mode)]
            if existing:
                strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=existing))

            @settings(
                max_examples=EXAMPLES_PER_MODE,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],
            )
            @given(case=st.one_of(*strategies))
            def check(case: schemathesis.Case[Any]) -> None:
                case.call_and_validate(base_url=emulator.url, headers=headers, checks=CHECKS, timeout=10)

            try:
                check()
            except (Exception, BaseExceptionGroup) as exc:  # report every operation's failures at once
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
            tested += 1
    assert tested >= 60
    assert not failures, "\n\n".join(failures)
    responses = emulator.state()["responses"]
    assert not any(key.rsplit(" ", 1)[1].startswith("5") for key in responses), responses


def test_document_is_strict_about_write_bodies() -> None:
    document = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    for name in (
        "WorkspaceCreate",
        "WorkspaceUpdate",
        "WorkflowWrite",
        "PersonaWrite",
        "RunSessionCreate",
        "IssuePatch",
    ):
        assert schemas[name]["additionalProperties"] is False, name
    assert schemas["PersonaWrite"]["properties"]["filterConfidenceThreshold"]["maximum"] == 1
    assert json.dumps(schemas["RunSessionCreate"]["required"]) == '["source"]'
