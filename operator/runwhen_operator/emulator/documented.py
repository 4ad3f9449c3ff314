"""The documented dialect: the RunWhen API v3 as the older public pages describe it.

Trailing slashes optional, integer ids for workflows and personas with full-replace PUTs, page /
page-size paging, Django REST Framework style 400 field maps. Its OpenAPI document is
``openapi.yaml``, served at ``GET /api/v3/schema/``. Request bodies are validated here and
translated into the store's internal record shape; records are rendered back by the views here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from runwhen_operator.emulator.core import (
    Dialect,
    EmulatorState,
    detail_response,
    json_response,
    path_int,
    read_json,
    state_of,
    url_for,
)
from runwhen_operator.emulator.store import (
    PERSONA_DEFAULTS,
    Invalid,
    NotFound,
    Record,
    iso,
    parse_datetime,
)
from runwhen_operator.emulator.validation import (
    NON_FIELD,
    Field,
    bool_field,
    dns_label,
    duration,
    enum,
    integer,
    list_of,
    nested,
    number,
    object_field,
    parse_body,
    string,
    string_list,
)

__all__ = ["DIALECT", "ROUTES"]

PREFIX = "/api/v3"
MAX_PAGE_SIZE = 1000
SOURCES = ("user", "alert", "slack", "workflow", "api")

# --- request bodies -----------------------------------------------------------------------------

_TASKS = nested(
    {
        "slx": Field(string()),
        "persona": Field(string()),
        "titles": Field(string_list()),
        "sessionTTL": Field(duration()),
    }
)
_ACTION = nested({"tasks": Field(_TASKS)})
_MATCH = nested({"activityVerbs": Field(string_list()), "slxs": Field(string_list())})
_ACTIVITY = nested(
    {
        "name": Field(string(allow_blank=False), required=True),
        "displayName": Field(string()),
        "description": Field(string()),
        "match": Field(_MATCH),
        "actions": Field(list_of(_ACTION)),
    }
)
_DEFINITION = nested({"fromActivities": Field(list_of(_ACTIVITY))})


def _empty_definition() -> dict[str, Any]:
    return {"fromActivities": []}


def _workspace_fields(*, name_required: bool) -> dict[str, Field]:
    return {
        "name": Field(dns_label(), required=name_required),
        "displayName": Field(string(), default=str),
        "configProvided": Field(object_field(), default=dict),
        "secretsProvided": Field(object_field(), default=dict),
        "enabledLocations": Field(string_list(), default=list),
        "slxGroups": Field(object_field(string_list()), default=dict),
    }


WORKSPACE_CREATE = _workspace_fields(name_required=True)
WORKSPACE_UPDATE = _workspace_fields(name_required=False)
WORKSPACE_READ_ONLY = frozenset({"owner", "createdAt", "updatedAt"})

WORKFLOW_FIELDS = {
    "name": Field(dns_label(), required=True),
    "definition": Field(_DEFINITION, default=_empty_definition),
}
WORKFLOW_READ_ONLY = frozenset({"id", "createdAt", "updatedAt"})

PERSONA_FIELDS = {
    "name": Field(dns_label(), required=True),
    "fullName": Field(string(), default=str),
    "description": Field(string(), default=str),
    "avatarUrl": Field(string(), default=str),
    "filterConfidenceThreshold": Field(number(minimum=0, maximum=1), default=lambda: 0.5),
    "filterIssueSelectionStrategy": Field(string(allow_blank=False), default=lambda: "MOST_SEVERE"),
    "filterCodebundleTaskTags": Field(string_list(), default=list),
    "filterStopWords": Field(string_list(), default=list),
    "filterScope": Field(object_field(), default=dict),
    "searchFilters": Field(object_field(), default=dict),
    "runConfidenceThreshold": Field(number(minimum=0, maximum=1), default=lambda: 0.95),
    "runConfig": Field(object_field(), default=dict),
}
PERSONA_READ_ONLY = frozenset({"id", "createdAt", "updatedAt"})

RUN_FIELDS = {"context": Field(object_field(), default=dict)}

_RUN_REQUEST = nested(
    {
        "id": Field(integer(minimum=1)),
        "slxName": Field(string(allow_blank=False)),
        "runbookName": Field(string(allow_blank=False)),
        "taskTitles": Field(string_list()),
    },
    ignore=frozenset({"createdAt"}),
)
RUN_SESSION_CREATE = {
    "source": Field(enum(SOURCES), required=True),
    "isActive": Field(bool_field(), default=lambda: True),
    "context": Field(object_field(), default=dict),
    "runRequests": Field(list_of(_RUN_REQUEST), default=list),
}
RUN_SESSION_PATCH = {
    "source": Field(enum(SOURCES)),
    "isActive": Field(bool_field()),
    "context": Field(object_field()),
    "runRequests": Field(list_of(_RUN_REQUEST)),
}
RUN_SESSION_READ_ONLY = frozenset({"id", "workspace", "status", "workflowId", "createdAt", "updatedAt"})

ISSUE_PATCH = {
    "title": Field(string(allow_blank=False)),
    "severity": Field(integer(minimum=1, maximum=4)),
    "slxName": Field(string()),
    "closed": Field(bool_field()),
}
ISSUE_READ_ONLY = frozenset({"id", "openSince", "openOccurrenceCount"})


def _workspace_data(data: Record) -> Record:
    """Validated wire fields -> the store's internal workspace fields."""
    internal: Record = {}
    for key, value in data.items():
        if key == "displayName":
            internal["alias"] = value
        elif key == "configProvided":
            internal["configProvided"] = [{"name": name, "value": item} for name, item in value.items()]
        elif key == "slxGroups":
            internal["slxGroups"] = [{"name": name, "slxs": slxs} for name, slxs in value.items()]
        else:
            internal[key] = value
    return internal


