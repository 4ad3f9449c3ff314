"""Schemathesis against the emulator's platform dialect, driven by the server's own document (papi.json).

Every operation in papi.json gets positive and negative examples (bounded: EXAMPLES per mode and
strategy), sent to an emulator started with ``--dialect platform`` that holds one workspace with one of
everything. Checked: no 5xx, documented statuses answer with their documented schema and content type
(schemathesis), and every answer passes the same contract rules as the recorded exchanges (an
undocumented error status carries FastAPI's ``{"detail": ...}``; an undocumented success status is a
violation). Undocumented error statuses themselves are fine: FastAPI documents only 200 and 422, and the
server answers 401, 404, 409 ... all the same.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.contract.conftest import API_TOKEN
from tests.contract.validator import DEFAULT_DOCUMENT, ContractValidator
from tests.support.emulator import EmulatorProcess

EXAMPLES = 15  # per operation, mode and strategy: 36 operations x 2 modes x 2 strategies x 15 in ~15 s
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
WORKSPACE = "demo"
# Operations a generated request cannot succeed on: credentials and tokens are not guessable.
# The workspace builder's old config call answers 410 Gone on the server, and so does the emulator.
NO_SUCCESS_EXPECTED = {
    "POST /api/v3/token/",
    "POST /api/v3/token/refresh/",
    "POST /api/v3/token/verify/",
    "GET /api/v3/workspaces/{workspace_name}/generate-workspace-builder-config",
}


def _seed(emulator: EmulatorProcess) -> dict[str, Any]:
    """Workspace ``demo`` with a workflow, a persona, a run session, an issue and a runner; path values
    that exist."""
    emulator.reset()
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=emulator.url, headers=headers, timeout=15) as api:

        def ok(response: httpx.Response) -> Any:
            assert response.status_code < 300, (
                f"{response.request.url}: {response.status_code} {response.text}"
            )
            return response.json()

        ok(api.post("/api/v3/workspaces", json={"name": WORKSPACE}))
        ok(
            api.post(
                f"/api/v4/workspaces/{WORKSPACE}/workflows/sync-typed",
                json={"payload": {"name": f"{WORKSPACE}--wf", "definition": {}}},
            )
        )
        ok(
            api.post(
                f"/api/v4/workspaces/{WORKSPACE}/personas/sync-typed",
                json={"payload": {"name": f"{WORKSPACE}--p", "fullName": "P"}},
            )
        )
        session = ok(
            api.post(
                f"/api/v3/workspaces/{WORKSPACE}/runsessions",
                json={
                    "source": "direct",
                    "runRequests": [{"slxName": f"{WORKSPACE}--slx", "taskTitles": None}],
                },
            )
        )
    emulator.open_issue(WORKSPACE, "t", 2, f"{WORKSPACE}--slx")
    emulator.heartbeat(WORKSPACE, "loc-1", value="runner-1")
    return {
        "runner_id": "runner-1",
        "workspace_name": WORKSPACE,
        "workspace_short_name": WORKSPACE,
        "workflow_short_name": "wf",
        "workflow_name": "wf",
        "persona_short_name": "p",
        "runsession_id": session["id"],
        "session_id": session["id"],
    }


def _header(response: Any, name: str) -> str | None:
    value = response.headers.get(name.lower())
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def _contract_violations(validator: ContractValidator, case: Any, response: Any) -> list[str]:
    """The recorded-exchange rules applied to one schemathesis call (responses only)."""
    record = {
        "dialect": "platform",
        "method": case.method.upper(),
        "path": urlsplit(response.request.url).path,
        "query": urlsplit(response.request.url).query,
        "requestContentType": None,
        "userAgent": "schemathesis",
        "requestBody": None,
        "status": response.status_code,
        "responseContentType": _header(response, "content-type"),
        "responseBody": response.content.decode("utf-8", "replace") if response.content else None,
        "fault": None,
    }
    return [str(v) for v in validator.validate(record).violations]


def test_platform_emulator_conforms_to_papi(platform_emulator: EmulatorProcess) -> None:
    platform = platform_emulator
    started = time.monotonic()
    validator = ContractValidator()
    schema = schemathesis.openapi.from_dict(json.loads(DEFAULT_DOCUMENT.read_text(encoding="utf-8")))
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    failures: list[str] = []
    tested: set[str] = set()
    succeeded: set[str] = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        known = _seed(platform)
        names = {parameter.name for parameter in operation.path_parameters}
        existing = {name: value for name, value in known.items() if name in names}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(generation_mode=mode)]
            if existing:
                strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=existing))

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],
            )
            @given(case=st.one_of(*strategies))
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=platform.url, headers=headers, timeout=10)
                if 200 <= response.status_code < 300:
                    succeeded.add(case.operation.label)
                case.validate_response(response, checks=CHECKS)
                problems = _contract_violations(validator, case, response)
                assert not problems, "\n".join(problems)

            try:
                check()
            except Unsatisfiable:
                if mode is schemathesis.GenerationMode.POSITIVE:
                    failures.append(f"{operation.label} [{mode.value}]: no valid example could be generated")
            except (Exception, BaseExceptionGroup) as exc:  # report every operation's failures at once
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
        tested.add(operation.label)
    assert len(tested) == len(validator.operations()), sorted(tested)
    # answering 404 to everything would conform: every operation must also have worked at least once
    never = sorted(tested - succeeded - NO_SUCCESS_EXPECTED)
    if never:
        failures.append(f"no generated request succeeded (2xx) on {len(never)} operations: {never}")
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)
    responses = platform.state()["responses"]
    assert not any(key.rsplit(" ", 1)[1].startswith("5") for key in responses), responses
    assert time.monotonic() - started < 120
