"""What a third party does on the RunWhen side, in the emulator's dialect: the integration tests
change, delete and pre-create remote objects behind the operator's back through the API itself, and
name the operations whose request counts they assert on.

Everything here goes through the emulator's HTTP API with the emulator's own admin credentials (not
through the operator's client), so a test that tampers with an object does not depend on the code
under test."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.emulator import EmulatorProcess

__all__ = ["OPERATIONS", "Remote"]

#: Request-counter keys of the operations tests count, per dialect.
OPERATIONS: dict[str, dict[str, str]] = {
    "platform": {
        "workspace.list": "GET /api/v3/workspaces",
        "workspace.get": "GET /api/v3/workspaces/{workspace_short_name}",
        "workspace.create": "POST /api/v3/workspaces",
        "workspace.update": "PATCH /api/v3/workspaces/{workspace_name}",
        "workspace.status": "GET /api/v3/workspaces/{workspace_name}/status",
        "workspace.health": "GET /api/v3/workspaces/{workspace_name}/runners",
        "workflow.create": "POST /api/v4/workspaces/{workspace_name}/workflows/sync-typed",
        "workflow.update": "POST /api/v4/workspaces/{workspace_name}/workflows/sync-typed",
        "persona.create": "POST /api/v4/workspaces/{workspace_name}/personas/sync-typed",
        "persona.update": "POST /api/v4/workspaces/{workspace_name}/personas/sync-typed",
        "workflow.token": (
            "GET /api/v3/workspaces/{workspace_short_name}/workflows/{workflow_short_name}/token"
        ),
        "run.start": "POST /api/v3/workspaces/{workspace_name}/runsessions",
        "runner.token": "GET /api/v3/workspaces/{workspace_name}/runner-token",
        "runner.upload": "GET /api/v3/workspaces/{workspace_name}/upload-config",
        "runner.list": "GET /api/v3/workspaces/{workspace_name}/runners",
        "runner.delete": "DELETE /api/v3/workspaces/{workspace_name}/runners/{runner_id}",
    },
    "documented": {
        "workspace.list": "GET /api/v3/workspaces",
        "workspace.get": "GET /api/v3/workspaces/{workspace_name}",
        "workspace.create": "POST /api/v3/workspaces",
        "workspace.update": "PATCH /api/v3/workspaces/{workspace_name}",
        "workspace.status": "GET /api/v3/workspaces/{workspace_name}/status",
        "workspace.health": "GET /api/v3/workspaces/{workspace_name}/health",
        "workflow.create": "POST /api/v3/workspaces/{workspace_name}/workflows",
        "workflow.update": "PUT /api/v3/workspaces/{workspace_name}/workflows/{workflow_id}",
        "persona.create": "POST /api/v3/workspaces/{workspace_name}/personas",
        "persona.update": "PUT /api/v3/workspaces/{workspace_name}/personas/{persona_id}",
        "workflow.token": "GET /api/v3/workspaces/{workspace_name}/workflows/{workflow_id}/token",
        "run.start": "POST /api/v3/workspaces/{workspace_name}/workflows/{workflow_id}/run",
        "runner.token": "GET /api/v3/workspaces/{workspace_name}/runner-token",
        "runner.upload": "GET /api/v3/workspaces/{workspace_name}/generate-workspace-builder-config",
        "runner.list": "GET /api/v3/workspaces/{workspace_name}/runners",
        "runner.delete": "DELETE /api/v3/workspaces/{workspace_name}/runners/{runner_id}",
    },
}

_PATCH_KEYS = {
    "displayName": "alias",
    "enabledLocations": "enabled_locations",
    "configProvided": "config_provided",
    "slxGroups": "slx_groups",
}


class Remote:
    """Third-party writes to the emulator, in its dialect."""

    def __init__(self, emulator: EmulatorProcess) -> None:
        self.emulator = emulator
        self.dialect = emulator.dialect

    def op(self, name: str) -> str:
        """The request-counter key of operation ``name`` (``"workflow.update"``) in this dialect."""
        return OPERATIONS[self.dialect][name]

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.emulator.url, headers=self.emulator.auth_headers(), timeout=10)

    def _send(
        self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204)
    ) -> Any:
        with self._client() as http:
            response = http.request(method, path, json=body)
        assert response.status_code in ok, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    @property
    def platform(self) -> bool:
        return self.dialect == "platform"

    # -- workspaces --------------------------------------------------------------------------
    def create_workspace(self, name: str, **fields: Any) -> None:
        if self.platform:
            self._send("POST", "/api/v3/workspaces", {"name": name})
            if fields:
                self.patch_workspace(name, **fields)
        else:
            self._send("POST", "/api/v3/workspaces/", {"name": name, **fields})

    def patch_workspace(self, name: str, **fields: Any) -> None:
        """``fields`` in the CRD's names (``displayName=...``)."""
        if self.platform:
            body = {_PATCH_KEYS.get(k, k): v for k, v in fields.items()}
            self._send("PATCH", f"/api/v3/workspaces/{name}", body)
        else:
            self._send("PATCH", f"/api/v3/workspaces/{name}", fields)

    def delete_workspace(self, name: str) -> None:
        self._send("DELETE", f"/api/v3/workspaces/{name}")

    # -- workflows and personas ----------------------------------------------------------------
    def _collection(self, kind: str) -> str:
        return {"workflow": "workflows", "persona": "personas"}[kind]

    def _id(self, kind: str, workspace: str, name: str) -> int:
        items = self.emulator.state()[self._collection(kind)]
        for item in items:
            if item.get("workspace") == workspace and item["name"] == name and not item.get("deletedAt"):
                return int(item["id"])
        raise LookupError(f"no {kind} {name!r} in workspace {workspace!r}")

    def put_child(self, kind: str, workspace: str, name: str, body: dict[str, Any]) -> None:
        """Replace the whole object (as another client would), ``body`` in the CRD's names."""
        plural = self._collection(kind)
        if self.platform:
            payload = {**body, "name": f"{workspace}--{name}"}
            self._send("POST", f"/api/v4/workspaces/{workspace}/{plural}/sync-typed", {"payload": payload})
        else:
            ident = self._id(kind, workspace, name)
            self._send("PUT", f"/api/v3/workspaces/{workspace}/{plural}/{ident}", {**body, "name": name})

    def create_child(self, kind: str, workspace: str, name: str, body: dict[str, Any]) -> None:
        plural = self._collection(kind)
        if self.platform:
            self.put_child(kind, workspace, name, body)
        else:
            self._send("POST", f"/api/v3/workspaces/{workspace}/{plural}/", {**body, "name": name})

    def delete_child(self, kind: str, workspace: str, name: str) -> None:
        plural = self._collection(kind)
        if self.platform:
            self._send("DELETE", f"/api/v4/workspaces/{workspace}/{plural}/{name}")
        else:
            ident = self._id(kind, workspace, name)
            self._send("DELETE", f"/api/v3/workspaces/{workspace}/{plural}/{ident}")
