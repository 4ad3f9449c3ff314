"""The operator's own client (platform dialect) against the platform emulator, checked request by request.

One pass through everything the operator does on papi: log in, probe, create/read/patch/list a
workspace, upsert/read/list/delete a workflow and a persona, read and rotate a webhook token, read the
health inputs and open issues, start a run and follow it, delete the workspace. The emulator records
the exchanges; every one of them, requests included (they carry the operator's User-Agent), must
conform to papi.json.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runwhen_operator.runwhen import auth, client, dialect, platform
from tests.contract.validator import ContractValidator
from tests.support.emulator import SAMPLE_DEFINITION, EmulatorProcess

WS = "demo"
DEFINITION = SAMPLE_DEFINITION


async def _lifecycle(url: str, username: str, password: str) -> None:
    rw = client.RunWhenClient(url, auth.PasswordCredentials(username, password))
    api = platform.PlatformApi(rw)
    try:
        await api.verify()
        await api.new_workspace(WS, {})
        assert (await api.get_workspace(WS))["name"] == WS
        await api.change_workspace(WS, {"displayName": "Demo", "configProvided": {"a": "b"}})
        assert WS in [item["name"] for item in await api.workspace_listing()]

        await api.new_child(dialect.PERSONA, WS, {"name": "edgar", "fullName": "Eager Edgar"})
        await api.change_child(
            dialect.PERSONA, WS, "edgar", {"fullName": "Edgar", "runConfidenceThreshold": 0.9}
        )
        assert [item["name"] for item in await api.child_listing(dialect.PERSONA, WS)] == ["edgar"]

        await api.new_child(dialect.WORKFLOW, WS, {"name": "restart", "definition": DEFINITION})
        assert (await api.get_child(dialect.WORKFLOW, WS, "restart"))["name"] == "restart"
        await api.webhook_token(WS, "restart", rotate=False)
        await api.webhook_token(WS, "restart", rotate=True)

        await api.workspace_report(WS, include_details=True, include_metrics=False)
        await api.open_issues(WS, max_severity=4)

        target = await api.resolve_workflow(dialect.WorkflowTarget(WS, name="restart"))
        since = datetime.now(UTC)
        started = await api.start_run(target, "contract-run", {"why": "test"})
        assert (await api.find_run(target, "contract-run", since)) is not None
        await api.get_run(target, started.session_id)

        await api.remove_child(dialect.WORKFLOW, WS, "restart")
        await api.remove_child(dialect.PERSONA, WS, "edgar")
        await api.remove_workspace(WS)
    finally:
        await api.aclose()


def test_operator_client_speaks_papi(platform_emulator: EmulatorProcess) -> None:
    directory = os.environ.get("RUNWHEN_CONTRACT_DIR")
    if not directory:
        pytest.skip("RUNWHEN_CONTRACT_DIR is not set (the contract plugin is off)")
    asyncio.run(_lifecycle(platform_emulator.url, platform_emulator.username, platform_emulator.password))
    recorded = Path(directory) / f"exchanges-{platform_emulator.pid}.jsonl"
    assert recorded.exists(), "the emulator recorded nothing: does the fixture pass --record-exchanges?"
    report = ContractValidator().validate_file(recorded)
    assert report.operator_requests >= 20, report.summary()
    assert not report.violations, "\n".join(str(v) for v in report.violations)
