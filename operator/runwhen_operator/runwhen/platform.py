"""The platform dialect: the API as the running RunWhen server's own OpenAPI document (papi 2.0.0)
describes it.

- Paths have no trailing slash (only the token endpoints keep one).
- Workspaces are addressed by name; the display name is ``alias``; ``configProvided`` and
  ``slxGroups`` are lists of objects; PATCH takes snake_case keys and applies only non-null ones.
  Creating one takes ``{name}`` and may auto-suffix a taken name (``renamed_from``).
- Workflows and personas are keyed by short name (the server's ``name`` is ``<workspace>--<short>``);
  v3 and v4 read them, v4 ``sync-typed`` upserts them by name and deletes them by short name.
- Lists page with ``limit``/``offset`` (run sessions with ``page``/``page-size``); the client
  computes the next page itself.
- A run is a run session created directly with the workflow's tasks as run requests, named after
  the WorkflowRun, so that it can be found again after a lost answer.
- There is no ``/health``: the health mirror is built from ``/status``, ``/runners`` and open issues.

Everything here that the document leaves open is listed as such in docs/runwhen-api.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from runwhen_operator.runwhen import dialect, errors, models

__all__ = ["PlatformApi", "run_session_name"]

log = logging.getLogger(__name__)

WORKSPACES: Final = "/api/v3/workspaces"
WORKSPACE_GET: Final = "/api/v3/workspaces/{workspace_short_name}"
WORKSPACE: Final = "/api/v3/workspaces/{workspace_name}"
WORKSPACE_STATUS: Final = "/api/v3/workspaces/{workspace_name}/status"
WORKSPACE_RUNNERS: Final = "/api/v3/workspaces/{workspace_name}/runners"
WORKSPACE_ISSUES: Final = "/api/v3/workspaces/{workspace_name}/issues"
WORKSPACE_RUNNER: Final = "/api/v3/workspaces/{workspace_name}/runners/{runner_id}"
RUNNER_TOKEN: Final = "/api/v3/workspaces/{workspace_name}/runner-token"
UPLOAD_CONFIG: Final = "/api/v3/workspaces/{workspace_name}/upload-config"
WORKFLOWS: Final = "/api/v4/workspaces/{workspace_name}/workflows"
WORKFLOW: Final = "/api/v4/workspaces/{workspace_name}/workflows/{workflow_name}"
WORKFLOW_SYNC: Final = "/api/v4/workspaces/{workspace_name}/workflows/sync-typed"
WORKFLOW_TOKEN: Final = "/api/v3/workspaces/{workspace_short_name}/workflows/{workflow_short_name}/token"
WORKFLOW_ROTATE: Final = (
    "/api/v3/workspaces/{workspace_short_name}/workflows/{workflow_short_name}/rotate-token"
)
PERSONAS: Final = "/api/v4/workspaces/{workspace_name}/personas"
PERSONA: Final = "/api/v4/workspaces/{workspace_name}/personas/{persona_short_name}"
PERSONA_SYNC: Final = "/api/v4/workspaces/{workspace_name}/personas/sync-typed"
RUN_SESSIONS: Final = "/api/v3/workspaces/{workspace_name}/runsessions"
RUN_SESSION: Final = "/api/v3/workspaces/{workspace_name}/runsessions/{runsession_id}"

#: Issues page at most this many per request.
ISSUES_PAGE_MAX: Final = 250
#: Canonical workspace keys and their snake_case PATCH keys.
WORKSPACE_PATCH_KEYS: Final = {
    "displayName": "alias",
    "enabledLocations": "enabled_locations",
    "configProvided": "config_provided",
    "slxGroups": "slx_groups",
}
#: Prefix of the run session name that marks a WorkflowRun's run (followed by its uid).
RUN_SESSION_PREFIX: Final = "k8s-workflowrun-"
#: How long before the recorded intent a run session may have been created (clock skew).
RUN_FIND_SKEW: Final = timedelta(minutes=5)
#: Statuses that the token read answers once the token was read already (then it must be rotated).
_TOKEN_ALREADY_READ: Final = frozenset({400, 403, 409, 410})
#: Runner health as health-detail status.
_RUNNER_HEALTH: Final = {"online": "healthy", "stale": "degraded"}
_HEALTH_RANK: Final = {"healthy": 0, "unknown": 1, "degraded": 2, "unhealthy": 3}


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class WorkspaceWire(_Wire):
    name: str
    alias: str | None = None
    enabled_locations: list[str] | None = Field(default=None, alias="enabledLocations")
    config_provided: list[dict[str, Any]] | None = Field(default=None, alias="configProvided")
    slx_groups: list[dict[str, Any]] | None = Field(default=None, alias="slxGroups")


class WorkspaceCreated(_Wire):
    name: str
    status: str | None = None
    renamed_from: str | None = None


class ChildWire(_Wire):
    id: int
    name: str
    short_name: str | None = Field(default=None, alias="shortName")
    created_at: datetime | None = Field(default=None, alias="createdAt")


class TokenWire(_Wire):
    webhook_url: str | None = None
    webhook_token: str


class RunnerWire(_Wire):
    name: str
    value: str | None = None
    health: str | None = None
    last_heartbeat: str | None = Field(default=None, alias="lastHeartbeat")
    seconds_since_heartbeat: float | None = Field(default=None, alias="secondsSinceHeartbeat")


class IssueWire(_Wire):
    id: int
    title: str | None = None
    task_title: str | None = Field(default=None, alias="taskTitle")
    severity: int | None = None
    slx_name: str | None = Field(default=None, alias="slxName")
    open_since: datetime | None = Field(default=None, alias="openSince")
    closed_at: datetime | None = Field(default=None, alias="closedAt")


class RunRequestWire(_Wire):
    id: int | None = None
    status: str | None = None
    request_time: datetime | None = Field(default=None, alias="requestTime")
    response_time: datetime | None = Field(default=None, alias="responseTime")
    passed_titles: str | None = Field(default=None, alias="passedTitles")
    failed_titles: str | None = Field(default=None, alias="failedTitles")


class RunSessionWire(_Wire):
    id: int
    name: str | None = None
    active: bool | None = None
    has_failures: bool | None = Field(default=None, alias="hasFailures")
    created: datetime | None = None
    modified: datetime | None = None
    run_requests: list[RunRequestWire] = Field(default_factory=list, alias="runRequests")


def run_session_name(marker: str) -> str:
    """The name of the run session that runs the WorkflowRun with uid ``marker``."""
    return RUN_SESSION_PREFIX + marker


def full_name(workspace: str, short: str) -> str:
    """The server's name of a workflow or persona: ``<workspace>--<short>``."""
    return short if "--" in short else f"{workspace}--{short}"