def _new_run_requests(session: Record | None, items: list[Record]) -> list[Record]:
    """Items without ``id`` are new run requests; items with one must name an existing one."""
    known = {item["id"] for item in session["runRequests"]} if session else set()
    errors: dict[str, list[str]] = {}
    fresh = []
    for index, item in enumerate(items):
        if "id" in item:
            if item["id"] not in known:
                errors[f"runRequests.{index}.id"] = ["No run request with this id in the run session."]
            continue
        if "slxName" not in item:
            errors[f"runRequests.{index}.slxName"] = ["This field is required."]
            continue
        fresh.append(item)
    if errors:
        raise Invalid(errors)
    return fresh


# --- wire views ---------------------------------------------------------------------------------


def workspace_view(rec: Record) -> Record:
    return {
        "name": rec["name"],
        "displayName": rec["alias"],
        "owner": rec["owner"],
        "configProvided": {
            item["name"]: item.get("value")
            for item in rec["configProvided"]
            if isinstance(item.get("name"), str)
        },
        "secretsProvided": rec["secretsProvided"],
        "enabledLocations": rec["enabledLocations"],
        "slxGroups": {
            group["name"]: list(group.get("slxs") or [])
            for group in rec["slxGroups"]
            if isinstance(group.get("name"), str)
        },
        "createdAt": iso(rec["createdAt"]),
        "updatedAt": iso(rec["updatedAt"]),
    }


def workflow_view(rec: Record) -> Record:
    return {
        "id": rec["id"],
        "name": rec["name"],
        "definition": rec["definition"],
        "createdAt": iso(rec["createdAt"]),
        "updatedAt": iso(rec["updatedAt"]),
    }


def persona_view(rec: Record) -> Record:
    view: Record = {"id": rec["id"], "name": rec["name"]}
    for key in PERSONA_DEFAULTS:
        value = rec[key]
        if key in ("fullName", "description", "avatarUrl") and value is None:
            value = ""
        elif key == "filterScope" and not isinstance(value, dict):
            value = {}
        view[key] = value
    view["createdAt"] = iso(rec["createdAt"])
    view["updatedAt"] = iso(rec["updatedAt"])
    return view


def run_request_view(rec: Record) -> Record:
    return {
        "id": rec["id"],
        "slxName": rec["slxName"],
        "runbookName": rec["runbookName"],
        "taskTitles": rec["taskTitles"] or [],
        "createdAt": iso(rec["createdAt"]),
    }


