"""The documented dialect: the API as the older public pages describe it.

Trailing slashes on collection paths, integer ids for workflows and personas, POST to create, PUT
to replace, PATCH (camelCase) for workspaces, ``page``/``page-size`` paging with ``next`` links, DRF
field errors, ``/health`` for workspace health, runs triggered with a context that carries a marker.
The only place that knows these paths and payloads; ``DocumentedApi`` also maps them to the
canonical shapes of ``dialect``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import date, datetime
from typing import Any, Final

from runwhen_operator.runwhen import dialect, errors, models

__all__ = ["DocumentedApi"]

# Path templates (also the label the metrics hooks get).
WORKSPACES: Final = "/api/v3/workspaces/"
WORKSPACE: Final = "/api/v3/workspaces/{workspace_name}"
WORKSPACE_STATUS: Final = "/api/v3/workspaces/{workspace_name}/status"
WORKSPACE_HEALTH: Final = "/api/v3/workspaces/{workspace_name}/health"
WORKSPACE_ISSUES: Final = "/api/v3/workspaces/{workspace_name}/issues"
WORKFLOWS: Final = "/api/v3/workspaces/{workspace_name}/workflows/"
WORKFLOW: Final = "/api/v3/workspaces/{workspace_name}/workflows/{workflow_id}"
WORKFLOW_RUN: Final = "/api/v3/workspaces/{workspace_name}/workflows/{workflow_id}/run"
WORKFLOW_TOKEN: Final = "/api/v3/workspaces/{workspace_name}/workflows/{workflow_id}/token"
PERSONAS: Final = "/api/v3/workspaces/{workspace_name}/personas/"
PERSONA: Final = "/api/v3/workspaces/{workspace_name}/personas/{persona_id}"
RUN_SESSIONS: Final = "/api/v3/workspaces/{workspace_name}/runsessions"
RUNNER_TOKEN: Final = "/api/v3/workspaces/{workspace_name}/runner-token"
BUILDER_CONFIG: Final = "/api/v3/workspaces/{workspace_name}/generate-workspace-builder-config"
# Not on the documented pages: the platform's paths and shapes are assumed (docs/runwhen-api.md).
WORKSPACE_RUNNERS: Final = "/api/v3/workspaces/{workspace_name}/runners"
WORKSPACE_RUNNER: Final = "/api/v3/workspaces/{workspace_name}/runners/{runner_id}"
RUN_SESSION: Final = "/api/v3/workspaces/{workspace_name}/runsessions/{runsession_id}"

#: The key in a run's context that carries the WorkflowRun's uid, to find its run session again.
RUN_MARKER: Final = "platform.runwhen.com/workflowrun-uid"
#: Run statuses as WorkflowRun phases.
PHASES: Final = {
    "queued": "Queued",
    "started": "Started",
    "running": "Started",
    "completed": "Completed",
    "completed_with_errors": "CompletedWithErrors",
    "failed": "Failed",
    "canceled": "Canceled",
    "cancelled": "Canceled",
}


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


async def _collect(items: AsyncIterator[Any]) -> list[dialect.Item]:
    return [item.wire() async for item in items]


class DocumentedApi(dialect.Base):
    """The documented dialect over one transport."""

    api_dialect = dialect.Dialect.DOCUMENTED
    child_key = "id"
    idempotent_child_create = False

    async def probe(self) -> None:
        """One cheap authenticated request (proves a token)."""
        await self._rw.request("GET", WORKSPACES, {}, params={"page-size": "1"})

    # --- workspaces ----------------------------------------------------------------------------

    def list_workspaces(self) -> AsyncIterator[models.Workspace]:
        return self._rw.paginate(WORKSPACES, {}, models.Workspace)

    async def get_workspace(self, name: str) -> models.Workspace:
        return await self._rw.call(models.Workspace, "GET", WORKSPACE, {"workspace_name": name})

    async def create_workspace(self, body: Mapping[str, Any]) -> models.Workspace:
        return await self._rw.call(models.Workspace, "POST", WORKSPACES, {}, body=body)

    async def replace_workspace(self, name: str, body: Mapping[str, Any]) -> models.Workspace:
        return await self._rw.call(models.Workspace, "PUT", WORKSPACE, {"workspace_name": name}, body=body)

    async def patch_workspace(self, name: str, body: Mapping[str, Any]) -> models.Workspace:
        return await self._rw.call(models.Workspace, "PATCH", WORKSPACE, {"workspace_name": name}, body=body)

    async def delete_workspace(self, name: str) -> None:
        await self._rw.request("DELETE", WORKSPACE, {"workspace_name": name})

    async def get_workspace_status(self, name: str) -> models.WorkspaceStatus:
        return await self._rw.call(models.WorkspaceStatus, "GET", WORKSPACE_STATUS, {"workspace_name": name})

    async def get_workspace_health(
        self, name: str, *, include_details: bool = True, include_metrics: bool = False
    ) -> models.WorkspaceHealth:
        params = {
            "include_details": _query_value(include_details),
            "include_metrics": _query_value(include_metrics),
        }
        return await self._rw.call(
            models.WorkspaceHealth, "GET", WORKSPACE_HEALTH, {"workspace_name": name}, params=params
        )

    def list_workspace_issues(
        self, name: str, *, closed: bool = False, severity_lte: int | None = None
    ) -> AsyncIterator[models.Issue]:
        params: dict[str, str] = {"closed": _query_value(closed)}
        if severity_lte is not None:
            params["severity__lte"] = str(int(severity_lte))
        return self._rw.paginate(WORKSPACE_ISSUES, {"workspace_name": name}, models.Issue, params)

    # --- workflows -----------------------------------------------------------------------------

    def list_workflows(self, workspace_name: str) -> AsyncIterator[models.Workflow]:
        return self._rw.paginate(WORKFLOWS, {"workspace_name": workspace_name}, models.Workflow)

    async def get_workflow(self, workspace_name: str, workflow_id: int) -> models.Workflow:
        return await self._rw.call(models.Workflow, "GET", WORKFLOW, _wf(workspace_name, workflow_id))

    async def create_workflow(self, workspace_name: str, body: Mapping[str, Any]) -> models.Workflow:
        return await self._rw.call(
            models.Workflow, "POST", WORKFLOWS, {"workspace_name": workspace_name}, body=body
        )

    async def replace_workflow(
        self, workspace_name: str, workflow_id: int, body: Mapping[str, Any]
    ) -> models.Workflow:
        return await self._rw.call(
            models.Workflow, "PUT", WORKFLOW, _wf(workspace_name, workflow_id), body=body
        )

    async def delete_workflow(self, workspace_name: str, workflow_id: int) -> None:
        await self._rw.request("DELETE", WORKFLOW, _wf(workspace_name, workflow_id))

    async def run_workflow(
        self, workspace_name: str, workflow_id: int, context: Mapping[str, Any] | None = None
    ) -> models.WorkflowRun:
        body: dict[str, Any] = {} if context is None else {"context": dict(context)}
        return await self._rw.call(
            models.WorkflowRun, "POST", WORKFLOW_RUN, _wf(workspace_name, workflow_id), body=body
        )

    async def get_workflow_token(self, workspace_name: str, workflow_id: int) -> models.WebhookToken:
        return await self._rw.call(
            models.WebhookToken, "GET", WORKFLOW_TOKEN, _wf(workspace_name, workflow_id)
        )

    # --- personas ------------------------------------------------------------------------------

    def list_personas(self, workspace_name: str) -> AsyncIterator[models.Persona]:
        return self._rw.paginate(PERSONAS, {"workspace_name": workspace_name}, models.Persona)

    async def get_persona(self, workspace_name: str, persona_id: int) -> models.Persona:
        return await self._rw.call(models.Persona, "GET", PERSONA, _persona(workspace_name, persona_id))

    async def create_persona(self, workspace_name: str, body: Mapping[str, Any]) -> models.Persona:
        return await self._rw.call(
            models.Persona, "POST", PERSONAS, {"workspace_name": workspace_name}, body=body
        )

    async def replace_persona(
        self, workspace_name: str, persona_id: int, body: Mapping[str, Any]
    ) -> models.Persona:
        return await self._rw.call(
            models.Persona, "PUT", PERSONA, _persona(workspace_name, persona_id), body=body
        )

    async def delete_persona(self, workspace_name: str, persona_id: int) -> None:
        await self._rw.request("DELETE", PERSONA, _persona(workspace_name, persona_id))

    # --- run sessions --------------------------------------------------------------------------

    def list_run_sessions(self, workspace_name: str, **filters: Any) -> AsyncIterator[models.RunSession]:
        """Filters are sent as query parameters as named (``modified__lte``,
        ``runrequest__runbook__name``, ``source``, ``workflowId``); None values are left out."""
        params = {key: _query_value(value) for key, value in filters.items() if value is not None}
        return self._rw.paginate(RUN_SESSIONS, {"workspace_name": workspace_name}, models.RunSession, params)

    async def get_run_session(self, workspace_name: str, runsession_id: int) -> models.RunSession:
        return await self._rw.call(
            models.RunSession,
            "GET",
            RUN_SESSION,
            {"workspace_name": workspace_name, "runsession_id": runsession_id},
        )

    # --- the canonical verbs (dialect.Api) --------------------------------------------------------

    def _child_calls(self, kind: dialect.ChildKind) -> tuple[Any, Any, Any, Any]:
        if kind is dialect.WORKFLOW:
            return self.list_workflows, self.create_workflow, self.replace_workflow, self.delete_workflow
        return self.list_personas, self.create_persona, self.replace_persona, self.delete_persona

    @staticmethod
    def workspace_body(body: Mapping[str, Any]) -> dialect.Item:
        return dict(body)

    async def workspace_listing(self) -> list[dialect.Item]:
        return await _collect(self.list_workspaces())

    async def read_workspace(self, name: str) -> dialect.Item | None:
        """``GET /api/v3/workspaces/{workspace_name}``; None on 404."""
        try:
            return (await self.get_workspace(name)).wire()
        except errors.NotFoundError:
            return None

    async def new_workspace(self, name: str, body: Mapping[str, Any]) -> dialect.Item:
        return (await self.create_workspace({"name": name, **body})).wire()

    async def change_workspace(self, name: str, changes: Mapping[str, Any]) -> dialect.Item:
        return (await self.patch_workspace(name, changes)).wire()

    async def remove_workspace(self, name: str) -> None:
        await self.delete_workspace(name)

    async def workspace_report(
        self, name: str, *, include_details: bool, include_metrics: bool
    ) -> dialect.WorkspaceReport:
        health = await self.get_workspace_health(
            name, include_details=include_details, include_metrics=include_metrics
        )
        flags = await self.get_workspace_status(name)
        return dialect.WorkspaceReport(health=health, flags=flags)

    async def open_issues(self, name: str, *, max_severity: int) -> list[models.Issue]:
        return [
            issue
            async for issue in self.list_workspace_issues(name, closed=False, severity_lte=max_severity)
            if not issue.closed
        ]

    async def runner_token(self, workspace: str, location: str) -> dialect.RunnerToken:
        """``GET .../runner-token``: the pages document no location parameter (one token per
        workspace); the answer is read as ``{"token": ...}``."""
        response = await self._rw.request("GET", RUNNER_TOKEN, {"workspace_name": workspace})
        return dialect.runner_token(dialect.json_body(response))

    async def upload_info(self, workspace: str, location: str) -> dialect.UploadInfo:
        """``GET .../generate-workspace-builder-config``: "a workspace builder configuration
        payload", read as the builder's uploadInfo keys; the location is the operator's to fill in."""
        response = await self._rw.request("GET", BUILDER_CONFIG, {"workspace_name": workspace})
        return dialect.upload_info(
            dialect.json_body(response),
            papi_url=self._rw.base_url.rstrip("/"),
            workspace=workspace,
            location=location,
        )

    async def runners(self, workspace: str) -> list[dialect.Runner]:
        response = await self._rw.request("GET", WORKSPACE_RUNNERS, {"workspace_name": workspace})
        data = dialect.json_body(response)
        if not isinstance(data, list):
            raise errors.UnexpectedResponseError("GET runners answered something that is not a list")
        out = []
        for item in data:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise errors.UnexpectedResponseError("GET runners answered an invalid runner")
            out.append(
                dialect.Runner(
                    name=item["name"],
                    id=str(item.get("value") or item["name"]),
                    health=str(item.get("health") or "unknown").lower(),
                    last_heartbeat=models.parse_time(item.get("lastHeartbeat")),
                )
            )
        return out

    async def remove_runner(self, workspace: str, runner_id: str) -> None:
        await self._rw.request(
            "DELETE", WORKSPACE_RUNNER, {"workspace_name": workspace, "runner_id": runner_id}
        )

    async def child_listing(self, kind: dialect.ChildKind, workspace: str) -> list[dialect.Item]:
        listing = self._child_calls(kind)[0]
        return await _collect(listing(workspace))

    async def read_child(self, kind: dialect.ChildKind, workspace: str, key: Any) -> dialect.Item | None:
        """``GET /api/v3/workspaces/{workspace_name}/workflows/{workflow_id}`` (or
        ``.../personas/{persona_id}``) by id; None on 404."""
        read = self.get_workflow if kind is dialect.WORKFLOW else self.get_persona
        try:
            found = await read(workspace, int(key))
        except errors.NotFoundError:
            return None
        wire: dialect.Item = found.wire()
        return wire

    async def new_child(
        self, kind: dialect.ChildKind, workspace: str, body: Mapping[str, Any]
    ) -> dialect.Item:
        created = await self._child_calls(kind)[1](workspace, body)
        wire: dialect.Item = created.wire()
        return wire

    async def change_child(
        self, kind: dialect.ChildKind, workspace: str, key: Any, body: Mapping[str, Any]
    ) -> dialect.Item:
        updated = await self._child_calls(kind)[2](workspace, int(key), body)
        wire: dialect.Item = updated.wire()
        return wire

    async def remove_child(self, kind: dialect.ChildKind, workspace: str, key: Any) -> None:
        await self._child_calls(kind)[3](workspace, int(key))

    async def webhook_token(self, workspace: str, key: Any, *, rotate: bool) -> models.WebhookToken:
        # The documented API reads the token as often as asked and has no rotation call.
        return await self.get_workflow_token(workspace, int(key))

    async def resolve_workflow(self, target: dialect.WorkflowTarget) -> dialect.WorkflowTarget:
        if target.id is not None:
            return target
        for item in await self.child_listing(dialect.WORKFLOW, target.workspace):
            if item.get("name") == target.name:
                return dialect.WorkflowTarget(target.workspace, int(item["id"]), target.name)
        raise errors.NotFoundError(f'workflow "{target.name}" not found in workspace "{target.workspace}"')

    async def start_run(
        self, target: dialect.WorkflowTarget, marker: str, context: Mapping[str, Any] | None
    ) -> dialect.RunState:
        assert target.id is not None, "resolve_workflow first"
        run = await self.run_workflow(target.workspace, target.id, {**(context or {}), RUN_MARKER: marker})
        return dialect.RunState(
            session_id=run.run_session_id,
            run_id=run.id,
            phase=PHASES.get(str(run.status), "Queued"),
            message=run.status_message or f"run {run.status}",
            queued_at=run.queued_at,
            started_at=run.started_at,
        )

    async def find_run(
        self, target: dialect.WorkflowTarget, marker: str, since: datetime
    ) -> dialect.RunState | None:
        async for session in self.list_run_sessions(
            target.workspace, source="workflow", workflowId=target.id
        ):
            if (session.context or {}).get(RUN_MARKER) == marker:
                return self._session_state(session)
        return None

    async def get_run(self, target: dialect.WorkflowTarget, session_id: int) -> dialect.RunState:
        return self._session_state(await self.get_run_session(target.workspace, session_id))

    @staticmethod
    def _session_state(session: models.RunSession) -> dialect.RunState:
        raw = str(session.status or "")
        wire = session.wire()
        phase = PHASES.get(raw, "Queued")
        # A run session carries no start or end time of its own: `updatedAt` dates a change.
        return dialect.RunState(
            session_id=session.id,
            phase=phase,
            message=f"run session {session.id} {raw or 'has no status'}",
            queued_at=session.created_at,
            started_at=models.parse_time(wire.get("startedAt"))
            or (session.updated_at if phase != "Queued" else None),
            completed_at=models.parse_time(wire.get("completedAt")) or session.updated_at,
        )


def _wf(workspace_name: str, workflow_id: int) -> dict[str, str | int]:
    return {"workspace_name": workspace_name, "workflow_id": workflow_id}


def _persona(workspace_name: str, persona_id: int) -> dict[str, str | int]:
    return {"workspace_name": workspace_name, "persona_id": persona_id}