def _short(workspace: str, wire: ChildWire) -> str:
    if wire.short_name:
        return wire.short_name
    prefix = f"{workspace}--"
    return wire.name[len(prefix) :] if wire.name.startswith(prefix) else wire.name


def _as_name_value_list(value: Any) -> Any:
    """A map ``{k: v}`` as the server's list of ``{name, value}`` objects; a list as it is."""
    if isinstance(value, Mapping):
        return [{"name": str(k), "value": v} for k, v in value.items()]
    return value


def _as_group_list(value: Any) -> Any:
    """A map ``{group: [slx, ...]}`` as a list of ``{name, slxs}`` objects; a list as it is."""
    if isinstance(value, Mapping):
        return [{"name": str(k), "slxs": v} for k, v in value.items()]
    return value


def _check_workspace_fields(body: Mapping[str, Any]) -> None:
    """What the document's WorkspaceUpdate says of the writable fields, checked before a request is
    sent (a value the server would refuse with a 422 is refused here, naming the spec's field)."""
    problems: dict[str, list[str]] = {}
    for key in ("configProvided", "slxGroups"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            problems[key] = ["must be a map or a list of objects"]
            continue
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                problems[f"{key}[{index}]"] = ["must be an object"]
    locations = body.get("enabledLocations")
    if locations is not None and (
        not isinstance(locations, list) or not all(isinstance(i, str) for i in locations)
    ):
        problems["enabledLocations"] = ["must be a list of strings"]
    if "displayName" in body and not isinstance(body["displayName"], str):
        problems["displayName"] = ["must be a string"]
    if problems:
        text = "; ".join(f"{k}: {' '.join(v)}" for k, v in problems.items())
        raise errors.InvalidRequestError(
            f"the platform API would refuse the workspace: {text}", status_code=None, field_errors=problems
        )


def _in_crd_names(exc: errors.InvalidRequestError) -> errors.InvalidRequestError:
    """A PATCH rejection with the fields named as the spec names them (``slx_groups[0]`` ->
    ``slxGroups[0]``), so the condition points at what the user wrote."""
    renames = {wire: crd for crd, wire in WORKSPACE_PATCH_KEYS.items()}

    def rename(key: str) -> str:
        head, sep, rest = key.partition(".")
        base, bracket, index = head.partition("[")
        return renames.get(base, base) + bracket + index + sep + rest

    message = exc.message
    for wire, crd in renames.items():
        message = (
            message.replace(f"{wire}:", f"{crd}:")
            .replace(f"{wire}[", f"{crd}[")
            .replace(f"{wire}.", f"{crd}.")
        )
    return errors.InvalidRequestError(
        message,
        status_code=exc.status_code,
        field_errors={rename(k): v for k, v in exc.field_errors.items()},
    )


def _resource_id(answer: Any) -> int | None:
    """The object's id in a sync-typed answer (``{"status", "name", "resourceId"}``), if it has one."""
    if isinstance(answer, Mapping):
        for key in ("resourceId", "id"):
            value = answer.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _titles(text: str | None) -> list[str]:
    return [t for t in (text or "").split("||") if t.strip()]


class PlatformApi(dialect.Base):
    """The platform dialect over one transport."""

    api_dialect = dialect.Dialect.PLATFORM
    child_key = "name"
    idempotent_child_create = True

    async def probe(self) -> None:
        """``GET /api/v3/workspaces?limit=1``: 200 with a list only on a platform server (a documented
        one redirects to the slashed path or answers 404)."""
        response = await self._rw.request("GET", WORKSPACES, {}, params={"limit": "1"})
        self._rw.parse(models.Page, response)

    # --- workspaces ----------------------------------------------------------------------------

    @staticmethod
    def workspace_body(body: Mapping[str, Any]) -> dialect.Item:
        """The CRD's workspace fields in this dialect's canonical form (lists of objects)."""
        out = dict(body)
        if "configProvided" in out:
            out["configProvided"] = _as_name_value_list(out["configProvided"])
        if "slxGroups" in out:
            out["slxGroups"] = _as_group_list(out["slxGroups"])
        return out

    @staticmethod
    def _workspace_item(wire: WorkspaceWire) -> dialect.Item:
        item = wire.wire()
        if wire.alias is not None:
            item["displayName"] = wire.alias
        return item

    async def workspace_listing(self) -> list[dialect.Item]:
        return [
            self._workspace_item(ws) async for ws in self._rw.paginate_offset(WORKSPACES, {}, WorkspaceWire)
        ]

    async def get_workspace(self, name: str) -> dialect.Item:
        wire = await self._rw.call(WorkspaceWire, "GET", WORKSPACE_GET, {"workspace_short_name": name})
        return self._workspace_item(wire)

    async def read_workspace(self, name: str) -> dialect.Item | None:
        """``GET /api/v3/workspaces/{workspace_short_name}``; None on 404."""
        try:
            return await self.get_workspace(name)
        except errors.NotFoundError:
            return None

    async def new_workspace(self, name: str, body: Mapping[str, Any]) -> dialect.Item:
        _check_workspace_fields(self.workspace_body(body))  # before anything is created
        created = await self._rw.call(WorkspaceCreated, "POST", WORKSPACES, {}, body={"name": name})
        if name not in (created.name, created.renamed_from):
            # Not the auto-suffix of a taken name (that says `renamed_from: <ours>`): an answer about
            # another workspace, which is never recorded, and never deleted (it may be someone's).
            raise errors.IdentityMismatchError(
                f'RunWhen answered the create of workspace "{name}" with workspace "{created.name}" '
                f"(renamed_from {created.renamed_from!r}); nothing of that answer is recorded",
                expected=name,
                given=created.name,
            )
        if created.name != name:
            message = (
                f'RunWhen created the workspace as "{created.name}" because the name "{name}" is taken '
                "(by a workspace these credentials may not see)"
            )
            try:
                await self.remove_workspace(created.name)
            except errors.RunWhenError as exc:
                message += f'; deleting "{created.name}" again failed: {exc}'
            else:
                message += f'; "{created.name}" was deleted again'
            raise errors.WorkspaceRenamedError(message, requested=name, given=created.name)
        changes = {k: v for k, v in self.workspace_body(body).items() if k in WORKSPACE_PATCH_KEYS}
        if changes and created.status != "provisioning":
            try:
                return await self.change_workspace(name, changes)
            except errors.InvalidRequestError as exc:
                # Worded as a refused update, which is what the next pass would see.
                raise errors.RejectedAfterCreateError(
                    exc.message,
                    external_id=name,
                    status_code=exc.status_code,
                    field_errors=exc.field_errors,
                ) from None
        # Still provisioning (or nothing to set): the next observation sets what is missing.
        return {"name": name}

    async def change_workspace(self, name: str, changes: Mapping[str, Any]) -> dialect.Item:
        body = {}
        canonical = self.workspace_body(changes)
        _check_workspace_fields(canonical)
        for key, value in canonical.items():
            if key not in WORKSPACE_PATCH_KEYS:
                raise ValueError(f"workspace field {key!r} cannot be written on this server")
            body[WORKSPACE_PATCH_KEYS[key]] = value
        try:
            wire = await self._rw.call(WorkspaceWire, "PATCH", WORKSPACE, {"workspace_name": name}, body=body)
        except errors.InvalidRequestError as exc:
            raise _in_crd_names(exc) from None
        return self._workspace_item(wire)

    async def remove_workspace(self, name: str) -> None:
        await self._rw.request("DELETE", WORKSPACE, {"workspace_name": name})

    async def workspace_report(
        self, name: str, *, include_details: bool, include_metrics: bool
    ) -> dialect.WorkspaceReport:
        flags = await self._rw.call(models.WorkspaceStatus, "GET", WORKSPACE_STATUS, {"workspace_name": name})
        details: list[models.HealthDetail] = []
        if not flags.workspace:
            details.append(
                models.HealthDetail(component="workspace", status="unhealthy", message="not found")
            )
        if not flags.sync:
            details.append(
                models.HealthDetail(component="sync", status="degraded", message="the sync has not succeeded")
            )
        try:
            response = await self._rw.request("GET", WORKSPACE_RUNNERS, {"workspace_name": name})
            runners = self._runners(response.json())
        except errors.RunWhenError as exc:
            if not dialect.not_supported(exc):
                raise
            runners = None  # this server has no runner listing: not part of the health then
        if runners is not None:
            if not runners:
                details.append(
                    models.HealthDetail(
                        component="runners", status="unknown", message="no runner reports to this workspace"
                    )
                )
            for runner in runners:
                status = _RUNNER_HEALTH.get((runner.health or "").lower(), "unknown")
                since = runner.seconds_since_heartbeat
                message = f"{runner.health or 'unknown'}" + (
                    f", last heartbeat {since:.0f}s ago" if since is not None else ""
                )
                details.append(
                    models.HealthDetail(component=f"runner/{runner.name}", status=status, message=message)
                )
        worst = max((d.status for d in details), key=lambda s: _HEALTH_RANK.get(s, 1), default="healthy")
        health = models.WorkspaceHealth(
            workspace=name, status=worst, details=details if include_details else None
        )
        return dialect.WorkspaceReport(health=health, flags=flags)

    @staticmethod
    def _runners(data: Any) -> list[RunnerWire]:
        if not isinstance(data, list):
            raise errors.UnexpectedResponseError("GET runners answered something that is not a list")
        try:
            return [RunnerWire.model_validate(item) for item in data]
        except ValueError:
            raise errors.UnexpectedResponseError("GET runners answered an invalid runner") from None

    # --- runner locations ----------------------------------------------------------------------

    async def runner_token(self, workspace: str, location: str) -> dialect.RunnerToken:
        """``GET .../runner-token?location=`` (workspace admin); its answer is free-form in the
        document: ``{"token": ...}`` is read."""
        response = await self._rw.request(
            "GET", RUNNER_TOKEN, {"workspace_name": workspace}, params={"location": location}
        )
        return dialect.runner_token(dialect.json_body(response))

    async def upload_info(self, workspace: str, location: str) -> dialect.UploadInfo:
        """``GET .../upload-config?location=`` (``generate-workspace-builder-config`` answers 410 on
        this server); a free-form object in the document, read as the builder's uploadInfo keys."""
        response = await self._rw.request(
            "GET", UPLOAD_CONFIG, {"workspace_name": workspace}, params={"location": location}
        )
        return dialect.upload_info(
            dialect.json_body(response),
            papi_url=self._rw.base_url.rstrip("/"),
            workspace=workspace,
            location=location,
        )

    async def runners(self, workspace: str) -> list[dialect.Runner]:
        response = await self._rw.request("GET", WORKSPACE_RUNNERS, {"workspace_name": workspace})
        return [
            dialect.Runner(
                name=wire.name,
                id=wire.value or wire.name,
                health=(wire.health or "unknown").lower(),
                last_heartbeat=models.parse_time(wire.last_heartbeat),
            )
            for wire in self._runners(response.json())
        ]

    async def remove_runner(self, workspace: str, runner_id: str) -> None:
        await self._rw.request(
            "DELETE", WORKSPACE_RUNNER, {"workspace_name": workspace, "runner_id": runner_id}
        )

    async def open_issues(self, name: str, *, max_severity: int) -> list[models.Issue]:
        params = {"closed": "false", "severity__lte": str(int(max_severity))}
        issues = []
        async for wire in self._rw.paginate_offset(
            WORKSPACE_ISSUES, {"workspace_name": name}, IssueWire, params, max_page_size=ISSUES_PAGE_MAX
        ):
            if wire.closed_at is not None:
                continue
            if wire.severity is not None and wire.severity > max_severity:
                continue
            issues.append(
                models.Issue(
                    id=wire.id,
                    title=wire.title or wire.task_title,
                    severity=wire.severity,
                    slx_name=wire.slx_name,
                    open_since=wire.open_since,
                )
            )
        return issues

    # --- workflows and personas ----------------------------------------------------------------

    @staticmethod
    def _paths(kind: dialect.ChildKind) -> tuple[str, str, str, str]:
        if kind is dialect.WORKFLOW:
            return WORKFLOWS, WORKFLOW, WORKFLOW_SYNC, "workflow_name"
        return PERSONAS, PERSONA, PERSONA_SYNC, "persona_short_name"

    @staticmethod
    def _child_item(workspace: str, wire: ChildWire) -> dialect.Item:
        item = wire.wire()
        item["serverName"] = wire.name
        item["name"] = _short(workspace, wire)
        return item

    async def child_listing(self, kind: dialect.ChildKind, workspace: str) -> list[dialect.Item]:
        listing = self._paths(kind)[0]
        return [
            self._child_item(workspace, wire)
            async for wire in self._rw.paginate_offset(listing, {"workspace_name": workspace}, ChildWire)
        ]

    async def get_child(self, kind: dialect.ChildKind, workspace: str, short: str) -> dialect.Item:
        _, one, _, param = self._paths(kind)
        wire = await self._rw.call(ChildWire, "GET", one, {"workspace_name": workspace, param: short})
        return self._child_item(workspace, wire)

    async def read_child(self, kind: dialect.ChildKind, workspace: str, key: Any) -> dialect.Item | None:
        """``GET /api/v4/workspaces/{workspace_name}/workflows/{workflow_name}`` (or
        ``.../personas/{persona_short_name}``) by short name; None on 404."""
        try:
            return await self.get_child(kind, workspace, str(key))
        except errors.NotFoundError:
            return None

    async def new_child(
        self, kind: dialect.ChildKind, workspace: str, body: Mapping[str, Any]
    ) -> dialect.Item:
        return await self._upsert(kind, workspace, body)

    async def change_child(
        self, kind: dialect.ChildKind, workspace: str, key: Any, body: Mapping[str, Any]
    ) -> dialect.Item:
        return await self._upsert(kind, workspace, {**body, "name": str(key)})

    async def _upsert(self, kind: dialect.ChildKind, workspace: str, body: Mapping[str, Any]) -> dialect.Item:
        """``sync-typed``: the whole object, keyed by name (a persona's omitted fields reset to the
        server's defaults). Its answer is free-form in the document: when it names the object's id
        (``resourceId``, as the server's other sync-typed answers do) the item is what was sent with
        that id; otherwise the object is read back."""
        short = str(body["name"])
        payload = {**body, "name": full_name(workspace, short)}
        if kind is dialect.WORKFLOW:
            payload = {k: v for k, v in payload.items() if k in ("name", "definition")}
        sync = self._paths(kind)[2]
        # An upsert by name is safe to repeat: a lost answer is retried like a PUT.
        response = await self._rw.request(
            "POST", sync, {"workspace_name": workspace}, body={"payload": payload}, replay_safe=True
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        ident = _resource_id(answer)
        if ident is None:
            return await self.get_child(kind, workspace, short)
        return {**body, "name": short, "id": ident, "serverName": payload["name"]}

    async def remove_child(self, kind: dialect.ChildKind, workspace: str, key: Any) -> None:
        _, one, _, param = self._paths(kind)
        await self._rw.request("DELETE", one, {"workspace_name": workspace, param: str(key)})

    async def webhook_token(self, workspace: str, key: Any, *, rotate: bool) -> models.WebhookToken:
        """The token can be read once; after that only a rotation makes a new one readable."""
        params = {"workspace_short_name": workspace, "workflow_short_name": str(key)}
        if rotate:
            await self._rw.request("PATCH", WORKFLOW_ROTATE, params)
        try:
            wire = await self._rw.call(TokenWire, "GET", WORKFLOW_TOKEN, params)
        except errors.RunWhenError as exc:
            if rotate or exc.status_code not in _TOKEN_ALREADY_READ:
                raise
            log.info("the webhook token of workflow %s/%s was read before; rotating it", workspace, key)
            await self._rw.request("PATCH", WORKFLOW_ROTATE, params)
            wire = await self._rw.call(TokenWire, "GET", WORKFLOW_TOKEN, params)
        return models.WebhookToken(token=wire.webhook_token, webhook_url=wire.webhook_url)

    # --- runs ----------------------------------------------------------------------------------

    async def resolve_workflow(self, target: dialect.WorkflowTarget) -> dialect.WorkflowTarget:
        """The workflow as the server has it (a run is made of its tasks), found by short name, or by
        id in the workspace's listing."""
        if target.name:
            item = await self.get_child(dialect.WORKFLOW, target.workspace, target.name)
        else:
            found = [
                i
                for i in await self.child_listing(dialect.WORKFLOW, target.workspace)
                if i.get("id") == target.id
            ]
            if not found:
                raise errors.NotFoundError(
                    f"workflow {target.id} not found in workspace {target.workspace!r}"
                )
            item = found[0]
        return dialect.WorkflowTarget(
            target.workspace, item.get("id"), str(item["name"]), definition=item.get("definition") or {}
        )

    async def start_run(
        self, target: dialect.WorkflowTarget, marker: str, context: Mapping[str, Any] | None
    ) -> dialect.RunState:
        """A run session with the workflow's tasks as run requests, named after the WorkflowRun and
        never merged into another session."""
        if target.name is None or target.definition is None:
            raise ValueError("resolve_workflow first: the run is made of the workflow's tasks")
        requests, persona = _run_requests(target.workspace, target.definition)
        if not requests:
            raise errors.InvalidRequestError(
                f'workflow "{target.name}" has no tasks to run (definition.fromActivities[].actions[].tasks)',
                status_code=None,
            )
        memo = {"source": "runwhen-operator", "workflow": target.name}
        if context:
            memo["context"] = dict(context)  # type: ignore[assignment]
        body: dict[str, Any] = {
            "source": "direct",
            "name": run_session_name(marker),
            "notes": f"WorkflowRun of workflow {target.name} (runwhen-operator)",
            "dedupe": {"enabled": False},
            "runRequests": [{**r, "memo": memo} for r in requests],
        }
        if persona:
            body["personaName"] = full_name(target.workspace, persona)
        session = await self._rw.call(
            RunSessionWire, "POST", RUN_SESSIONS, {"workspace_name": target.workspace}, body=body
        )
        return _run_state(session)

    async def find_run(
        self, target: dialect.WorkflowTarget, marker: str, since: datetime
    ) -> dialect.RunState | None:
        wanted = run_session_name(marker)
        lower = (since.astimezone(UTC) - RUN_FIND_SKEW).strftime("%Y-%m-%dT%H:%M:%SZ")
        async for session in self._rw.paginate_offset(
            RUN_SESSIONS,
            {"workspace_name": target.workspace},
            RunSessionWire,
            {"created__gte": lower},
            numbered=True,
        ):
            if session.name == wanted:
                return _run_state(session)
        return None

    async def get_run(self, target: dialect.WorkflowTarget, session_id: int) -> dialect.RunState:
        session = await self._rw.call(
            RunSessionWire,
            "GET",
            RUN_SESSION,
            {"workspace_name": target.workspace, "runsession_id": session_id},
        )
        return _run_state(session)


def _run_requests(workspace: str, definition: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The run requests of a workflow's tasks, one per SLX (its titles merged; a task without titles
    runs them all), and the first persona named."""
    titles_by_slx: dict[str, list[str] | None] = {}
    persona: str | None = None
    for activity in definition.get("fromActivities") or []:
        for action in (activity or {}).get("actions") or []:
            tasks = (action or {}).get("tasks") or {}
            if not tasks.get("slx"):
                continue
            persona = persona or tasks.get("persona")
            name = full_name(workspace, str(tasks["slx"]))
            titles = [str(t) for t in tasks.get("titles") or []]
            known = titles_by_slx.get(name, [])
            titles_by_slx[name] = None if known is None or not titles else [*dict.fromkeys([*known, *titles])]
    return [{"slxName": slx, "taskTitles": titles} for slx, titles in titles_by_slx.items()], persona


def _run_state(session: RunSessionWire) -> dialect.RunState:
    """Phases from what the server reports: queued until a run request is dispatched, started
    until every one has answered (``responseTime``), then failed if any task failed."""
    requests = session.run_requests
    done = bool(requests) and all(r.response_time is not None for r in requests)
    dispatched = any(r.request_time is not None or r.response_time is not None for r in requests)
    failed_titles = [t for r in requests for t in _titles(r.failed_titles)]
    passed = sum(len(_titles(r.passed_titles)) for r in requests)
    if done:
        failed = bool(session.has_failures) or bool(failed_titles)
        phase = "Failed" if failed and not passed else ("CompletedWithErrors" if failed else "Completed")
        message = f"run session {session.id}: {passed} task(s) passed, {len(failed_titles)} failed"
        if failed_titles:
            message += f" ({', '.join(failed_titles[:5])})"
    elif dispatched:
        phase = "Started"
        finished = sum(1 for r in requests if r.response_time is not None)
        message = f"run session {session.id}: {finished} of {len(requests)} run request(s) finished"
    elif session.active is False:
        phase = "Canceled"
        message = f"run session {session.id} was deactivated before it ran"
    else:
        phase = "Queued"
        message = f"run session {session.id}: waiting for a runner"
    started = [r.request_time for r in requests if r.request_time is not None]
    answered = [r.response_time for r in requests if r.response_time is not None]
    return dialect.RunState(
        session_id=session.id,
        phase=phase,
        message=message,
        queued_at=session.created,
        started_at=min(started) if started else None,
        completed_at=max(answered) if done and answered else None,
    )