def run_session_view(rec: Record) -> Record:
    return {
        "id": rec["id"],
        "workspace": rec["workspace"],
        "source": rec["source"],
        "isActive": rec["isActive"],
        "status": rec["status"],
        "workflowId": rec["workflowId"],
        "context": rec["context"],
        "runRequests": [run_request_view(item) for item in rec["runRequests"]],
        "createdAt": iso(rec["createdAt"]),
        "updatedAt": iso(rec["updatedAt"]),
    }


def issue_view(rec: Record) -> Record:
    return {
        "id": rec["id"],
        "title": rec["title"],
        "severity": rec["severity"],
        "slxName": rec["slxName"],
        "openSince": iso(rec["openSince"]),
        "openOccurrenceCount": rec["openOccurrenceCount"],
        "closed": rec["closed"],
    }


def run_view(rec: Record) -> Record:
    return {
        "id": rec["id"],
        "workflowId": rec["workflowId"],
        "workflowName": rec["workflowName"],
        "runSessionId": rec["runSessionId"],
        "status": rec["status"],
        "statusMessage": rec["statusMessage"],
        "triggeredBy": rec["triggeredBy"],
        "context": rec["context"],
        "queuedAt": iso(rec["queuedAt"]),
        "startedAt": iso(rec["startedAt"]),
        "completedAt": iso(rec["completedAt"]),
        "failedAt": iso(rec["failedAt"]),
        "canceledAt": iso(rec["canceledAt"]),
        "createdAt": iso(rec["createdAt"]),
        "updatedAt": iso(rec["updatedAt"]),
    }


def state_view(state: EmulatorState) -> Record:
    """Every object for ``GET /_emulator/state`` (wire form plus the owning workspace)."""
    store = state.store
    return {
        "workspaces": [
            {
                **workspace_view(rec),
                "health": rec["health"],
                "runners": [runner_view(r, store.clock()) for r in rec["runners"]],
                "runnerTokens": dict(rec.get("runnerTokens") or {}),
                "uploadTokens": dict(rec.get("uploadTokens") or {}),
            }
            for rec in store.workspaces.values()
        ],
        "workflows": [
            {**workflow_view(rec), "workspace": rec["workspace"], "webhookToken": rec["webhookToken"]}
            for rec in store.workflows.values()
            if rec.get("deletedAt") is None
        ],
        "personas": [
            {**persona_view(rec), "workspace": rec["workspace"]}
            for rec in store.personas.values()
            if rec.get("deletedAt") is None
        ],
        "runSessions": [run_session_view(rec) for rec in store.run_sessions.values()],
        "issues": [
            {
                **issue_view(rec),
                "workspace": rec["workspace"],
                "runSessionId": rec["runSessionId"],
                "closedAt": iso(rec["closedAt"]),
            }
            for rec in store.issues.values()
        ],
        "runs": [{**run_view(rec), "workspace": rec["workspace"]} for rec in store.runs.values()],
    }


# --- query parameters and paging ----------------------------------------------------------------


def _query_int(request: web.Request, name: str, *, minimum: int | None = None) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise Invalid({name: ["A valid integer is required."]}) from None
    if minimum is not None and value < minimum:
        raise Invalid({name: [f"Ensure this value is greater than or equal to {minimum}."]})
    return value


def _query_bool(request: web.Request, name: str) -> bool | None:
    text = request.query.get(name)
    if text is None:
        return None
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise Invalid({name: ["Select a valid choice: true or false."]})


def _query_flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").strip().lower() in ("true", "1", "yes", "on")


def paginate(request: web.Request, items: list[Record], view: Callable[[Record], Record]) -> web.Response:
    size = _query_int(request, "page-size", minimum=1)
    size = min(size if size is not None else state_of(request).config.page_size, MAX_PAGE_SIZE)
    page = _query_int(request, "page", minimum=1) or 1
    count = len(items)
    pages = max(1, math.ceil(count / size))
    if page > pages:
        raise NotFound(detail="Invalid page.")
    results = [view(rec) for rec in items[(page - 1) * size : page * size]]
    return json_response(
        {
            "count": count,
            "next": url_for(request, page=str(page + 1)) if page < pages else None,
            "previous": (url_for(request, page=str(page - 1) if page > 2 else None) if page > 1 else None),
            "results": results,
        }
    )


# --- handlers -----------------------------------------------------------------------------------


