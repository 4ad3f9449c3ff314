"""RunWhen's own client, runwhen-platform-mcp, driven against the emulator's platform dialect.

The package is RunWhen's MCP server: its tool functions call papi with httpx the way RunWhen itself
does. If the emulator answers them as they expect, the emulator speaks what the real server speaks at
least as far as RunWhen's own client can tell. Each test calls tools and checks the emulator's resulting
state through the API.

runwhen-platform-mcp needs fastmcp, whose dependency tree is not the operator's; so it is installed from
PyPI into its own virtual environment, ``~/.cache/runwhen-operator/mcp-venv-<version>/`` (created on
first use, then reused), and the tools are called in a subprocess (tests/contract/mcp_driver.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.contract.conftest import API_TOKEN
from tests.support.emulator import EmulatorProcess

ROOT = Path(__file__).resolve().parents[2]
MCP_PACKAGE = "runwhen-platform-mcp==2026.8.14.2"
# Cached beside the control-plane binaries (RUNWHEN_CACHE_DIR, as hack/testenv.py reads it), so a
# fresh clone on the same machine does not install it again.
CACHE = Path(os.environ.get("RUNWHEN_CACHE_DIR", Path.home() / ".cache" / "runwhen-operator"))
VENV = CACHE / ("mcp-venv-" + MCP_PACKAGE.rsplit("==", 1)[1])
DRIVER = Path(__file__).with_name("mcp_driver.py")
WS = "demo"


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _install() -> Path:
    """The MCP venv's interpreter, creating the venv first when it is missing or holds another version."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    stamp = VENV / ".installed"
    with (VENV.parent / "mcp-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions at once must not build it twice
        if stamp.exists() and stamp.read_text() == MCP_PACKAGE and _venv_python().exists():
            return _venv_python()
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        result = subprocess.run(
            [str(_venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check", MCP_PACKAGE],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            pytest.fail(f"cannot install {MCP_PACKAGE} into {VENV}:\n{result.stdout}\n{result.stderr}")
        stamp.write_text(MCP_PACKAGE)
    return _venv_python()


@pytest.fixture(scope="session")
def mcp_python() -> Path:
    return _install()


class McpTools:
    """A running mcp_driver.py: ``tools.call("list_assistants", workspace_name="demo")``."""

    def __init__(self, python: Path, api_url: str, token: str, cwd: Path) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RW_", "RUNWHEN_", "MCP_", "DEFAULT_WORKSPACE", "PYTHON"))
        }
        env.update(RW_API_URL=api_url, RUNWHEN_TOKEN=token, MCP_TRANSPORT="stdio", RUNWHEN_AIRGAP="true")
        self.proc = subprocess.Popen(
            [str(python), str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(cwd / "mcp-driver.log").open("w"),
            text=True,
            cwd=cwd,  # the package loads a .env from the working directory: an empty one here
            env=env,
        )
        self.log = cwd / "mcp-driver.log"
        assert self._read() == "ready"

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the MCP driver exited:\n{self.log.read_text()}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"{answer['error']}\n{answer.get('traceback', '')}")
        return answer["result"]

    def _send(self, message: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def call(self, tool: str, **args: Any) -> Any:
        return self._send({"tool": tool, "args": args})

    def set(self, **constants: Any) -> None:
        self._send({"set": constants})

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def api(platform_emulator: EmulatorProcess) -> Iterator[httpx.Client]:
    """The platform API of a fresh emulator holding workspace ``demo``."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=platform_emulator.url, headers=headers, timeout=15) as client:
        created = client.post("/api/v3/workspaces", json={"name": WS})
        assert created.status_code == 201, created.text
        yield client


@pytest.fixture
def tools(
    platform_emulator: EmulatorProcess, api: httpx.Client, mcp_python: Path, tmp_path: Path
) -> Iterator[McpTools]:
    driver = McpTools(mcp_python, platform_emulator.url, API_TOKEN, tmp_path)
    try:
        yield driver
    finally:
        driver.close()


def _no_error(result: Any) -> Any:
    assert not (isinstance(result, dict) and "error" in result), result
    return result


def test_assistant_create_update_list_delete(tools: McpTools, api: httpx.Client) -> None:
    created = _no_error(
        tools.call(
            "create_assistant",
            workspace_name=WS,
            short_name="azure-helper",
            display_name="Azure Helper",
            description="Azure DevOps",
            filter_codebundle_task_tags=["azure"],
            filter_stop_words=["please"],
            run_confidence_threshold=0.9,
        )
    )
    assert created.get("name", f"{WS}--azure-helper") == f"{WS}--azure-helper"
    persona = api.get(f"/api/v4/workspaces/{WS}/personas/azure-helper").json()
    assert persona["name"] == f"{WS}--azure-helper"
    assert persona["shortName"] == "azure-helper"
    assert persona["fullName"] == "Azure Helper"
    assert persona["description"] == "Azure DevOps"
    assert persona["filterCodebundleTaskTags"] == ["azure"]
    assert persona["filterStopWords"] == ["please"]
    assert persona["runConfidenceThreshold"] == 0.9
    assert persona["filterConfidenceThreshold"] == 0.5
    assert persona["filterIssueSelectionStrategy"] == "MOST_SEVERE"

    listed = _no_error(tools.call("list_assistants", workspace_name=WS))
    assert [p["shortName"] for p in listed["results"]] == ["azure-helper"]
    assert listed["count"] == 1
    fetched = _no_error(tools.call("get_assistant", workspace_name=WS, assistant_name=f"{WS}--azure-helper"))
    assert fetched["id"] == persona["id"]

    # update_assistant reads the persona, merges the given fields and upserts the whole of it
    _no_error(
        tools.call("update_assistant", workspace_name=WS, assistant_name="azure-helper", description="v2")
    )
    updated = api.get(f"/api/v4/workspaces/{WS}/personas/azure-helper").json()
    assert updated["description"] == "v2"
    assert updated["id"] == persona["id"]
    for field in ("fullName", "filterCodebundleTaskTags", "filterStopWords", "runConfidenceThreshold"):
        assert updated[field] == persona[field], field
    v3 = api.get(f"/api/v3/workspaces/{WS}/personas").json()
    assert [p["name"] for p in v3["results"]] == [f"{WS}--azure-helper"]

    # create again = full replace: omitted fields go back to their defaults
    _no_error(tools.call("create_assistant", workspace_name=WS, short_name="azure-helper"))
    replaced = api.get(f"/api/v4/workspaces/{WS}/personas/azure-helper").json()
    assert replaced["id"] == persona["id"]
    assert replaced["filterCodebundleTaskTags"] == []
    assert replaced["runConfidenceThreshold"] == 0.95

    _no_error(tools.call("delete_assistant", workspace_name=WS, assistant_name="azure-helper"))
    assert api.get(f"/api/v4/workspaces/{WS}/personas/azure-helper").status_code == 404
    assert api.get(f"/api/v4/workspaces/{WS}/personas").json()["results"] == []
    assert _no_error(tools.call("list_assistants", workspace_name=WS))["results"] == []
    missing = tools.call("get_assistant", workspace_name=WS, assistant_name="azure-helper")
    assert "404" in missing["error"]


def test_workspace_issues(tools: McpTools, platform_emulator: EmulatorProcess) -> None:
    first = platform_emulator.open_issue(WS, "Pods crashlooping", 1, f"{WS}--pods")
    second = platform_emulator.open_issue(WS, "Disk nearly full", 3, f"{WS}--disk")
    platform_emulator.open_issue(WS, "Old news", 2, f"{WS}--old")
    closed = platform_emulator.open_issue(WS, "Fixed", 2, f"{WS}--fixed")
    platform_emulator.close_issue(WS, closed["id"])
    issues = _no_error(tools.call("get_workspace_issues", workspace_name=WS, limit=2))
    assert issues["count"] >= 3
    assert len(issues["results"]) == 2  # the tool's limit is papi's page size
    everything = _no_error(tools.call("get_workspace_issues", workspace_name=WS, limit=50))
    by_id = {issue["id"]: issue for issue in everything["results"]}
    assert {first["id"], second["id"]} <= set(by_id)
    assert by_id[first["id"]]["title"] == "Pods crashlooping"
    assert by_id[second["id"]]["severity"] == 3


def test_run_sessions(tools: McpTools, api: httpx.Client) -> None:
    assert _no_error(tools.call("get_run_sessions", workspace_name=WS, limit=20))["results"] == []
    body = {
        "source": "direct",
        "name": "by-api",
        "runRequests": [{"slxName": f"{WS}--slx", "taskTitles": None}],
    }
    created = api.post(f"/api/v3/workspaces/{WS}/runsessions", json=body)
    assert created.status_code == 201, created.text
    sessions = _no_error(tools.call("get_run_sessions", workspace_name=WS, limit=20))
    assert sessions["count"] == 1
    assert [s["id"] for s in sessions["results"]] == [created.json()["id"]]
    assert sessions["results"][0]["name"] == "by-api"


def test_run_slx(tools: McpTools, platform_emulator: EmulatorProcess, api: httpx.Client) -> None:
    platform_emulator.set_runs("completed", step_seconds=0.05)
    tools.set(SLX_RUN_POLL_INTERVAL_S=1, SLX_RUN_MAX_POLL_S=30)
    result = _no_error(tools.call("run_slx", slx_name="pod-health", workspace_name=WS, task_titles="*"))
    assert result["status"] == "completed", result
    session = api.get(f"/api/v3/workspaces/{WS}/runsessions/{result['session_id']}").json()
    assert [r["slxName"] for r in session["runRequests"]] == [f"{WS}--pod-health"]
    assert all(r["responseTime"] for r in session["runRequests"])
    assert session["hasFailures"] is False
    assert result["run_request_id"] == session["runRequests"][0]["id"]
    listed = api.get(f"/api/v3/workspaces/{WS}/runsessions").json()
    assert [s["id"] for s in listed["results"]] == [result["session_id"]]