async def _credentials(request: web.Request) -> dict[str, Any]:
    content_type = request.content_type
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except ValueError as exc:
            raise Invalid({NON_FIELD: [f"Form parse error - {exc}"]}) from exc
        return {key: value for key, value in form.items() if isinstance(value, str)}
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Invalid({NON_FIELD: [f"Invalid data. Expected a dictionary, but got {type(body).__name__}."]})
    return body


def _required_strings(body: dict[str, Any], *names: str) -> list[str]:
    errors: dict[str, list[str]] = {}
    values = []
    for name in names:
        value = body.get(name)
        if value is None:
            errors[name] = ["This field is required."]
        elif not isinstance(value, str):
            errors[name] = ["Not a valid string."]
        elif not value:
            errors[name] = ["This field may not be blank."]
        values.append(value if isinstance(value, str) else "")
    if errors:
        raise Invalid(errors)
    return values


async def obtain_token(request: web.Request) -> web.Response:
    body = await _credentials(request)
    username, password = _required_strings(body, "username", "password")
    return json_response(state_of(request).tokens.obtain(username, password))


async def refresh_token(request: web.Request) -> web.Response:
    body = await _credentials(request)
    (token,) = _required_strings(body, "refresh")
    return json_response(state_of(request).tokens.refresh(token))


_SCHEMA_CACHE: dict[str, bytes] = {}


def _schema_bytes(fmt: str) -> bytes:
    cached = _SCHEMA_CACHE.get(fmt)
    if cached is None:
        text = (
            resources.files("runwhen_operator.emulator").joinpath("openapi.yaml").read_text(encoding="utf-8")
        )
        if fmt == "json":
            import yaml

            cached = json.dumps(yaml.safe_load(text)).encode()
        else:
            cached = text.encode()
        _SCHEMA_CACHE[fmt] = cached
    return cached


async def get_schema(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "").lower()
    accept = request.headers.get("Accept", "")
    if fmt not in ("json", "yaml"):
        fmt = "json" if "application/json" in accept and "yaml" not in accept else "yaml"
    if fmt == "json":
        return web.Response(body=_schema_bytes("json"), content_type="application/vnd.oai.openapi+json")
    return web.Response(
        body=_schema_bytes("yaml"), content_type="application/vnd.oai.openapi", charset="utf-8"
    )


def _ws(request: web.Request) -> str:
    return request.match_info["workspace_name"]


async def list_workspaces(request: web.Request) -> web.Response:
    return paginate(request, state_of(request).store.list_workspaces(), workspace_view)


async def create_workspace(request: web.Request) -> web.Response:
    state = state_of(request)
    data = parse_body(await read_json(request), WORKSPACE_CREATE, read_only=WORKSPACE_READ_ONLY)
    rec, _ = state.store.create_workspace(
        _workspace_data(data), owner=request["emulator.user"], auto_suffix=state.config.auto_suffix_duplicates
    )
    return json_response(workspace_view(rec), 201)


async def get_workspace(request: web.Request) -> web.Response:
    return json_response(workspace_view(state_of(request).store.get_workspace(_ws(request))))


async def _update_workspace(request: web.Request, *, partial: bool) -> web.Response:
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    data = parse_body(
        await read_json(request), WORKSPACE_UPDATE, read_only=WORKSPACE_READ_ONLY, partial=partial
    )
    if data.pop("name", name) != name:
        raise Invalid({"name": ["The workspace name cannot be changed."]})
    return json_response(workspace_view(store.update_workspace(name, _workspace_data(data))))


async def put_workspace(request: web.Request) -> web.Response:
    return await _update_workspace(request, partial=False)


async def patch_workspace(request: web.Request) -> web.Response:
    return await _update_workspace(request, partial=True)


async def delete_workspace(request: web.Request) -> web.Response:
    state_of(request).store.delete_workspace(_ws(request))
    return web.Response(status=204)


async def workspace_status(request: web.Request) -> web.Response:
    health = state_of(request).store.get_workspace(_ws(request))["health"]
    return json_response({"workspace": health["workspace"], "sync": health["sync"]})


async def workspace_health(request: web.Request) -> web.Response:
    store = state_of(request).store
    rec = store.get_workspace(_ws(request))
    health = rec["health"]
    body: Record = {"workspace": rec["name"], "status": health["status"], "checkedAt": iso(store.clock())}
    if _query_flag(request, "include_details"):
        body["details"] = health["details"]
    if _query_flag(request, "include_metrics"):
        body["metrics"] = health["metrics"]
    return json_response(body)


def _issue_filters(request: web.Request) -> dict[str, Any]:
    return {
        "closed": _query_bool(request, "closed"),
        "severity_lte": _query_int(request, "severity__lte"),
    }


async def workspace_issues(request: web.Request) -> web.Response:
    store = state_of(request).store
    return paginate(request, store.list_issues(_ws(request), **_issue_filters(request)), issue_view)


async def list_workflows(request: web.Request) -> web.Response:
    return paginate(request, state_of(request).store.list_workflows(_ws(request)), workflow_view)


async def create_workflow(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    data = parse_body(await read_json(request), WORKFLOW_FIELDS, read_only=WORKFLOW_READ_ONLY)
    return json_response(workflow_view(store.create_workflow(name, data["name"], data["definition"])), 201)


async def get_workflow(request: web.Request) -> web.Response:
    rec = state_of(request).store.get_workflow(_ws(request), path_int(request, "workflow_id"))
    return json_response(workflow_view(rec))


async def put_workflow(request: web.Request) -> web.Response:
    store = state_of(request).store
    name, workflow_id = _ws(request), path_int(request, "workflow_id")
    store.get_workflow(name, workflow_id)
    data = parse_body(await read_json(request), WORKFLOW_FIELDS, read_only=WORKFLOW_READ_ONLY)
    rec = store.replace_workflow(name, workflow_id, data["name"], data["definition"])
    return json_response(workflow_view(rec))


async def delete_workflow(request: web.Request) -> web.Response:
    state_of(request).store.delete_workflow(_ws(request), path_int(request, "workflow_id"))
    return web.Response(status=204)


async def run_workflow(request: web.Request) -> web.Response:
    store = state_of(request).store
    name, workflow_id = _ws(request), path_int(request, "workflow_id")
    store.get_workflow(name, workflow_id)
    data = parse_body(await read_json(request), RUN_FIELDS)
    return json_response(run_view(store.trigger_run(name, workflow_id, data["context"], triggered_by="user")))


def _webhook_url(request: web.Request, token: str) -> str:
    return f"{request.url.origin()}{PREFIX}/webhooks/workflows/{token}"


async def workflow_token(request: web.Request) -> web.Response:
    token = state_of(request).store.webhook_token(_ws(request), path_int(request, "workflow_id"))
    return json_response({"token": token, "webhookUrl": _webhook_url(request, token)})


async def runner_token(request: web.Request) -> web.Response:
    """The pages: "the runner authentication token for the workspace", no location parameter. The
    answer's shape is this emulator's choice (docs/runwhen-api.md): ``{workspace, token}``."""
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    return json_response({"workspace": name, "token": store.issue_token(name, "runnerTokens", None)})


async def builder_config(request: web.Request) -> web.Response:
    """The pages: "a workspace builder configuration payload" (optional ``hours``). Chosen here: the
    keys of the chart's ``uploadInfo.yaml`` but the location, which the pages do not pass."""
    state = state_of(request)
    name = _ws(request)
    state.store.get_workspace(name)
    hours = _query_int(request, "hours", minimum=1)
    body: Record = {
        "workspaceName": name,
        "workspaceOwnerEmail": state.config.email,
        "papiURL": str(request.url.origin()),
        "token": state.store.issue_token(name, "uploadTokens", None),
    }
    if hours is not None:
        body["tokenValidHours"] = hours
    return json_response(body)


def runner_view(rec: Record, now: float) -> Record:
    beat = rec.get("lastHeartbeat")
    return {
        "name": rec["name"],
        "value": rec["value"],
        "health": rec["health"],
        "lastHeartbeat": iso(beat),
        "secondsSinceHeartbeat": round(max(0.0, now - beat), 3) if beat is not None else None,
    }


async def workspace_runners(request: web.Request) -> web.Response:
    """Not on the pages: the platform's path and ``AuthorizedRunner`` shape (docs/runwhen-api.md)."""
    store = state_of(request).store
    rec = store.get_workspace(_ws(request))
    return json_response([runner_view(r, store.clock()) for r in rec["runners"]])


async def delete_runner(request: web.Request) -> web.Response:
    name = _ws(request)
    runner = state_of(request).store.delete_runner(name, request.match_info["runner_id"])
    return json_response({"status": "deleted", "runner": runner["value"], "workspace": name})


async def workflow_webhook(request: web.Request) -> web.Response:
    store = state_of(request).store
    workflow = store.workflow_by_webhook_token(request.match_info["token"])
    data = parse_body(await read_json(request), RUN_FIELDS)
    run = store.trigger_run(workflow["workspace"], workflow["id"], data["context"], triggered_by="system")
    return json_response(run_view(run))


def _persona_fields(data: Record) -> Record:
    return {key: data[key] for key in PERSONA_DEFAULTS}


async def list_personas(request: web.Request) -> web.Response:
    return paginate(request, state_of(request).store.list_personas(_ws(request)), persona_view)


async def create_persona(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    data = parse_body(await read_json(request), PERSONA_FIELDS, read_only=PERSONA_READ_ONLY)
    return json_response(persona_view(store.create_persona(name, data["name"], _persona_fields(data))), 201)


async def get_persona(request: web.Request) -> web.Response:
    rec = state_of(request).store.get_persona(_ws(request), path_int(request, "persona_id"))
    return json_response(persona_view(rec))


async def put_persona(request: web.Request) -> web.Response:
    store = state_of(request).store
    name, persona_id = _ws(request), path_int(request, "persona_id")
    store.get_persona(name, persona_id)
    data = parse_body(await read_json(request), PERSONA_FIELDS, read_only=PERSONA_READ_ONLY)
    rec = store.replace_persona(name, persona_id, data["name"], _persona_fields(data))
    return json_response(persona_view(rec))


async def delete_persona(request: web.Request) -> web.Response:
    state_of(request).store.delete_persona(_ws(request), path_int(request, "persona_id"))
    return web.Response(status=204)


async def list_run_sessions(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    modified_lte = None
    text = request.query.get("modified__lte")
    if text is not None:
        try:
            modified_lte = parse_datetime(text)
        except (ValueError, OverflowError):
            raise Invalid({"modified__lte": ["Enter a valid date/time."]}) from None
    source = request.query.get("source")
    if source is not None and source not in SOURCES:
        raise Invalid({"source": [f"Select a valid choice: one of {', '.join(SOURCES)}."]})
    runbook = request.query.get("runrequest__runbook__name")
    sessions = store.list_run_sessions(
        name,
        modified_lte=modified_lte,
        runbook_names=[runbook] if runbook is not None else None,
        source=source,
        workflow_id=_query_int(request, "workflowId"),
    )
    return paginate(request, sessions, run_session_view)


async def create_run_session(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    data = parse_body(await read_json(request), RUN_SESSION_CREATE, read_only=RUN_SESSION_READ_ONLY)
    data["runRequests"] = _new_run_requests(None, data["runRequests"])
    return json_response(run_session_view(store.create_run_session(name, data)), 201)


async def get_run_session(request: web.Request) -> web.Response:
    rec = state_of(request).store.get_run_session(_ws(request), path_int(request, "runsession_id"))
    return json_response(run_session_view(rec))


async def patch_run_session(request: web.Request) -> web.Response:
    store = state_of(request).store
    rec = store.get_run_session(_ws(request), path_int(request, "runsession_id"))
    data = parse_body(
        await read_json(request), RUN_SESSION_PATCH, read_only=RUN_SESSION_READ_ONLY, partial=True
    )
    fresh = _new_run_requests(rec, data.pop("runRequests", []))
    return json_response(run_session_view(store.update_run_session(rec, data, fresh)))


async def run_session_issues(request: web.Request) -> web.Response:
    store = state_of(request).store
    name, session_id = _ws(request), path_int(request, "runsession_id")
    store.get_run_session(name, session_id)
    issues = store.list_issues(name, run_session_id=session_id, **_issue_filters(request))
    return paginate(request, issues, issue_view)


async def get_run_session_issue(request: web.Request) -> web.Response:
    store = state_of(request).store
    name, session_id = _ws(request), path_int(request, "runsession_id")
    store.get_run_session(name, session_id)
    return json_response(
        issue_view(store.get_issue(name, path_int(request, "issue_id"), run_session_id=session_id))
    )


async def patch_run_session_issue(request: web.Request) -> web.Response:
    store = state_of(request).store
    name, session_id = _ws(request), path_int(request, "runsession_id")
    store.get_run_session(name, session_id)
    rec = store.get_issue(name, path_int(request, "issue_id"), run_session_id=session_id)
    data = parse_body(await read_json(request), ISSUE_PATCH, read_only=ISSUE_READ_ONLY, partial=True)
    return json_response(issue_view(store.patch_issue(rec, data)))


# --- errors -------------------------------------------------------------------------------------

_HTTP_DETAILS = {
    404: "Not found.",
    413: "Request body is too large.",
}


def not_found(exc: NotFound) -> str:
    return exc.detail


def http_error(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    if exc.status == 405:
        detail = f'Method "{request.method}" not allowed.'
    else:
        detail = _HTTP_DETAILS.get(exc.status, exc.reason)
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return detail_response(exc.status, detail, headers)


# --- routing ------------------------------------------------------------------------------------

WS = f"{PREFIX}/workspaces/{{workspace_name}}"

ROUTES: list[tuple[str, dict[str, Any]]] = [
    (f"{PREFIX}/token/", {"POST": obtain_token}),
    (f"{PREFIX}/token/refresh/", {"POST": refresh_token}),
    (f"{PREFIX}/schema/", {"GET": get_schema}),
    (f"{PREFIX}/webhooks/workflows/{{token}}", {"POST": workflow_webhook}),
    (f"{PREFIX}/workspaces/", {"GET": list_workspaces, "POST": create_workspace}),
    (
        WS,
        {"GET": get_workspace, "PUT": put_workspace, "PATCH": patch_workspace, "DELETE": delete_workspace},
    ),
    (f"{WS}/status", {"GET": workspace_status}),
    (f"{WS}/health", {"GET": workspace_health}),
    (f"{WS}/issues", {"GET": workspace_issues}),
    (f"{WS}/runner-token", {"GET": runner_token}),
    (f"{WS}/generate-workspace-builder-config", {"GET": builder_config}),
    (f"{WS}/runners", {"GET": workspace_runners}),
    (f"{WS}/runners/{{runner_id}}", {"DELETE": delete_runner}),
    (f"{WS}/workflows/", {"GET": list_workflows, "POST": create_workflow}),
    (
        f"{WS}/workflows/{{workflow_id}}",
        {"GET": get_workflow, "PUT": put_workflow, "DELETE": delete_workflow},
    ),
    (f"{WS}/workflows/{{workflow_id}}/run", {"POST": run_workflow}),
    (f"{WS}/workflows/{{workflow_id}}/token", {"GET": workflow_token}),
    (f"{WS}/personas/", {"GET": list_personas, "POST": create_persona}),
    (f"{WS}/personas/{{persona_id}}", {"GET": get_persona, "PUT": put_persona, "DELETE": delete_persona}),
    (f"{WS}/runsessions", {"GET": list_run_sessions, "POST": create_run_session}),
    (f"{WS}/runsessions/{{runsession_id}}", {"GET": get_run_session, "PATCH": patch_run_session}),
    (f"{WS}/runsessions/{{runsession_id}}/issues", {"GET": run_session_issues}),
    (
        f"{WS}/runsessions/{{runsession_id}}/issues/{{issue_id}}",
        {"GET": get_run_session_issue, "PATCH": patch_run_session_issue},
    ),
]

DIALECT = Dialect(
    name="documented",
    routes=ROUTES,
    public_templates=frozenset(
        {
            f"{PREFIX}/token",
            f"{PREFIX}/token/refresh",
            f"{PREFIX}/schema",
            f"{PREFIX}/webhooks/workflows/{{token}}",
        }
    ),
    fault_exempt=frozenset({f"{PREFIX}/schema"}),
    both_slash_forms=True,
    not_found=not_found,
    http_error=http_error,
    state_view=state_view,
    issue_view=lambda state, rec: issue_view(rec),
)
