"""The platform dialect: the RunWhen server's API as its own OpenAPI document (papi 2.0.0) describes it.

No trailing slashes (but the token endpoints'), and the other slash form redirected with 307; reads
on v3 and v4; workflows and personas addressed by short name and written by ``sync-typed`` upserts;
snake_case workspace PATCH; limit/offset paging (run sessions: page/page-size); FastAPI errors (422
with ``loc``, ``{"detail": "..."}`` otherwise). The served document is ``papi.json`` when the package
has it (``GET /openapi.json``). Request bodies are validated here and translated into the store's
internal record shape; records are rendered back by the views here.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from typing import Any

from aiohttp import web

from runwhen_operator.emulator.core import (
    Dialect,
    EmulatorState,
    detail_response,
    json_response,
    parse_json,
    path_is_routed,
    state_of,
    url_for,
)
from runwhen_operator.emulator.platform_validation import (
    ErrorList,
    Loc,
    PField,
    Unprocessable,
    add,
    boolean,
    datetime_text,
    integer,
    list_of,
    literal,
    model,
    nullable,
    number,
    obj,
    string,
    validate,
)
from runwhen_operator.emulator.store import (
    PERSONA_DEFAULTS,
    NotFound,
    Record,
    Store,
    iso,
    short_name,
)

__all__ = ["DIALECT", "ROUTES"]

V1, V3, V4 = "/api/v1", "/api/v3", "/api/v4"
SOURCES = ("direct", "slo_alert", "sli_alert", "webhook", "search", "alert_group")
RUN_SESSION_QUERY = frozenset(
    {
        "page",
        "page-size",
        "active",
        "created__gte",
        "created__lte",
        "modified__gte",
        "modified__lte",
        "runrequest__runbook__name",
        "runrequest__runbook__name__in",
    }
)
DEDUPE_WINDOW = "10m"
_WINDOW = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)?\s*$")
_KIND_NAMES = {
    "run session": "Run session",
    "workflow": "Workflow",
    "persona": "Persona",
    "issue": "Issue",
    "runner": "Runner",
}

# --- request models -----------------------------------------------------------------------------

_OBJECTS = list_of(obj())
WORKSPACE_CREATE = model(
    {
        "name": PField(
            string(min_length=2, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"), required=True
        ),
        "spec": PField(nullable(model({"configProvided": PField(_OBJECTS), "slxGroups": PField(_OBJECTS)}))),
    }
)
WORKSPACE_UPDATE = model(
    {
        "alias": PField(nullable(string())),
        "description": PField(nullable(string())),
        "scrubber_config": PField(
            nullable(literal(("SCRUB_ALL_RESOURCE_LABELS", "SCRUB_ALL_EXCEPT_RESOURCE_NAME", "SCRUB_NONE")))
        ),
        "enabled_locations": PField(nullable(list_of(string()))),
        "config_provided": PField(nullable(_OBJECTS)),
        "permissions": PField(nullable(_OBJECTS)),
        "slx_groups": PField(nullable(_OBJECTS)),
        "slx_relationships": PField(nullable(_OBJECTS)),
    }
)
_WORKSPACE_UPDATE_KEYS = {
    "alias": "alias",
    "description": "description",
    "scrubber_config": "scrubberConfig",
    "enabled_locations": "enabledLocations",
    "config_provided": "configProvided",
    "slx_groups": "slxGroups",
}

WORKFLOW_SYNC = model(
    {
        "payload": PField(
            model(
                {"name": PField(string(), required=True), "definition": PField(obj(), default=dict)},
                extra="forbid",
                fill_defaults=True,
            ),
            required=True,
        ),
        "lastSyncedAt": PField(nullable(datetime_text())),
    },
    extra="forbid",
)

_STRINGS = list_of(string())
PERSONA_PAYLOAD_FIELDS = {
    "name": PField(string(), required=True),
    "fullName": PField(nullable(string())),
    "description": PField(nullable(string())),
    "avatarUrl": PField(nullable(string())),
    "workspaceId": PField(nullable(integer())),
    "filterConfidenceThreshold": PField(number()),
    "filterIssueSelectionStrategy": PField(string()),
    "filterCodebundleTaskTags": PField(_STRINGS),
    "filterStopWords": PField(_STRINGS),
    "filterScope": PField(nullable(string())),
    "searchFilters": PField(obj()),
    "runConfidenceThreshold": PField(number()),
    "runConfig": PField(obj()),
}
PERSONA_SYNC = model(
    {
        "payload": PField(model(PERSONA_PAYLOAD_FIELDS), required=True),
        "lastSyncedAt": PField(nullable(datetime_text())),
    },
    extra="forbid",
)

RUN_REQUEST = model(
    {
        "slxName": PField(string(), required=True),
        "taskTitles": PField(nullable(_STRINGS)),
        "memo": PField(obj()),
        "fromSearchQuery": PField(nullable(string())),
        "fromIssue": PField(nullable(integer())),
        "fromRunRequest": PField(nullable(integer())),
        "fromSliAlert": PField(nullable(integer())),
        "fromSloAlert": PField(nullable(integer())),
        "force": PField(boolean()),
        "runtimeVarOverrides": PField(nullable(obj())),
    }
)
RUN_SESSION_CREATE = model(
    {
        "source": PField(literal(SOURCES), default=lambda: "direct"),
        "generateName": PField(nullable(string())),
        "name": PField(nullable(string())),
        "notes": PField(nullable(string())),
        "personaName": PField(nullable(string())),
        "persona_id": PField(nullable(integer())),
        "alertId": PField(nullable(integer())),
        "webhookId": PField(nullable(integer())),
        "searchQuery": PField(nullable(string())),
        "aliasKey": PField(nullable(string())),
        "aliasValue": PField(nullable(string())),
        "skipNextStepsAnalysis": PField(boolean()),
        "dedupe": PField(
            nullable(
                model(
                    {
                        "enabled": PField(boolean(), default=lambda: True),
                        "strategy": PField(literal(("slx",)), default=lambda: "slx"),
                        "window": PField(string(), default=lambda: DEDUPE_WINDOW),
                    },
                    fill_defaults=True,
                )
            )
        ),
        "runRequests": PField(list_of(RUN_REQUEST, min_items=1), required=True),
    },
    fill_defaults=True,
)
DEACTIVATE = nullable(model({"reason": PField(nullable(string()))}))
TOKEN_REFRESH = model({"refresh": PField(string(), required=True)})
TOKEN_VERIFY = model({"token": PField(string(), required=True)})

# --- request helpers ----------------------------------------------------------------------------


async def body_of(request: web.Request, *, optional: bool = False) -> Any:
    """The JSON body; a missing one is a 422 (``None`` when ``optional``), bad JSON a 422 too."""
    raw = await request.read()
    if not raw.strip():
        if optional:
            return None
        raise Unprocessable([{"loc": ["body"], "msg": "Field required", "type": "missing", "input": None}])
    try:
        return parse_json(raw)
    except (ValueError, RecursionError) as exc:
        position = getattr(exc, "pos", 0)
        raise Unprocessable(
            [
                {
                    "loc": ["body", position],
                    "msg": "JSON decode error",
                    "type": "json_invalid",
                    "input": {},
                    "ctx": {"error": str(exc).split(":", 1)[0]},
                }
            ]
        ) from exc


def _ws(request: web.Request) -> str:
    info = request.match_info
    return info.get("workspace_name") or info["workspace_short_name"]


def _path_id(request: web.Request, name: str) -> int:
    value: int = validate(integer(from_text=True), request.match_info[name], ("path", name))
    return value


class Query:
    """Query parameters, validated with every error collected (``finish`` raises them)."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.errors: ErrorList = []

    def get(self, name: str, checker: Callable[[Any, Loc, ErrorList], Any], default: Any = None) -> Any:
        text = self.request.query.get(name)
        if text is None:
            return default
        value = checker(text, ("query", name), self.errors)
        return default if value is None else value

    def finish(self) -> None:
        if self.errors:
            raise Unprocessable(self.errors)


def _limit_offset(query: Query, *, max_limit: int = 1000) -> tuple[int, int]:
    limit = query.get("limit", integer(ge=1, le=max_limit, from_text=True), 100)
    offset = query.get("offset", integer(ge=0, from_text=True), 0)
    return limit, offset


def _page(
    request: web.Request,
    items: list[Record],
    view: Callable[[Record], Record],
    limit: int,
    offset: int,
    *,
    echo: bool = False,
) -> web.Response:
    count = len(items)
    body: Record = {
        "results": [view(rec) for rec in items[offset : offset + limit]],
        "count": count,
        "next": url_for(request, limit=str(limit), offset=str(offset + limit))
        if offset + limit < count
        else None,
        "previous": url_for(request, limit=str(limit), offset=str(max(0, offset - limit)))
        if offset > 0
        else None,
    }
    if echo:
        body["limit"], body["offset"] = limit, offset
    return json_response(body)


def _full_name(workspace: str, short: str) -> str:
    return f"{workspace}--{short}"


def _short_name(workspace: str, name: str, loc: Loc) -> str:
    """``<ws>--<short>`` or a bare short name -> the short name; a prefix naming another workspace
    or an empty short name is a 422."""
    prefix = f"{workspace}--"
    short = name[len(prefix) :] if name.startswith(prefix) else name
    if short is name and "--" in name:
        raise Unprocessable(
            [
                {
                    "loc": list(loc),
                    "msg": f"Value error, the name must be '<short name>' or '{prefix}<short name>'",
                    "type": "value_error",
                    "input": name,
                }
            ]
        )
    if not short or "/" in short or short != short.strip():
        raise Unprocessable(
            [
                {
                    "loc": list(loc),
                    "msg": "Value error, not a valid short name",
                    "type": "value_error",
                    "input": name,
                }
            ]
        )
    return short


def _window_seconds(text: str) -> float | None:
    match = _WINDOW.match(text)
    if match is None:
        return None
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2) or "s"]


# --- wire views ---------------------------------------------------------------------------------


class Views:
    """The platform's wire objects, rendered from records with what they refer to in the store."""

    def __init__(self, state: EmulatorState, origin: str = "") -> None:
        self.state = state
        self.store: Store = state.store
        self.origin = origin

    def _workspace_id(self, name: str) -> int:
        rec = self.store.workspaces.get(name)
        return int(rec["id"]) if rec is not None else 0

    def owner(self) -> Record:
        config = self.state.config
        return {"id": 1, "email": config.email, "fullName": config.username}

    def workspace(self, rec: Record) -> Record:
        name = rec["name"]
        personas = [
            {"name": p["name"], "fullName": p["fullName"] or p["name"], "avatarUrl": p["avatarUrl"] or ""}
            for p in self.store.list_personas(name)
        ]
        return {
            "id": rec["id"],
            "name": name,
            "alias": rec["alias"],
            "description": rec["description"],
            "repo": None,
            "org": None,
            "repoHash": "",
            "openIssuesCount": len(self.store.list_issues(name, closed=False)),
            "numberOfTools": 0,
            "personas": personas,
            "users": [],
            "runSessionsCounts": [],
            "tasksCount1h": 0,
            "ownerId": 1,
            "organizationId": None,
            "repositoryId": None,
            "scrubberConfig": rec.get("scrubberConfig"),
            "enabledLocations": rec["enabledLocations"],
            "configProvided": rec["configProvided"],
            "createdAt": iso(rec["createdAt"]),
            "updatedAt": iso(rec["updatedAt"]),
            "anonymousMode": False,
            "ownerEmail": self.state.config.email,
            "owner": self.owner(),
            "userRole": "admin",
            "pending_invitations": [],
            "spec": {
                "slxGroups": rec["slxGroups"],
                "slxSubGroups": [],
                "slxRelationships": [],
                "permissions": [],
                "configProvided": rec["configProvided"],
                "secretsProvided": [],
                "commitToMain": True,
                "resourceScrubberConfig": rec.get("scrubberConfig") or "SCRUB_NONE",
            },
            "slxGroups": rec["slxGroups"],
            "slxSubGroups": [],
            "layout": None,
            "slxs": [],
            "sli_firing_alerts": [],
            "slo_firing_alerts": [],
        }

    def workflow_v3(self, rec: Record) -> Record:
        return {
            "id": rec["id"],
            "name": _full_name(rec["workspace"], rec["name"]),
            "shortName": rec["name"],
            "workspace": self._workspace_id(rec["workspace"]),
            "definition": rec["definition"],
            "created": iso(rec["createdAt"]),
            "modified": iso(rec["updatedAt"]),
            "spec": {},
            "status": {},
        }

    def workflow_v4(self, rec: Record) -> Record:
        return {
            "id": rec["id"],
            "name": _full_name(rec["workspace"], rec["name"]),
            "shortName": rec["name"],
            "workspaceId": self._workspace_id(rec["workspace"]),
            "definition": rec["definition"],
            "createdAt": iso(rec["createdAt"]),
            "modifiedAt": iso(rec["updatedAt"]),
        }

    @staticmethod
    def _persona_fields(rec: Record) -> Record:
        fields = {key: rec.get(key, default()) for key, default in PERSONA_DEFAULTS.items()}
        if not isinstance(fields["filterScope"], str):
            fields["filterScope"] = None
        return fields

    def persona_v3(self, rec: Record) -> Record:
        return {
            "id": rec["id"],
            "name": _full_name(rec["workspace"], rec["name"]),
            "shortName": rec["name"],
            "workspace": self._workspace_id(rec["workspace"]),
            **self._persona_fields(rec),
            "created": iso(rec["createdAt"]),
            "modified": iso(rec["updatedAt"]),
            "spec": {},
            "status": {},
        }

    def persona_v4(self, rec: Record) -> Record:
        return {
            "id": rec["id"],
            "name": _full_name(rec["workspace"], rec["name"]),
            "shortName": rec["name"],
            "workspaceId": self._workspace_id(rec["workspace"]),
            **self._persona_fields(rec),
            "createdAt": iso(rec["createdAt"]),
            "modifiedAt": iso(rec["updatedAt"]),
        }

    def issue(self, rec: Record) -> Record:
        closed = rec["closed"]
        count = rec["openOccurrenceCount"]
        return {
            "taskTitle": rec.get("taskTitle") or rec["title"] or "",
            "title": rec["title"],
            "categorizationKey": f"emulator-issue-{rec['id']}",
            "severity": rec["severity"],
            "summary": None,
            "id": rec["id"],
            "workspaceId": self._workspace_id(rec["workspace"]),
            "slxName": rec["slxName"],
            "openSince": iso(rec["openSince"]),
            "latestOccurrenceAt": iso(rec["openSince"]),
            "openOccurrenceCount": 0 if closed else count,
            "closedOccurrenceCount": count if closed else 0,
            "totalOccurrenceCount": count,
            "closedAt": iso(rec["closedAt"]),
            "latestOccurrenceRunSessionId": rec["runSessionId"],
            "created": iso(rec["openSince"]),
            "modified": iso(rec.get("modifiedAt", rec["openSince"])),
        }

    def _request_issue(self, rec: Record) -> Record:
        return {
            "occurrenceId": rec["id"],
            "issueId": rec["id"],
            "taskTitle": rec.get("taskTitle") or rec["title"] or "",
            "title": rec["title"],
            "severity": rec["severity"],
            "closed": rec["closed"],
            "observedAt": iso(rec["openSince"]),
            "created": iso(rec["openSince"]),
            "modified": iso(rec.get("modifiedAt", rec["openSince"])),
        }

    def run_request(self, session: Record, rec: Record, issues: list[Record]) -> Record:
        slx = rec["slxName"]
        titles = rec.get("taskTitles")
        related = [issue for issue in issues if issue["slxName"] in (slx, short_name(slx))]
        moved = rec.get("responseTime") or rec.get("requestTime") or rec["createdAt"]
        return {
            "id": rec["id"],
            "slxShortName": short_name(slx),
            "slxName": slx,
            "status": rec.get("status"),
            "issues": [self._request_issue(issue) for issue in related],
            "created": iso(rec["createdAt"]),
            "modified": iso(moved),
            "requester": self.state.config.email,
            "personaShortName": short_name(session.get("personaName") or ""),
            "taskTitles": "||".join(titles or []),
            "resolvedTaskTitles": "||".join(titles or []),
            "memo": [rec["memo"]] if rec.get("memo") else [],
            "requestTime": iso(rec.get("requestTime")),
            "responseTime": iso(rec.get("responseTime")),
            "passedTitles": "||".join(rec.get("passedTitles") or []),
            "failedTitles": "||".join(rec.get("failedTitles") or []),
            "skippedTitles": "||".join(rec.get("skippedTitles") or []),
            "runsession": session["id"],
        }

    def run_session(self, rec: Record) -> Record:
        workspace = rec["workspace"]
        issues = [issue for issue in self.store.issues.values() if issue["runSessionId"] == rec["id"]]
        requests = [self.run_request(rec, item, issues) for item in rec["runRequests"]]
        persona_name = rec.get("personaName")
        persona_id = None
        if persona_name:
            persona = next(
                (
                    p
                    for p in self.store.personas.values()
                    if p["workspace"] == workspace
                    and p.get("deletedAt") is None
                    and p["name"] == short_name(persona_name)
                ),
                None,
            )
            persona_id = persona["id"] if persona is not None else None
        return {
            "name": rec.get("name"),
            "notes": rec.get("notes") or "",
            "source": rec["source"],
            "id": rec["id"],
            "workspaceId": self._workspace_id(workspace),
            "personaId": persona_id,
            "persona": None,
            "personaRunStatus": {},
            "active": rec["isActive"],
            "escalated": bool(rec.get("escalated")),
            "activeUntil": iso(rec.get("activeUntil")),
            "created": iso(rec["createdAt"]),
            "modified": iso(rec["updatedAt"]),
            "personaShortName": short_name(persona_name or ""),
            "workspaceName": workspace,
            "requestCount": len(requests),
            "hasFailures": any(item["failedTitles"] or item["status"] == "failed" for item in requests),
            "workspace": self._workspace_id(workspace),
            "runRequests": requests,
            "eol": None,
        }

    def runner(self, rec: Record) -> Record:
        beat = rec.get("lastHeartbeat")
        return {
            "name": rec["name"],
            "value": rec["value"],
            "health": rec["health"],
            "lastHeartbeat": iso(beat),
            "secondsSinceHeartbeat": round(max(0.0, self.store.clock() - beat), 3)
            if beat is not None
            else None,
        }


def _views(request: web.Request) -> Views:
    return Views(state_of(request), str(request.url.origin()))


# --- handlers: auth and the document ------------------------------------------------------------


async def obtain_token(request: web.Request) -> web.Response:
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except ValueError:
            return detail_response(400, "The request body is not a valid form")
        body: Any = {key: value for key, value in form.items() if isinstance(value, str)}
    else:
        try:
            raw = await request.read()
            body = parse_json(raw) if raw.strip() else {}
        except (ValueError, RecursionError):
            return detail_response(400, "The request body is not valid JSON")
    if not isinstance(body, dict):
        return detail_response(400, "The request body must be a JSON object")
    tokens = state_of(request).tokens
    password = body.get("password")
    email, username = body.get("email"), body.get("username")
    login = email if email is not None else username
    if not isinstance(password, str) or not isinstance(login, str) or not login or not password:
        return detail_response(401, "No active account found with the given credentials")
    if email is not None:
        return json_response(tokens.obtain("", password, email=email))
    return json_response(tokens.obtain(login, password))


async def refresh_token(request: web.Request) -> web.Response:
    data = validate(TOKEN_REFRESH, await body_of(request), ("body",))
    return json_response(state_of(request).tokens.refresh(data["refresh"]))


async def verify_token(request: web.Request) -> web.Response:
    data = validate(TOKEN_VERIFY, await body_of(request), ("body",))
    state_of(request).tokens.verify(data["token"])
    return json_response({})


_DOCUMENT: list[bytes] = []


async def get_document(request: web.Request) -> web.Response:
    if not _DOCUMENT:
        source = resources.files("runwhen_operator.emulator").joinpath("papi.json")
        if not source.is_file():
            return detail_response(404, "Not Found")
        _DOCUMENT.append(source.read_bytes())
    return web.Response(body=_DOCUMENT[0], content_type="application/json")


# --- handlers: workspaces -----------------------------------------------------------------------


async def list_workspaces(request: web.Request) -> web.Response:
    query = Query(request)
    limit, offset = _limit_offset(query)
    query.finish()
    return _page(request, state_of(request).store.list_workspaces(), _views(request).workspace, limit, offset)


async def create_workspace(request: web.Request) -> web.Response:
    data = validate(WORKSPACE_CREATE, await body_of(request), ("body",))
    spec = data.get("spec") or {}
    internal = {
        "name": data["name"],
        **{key: spec[key] for key in ("configProvided", "slxGroups") if key in spec},
    }
    rec, renamed_from = state_of(request).store.create_workspace(
        internal, owner=request["emulator.user"], auto_suffix=True
    )
    return json_response(
        {
            "name": rec["name"],
            "repo_url": f"https://git.emulator.invalid/workspaces/{rec['name']}.git",
            "status": "ready",
            "renamed_from": renamed_from,
        },
        201,
    )


async def get_workspace(request: web.Request) -> web.Response:
    query = Query(request)
    query.get("detail", boolean(from_text=True))
    query.finish()
    return json_response(_views(request).workspace(state_of(request).store.get_workspace(_ws(request))))


async def patch_workspace(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    data = validate(WORKSPACE_UPDATE, await body_of(request), ("body",))
    changes = {
        internal: data[key] for key, internal in _WORKSPACE_UPDATE_KEYS.items() if data.get(key) is not None
    }
    return json_response(_views(request).workspace(store.update_workspace(name, changes)))


_DELETION_STEPS = (
    ("workflows", "workflows", "Delete workflows"),
    ("personas", "personas", "Delete personas"),
    ("run_sessions", "runSessions", "Delete run sessions"),
    ("issues", "issues", "Delete issues"),
)


async def delete_workspace(request: web.Request) -> web.Response:
    name = _ws(request)
    counts = state_of(request).store.delete_workspace(name)
    steps = [
        {"key": key, "label": label, "status": "done", "detail": f"{counts[kind]} deleted"}
        for key, kind, label in _DELETION_STEPS
    ]
    steps.append({"key": "workspace", "label": "Delete workspace", "status": "done", "detail": ""})
    return json_response({"workspace": name, "status": "deleted", "steps": steps, "async_task_id": None})


async def workspace_status(request: web.Request) -> web.Response:
    health = state_of(request).store.get_workspace(_ws(request))["health"]
    return json_response({"workspace": health["workspace"], "sync": health["sync"]})


async def workspace_index_health(request: web.Request) -> web.Response:
    health = state_of(request).store.get_workspace(_ws(request))["health"]
    return json_response(health["indexHealth"])


async def workspace_runners(request: web.Request) -> web.Response:
    rec = state_of(request).store.get_workspace(_ws(request))
    views = _views(request)
    return json_response([views.runner(runner) for runner in rec["runners"]])


def _location(request: web.Request) -> str:
    query = Query(request)
    location = query.get("location", string(min_length=1))
    if location is None and not query.errors:
        add(query.errors, ("query", "location"), "Field required", "missing", None)
    query.finish()
    return str(location)


async def runner_token(request: web.Request) -> web.Response:
    """A new registration token for a runner of the location (each call makes a new one). The
    document leaves the answer free-form: ``{workspace, location, token}`` is this emulator's choice
    (docs/runwhen-api.md)."""
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    location = _location(request)
    token = store.issue_token(name, "runnerTokens", location)
    return json_response({"workspace": name, "location": location, "token": token})


async def upload_config(request: web.Request) -> web.Response:
    """The workspace builder's upload configuration for the location: the keys of the chart's
    ``uploadInfo.yaml`` (free-form in the document; this emulator's choice, docs/runwhen-api.md)."""
    state = state_of(request)
    name = _ws(request)
    state.store.get_workspace(name)
    location = _location(request)
    token = state.store.issue_token(name, "uploadTokens", location)
    return json_response(
        {
            "workspaceName": name,
            "workspaceOwnerEmail": state.config.email,
            "defaultLocation": location,
            "locationName": location,
            "papiURL": str(request.url.origin()),
            "token": token,
        }
    )


async def builder_config_gone(request: web.Request) -> web.Response:
    state_of(request).store.get_workspace(_ws(request))
    return detail_response(410, "Deprecated: use GET /{workspace_name}/upload-config instead")


async def delete_runner(request: web.Request) -> web.Response:
    name = _ws(request)
    runner = state_of(request).store.delete_runner(name, request.match_info["runner_id"])
    return json_response({"status": "deleted", "runner": runner["value"], "workspace": name})


def _severity(value: Any, loc: Loc, errors: ErrorList) -> Any:
    text = str(value).strip().upper().removeprefix("SEV")
    if not text.isdigit():
        return add(errors, loc, "Value error, severity must be 1-4 or SEV1-SEV4", "value_error", value)
    return int(text)


async def workspace_issues(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = _ws(request)
    query = Query(request)
    limit, offset = _limit_offset(query, max_limit=250)
    closed = query.get("closed", boolean(from_text=True))
    severity_lte = query.get("severity__lte", _severity)
    query.finish()
    issues = store.list_issues(name, closed=closed, severity_lte=severity_lte)
    return _page(request, issues, _views(request).issue, limit, offset, echo=True)


def _child_lister(kind: str, view: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The list handler of ``kind`` ("workflows" or "personas") answering with the view ``view``
    (``workflow_v3``, ``persona_v4``, ...): limit/offset pages of the workspace's live objects."""

    async def handler(request: web.Request) -> web.Response:
        query = Query(request)
        limit, offset = _limit_offset(query)
        query.finish()
        store = state_of(request).store
        items = (
            store.list_workflows(_ws(request)) if kind == "workflows" else store.list_personas(_ws(request))
        )
        return _page(request, items, getattr(_views(request), view), limit, offset)

    return handler


list_workflows_v3 = _child_lister("workflows", "workflow_v3")
list_workflows_v4 = _child_lister("workflows", "workflow_v4")
list_personas_v3 = _child_lister("personas", "persona_v3")
list_personas_v4 = _child_lister("personas", "persona_v4")


# --- handlers: workflows ------------------------------------------------------------------------


def _workflow(request: web.Request) -> Record:
    info = request.match_info
    short = info.get("workflow_short_name") or info["workflow_name"]
    return state_of(request).store.find_workflow(_ws(request), short)


async def get_workflow_v3(request: web.Request) -> web.Response:
    return json_response(_views(request).workflow_v3(_workflow(request)))


async def get_workflow_v4(request: web.Request) -> web.Response:
    return json_response(_views(request).workflow_v4(_workflow(request)))


def _sync_answer(status: str, workspace: str, rec: Record) -> web.Response:
    return json_response(
        {"status": status, "name": _full_name(workspace, rec["name"]), "resourceId": rec["id"]}
    )


async def sync_workflow(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    data = validate(WORKFLOW_SYNC, await body_of(request), ("body",))
    payload = data["payload"]
    short = _short_name(name, payload["name"], ("body", "payload", "name"))
    rec, status = store.upsert_workflow(name, short, payload["definition"])
    return _sync_answer(status, name, rec)


async def delete_workflow(request: web.Request) -> web.Response:
    rec = _workflow(request)
    state_of(request).store.delete_workflow(rec["workspace"], rec["id"], soft=True)
    return json_response({"status": "deleted", "name": _full_name(rec["workspace"], rec["name"])})


async def run_workflow(request: web.Request) -> web.Response:
    rec = _workflow(request)
    state_of(request).store.trigger_run(rec["workspace"], rec["id"], {}, triggered_by="user")
    return json_response({"status": "accepted"}, 202)


def _webhook_url(request: web.Request, rec: Record) -> str:
    return f"{request.url.origin()}{V3}/workspaces/{rec['workspace']}/workflows/{rec['name']}/webhook"


async def workflow_token(request: web.Request) -> web.Response:
    rec = _workflow(request)
    token = state_of(request).store.take_webhook_token(rec["workspace"], rec["id"])
    return json_response({"webhook_url": _webhook_url(request, rec), "webhook_token": token})


async def rotate_workflow_token(request: web.Request) -> web.Response:
    rec = _workflow(request)
    state_of(request).store.rotate_webhook_token(rec["workspace"], rec["id"])
    return json_response({}, 202)


async def workflow_webhook_url(request: web.Request) -> web.Response:
    return json_response({"webhook_url": _webhook_url(request, _workflow(request))})


# --- handlers: personas -------------------------------------------------------------------------


def _persona(request: web.Request) -> Record:
    return state_of(request).store.find_persona(_ws(request), request.match_info["persona_short_name"])


async def get_persona_v3(request: web.Request) -> web.Response:
    return json_response(_views(request).persona_v3(_persona(request)))


async def get_persona_v4(request: web.Request) -> web.Response:
    return json_response(_views(request).persona_v4(_persona(request)))


async def sync_persona(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    data = validate(PERSONA_SYNC, await body_of(request), ("body",))
    payload = data["payload"]
    short = _short_name(name, payload["name"], ("body", "payload", "name"))
    fields = {key: payload[key] if key in payload else default() for key, default in PERSONA_DEFAULTS.items()}
    rec, status = store.upsert_persona(name, short, fields)
    return _sync_answer(status, name, rec)


async def delete_persona(request: web.Request) -> web.Response:
    rec = _persona(request)
    state_of(request).store.delete_persona(rec["workspace"], rec["id"], soft=True)
    return json_response({"status": "deleted", "name": _full_name(rec["workspace"], rec["name"])})


# --- handlers: run sessions ---------------------------------------------------------------------


def _names_in(value: Any, loc: Loc, errors: ErrorList) -> Any:
    return [name.strip() for name in str(value).split(",") if name.strip()]


def _as_list(value: Any, loc: Loc, errors: ErrorList) -> Any:
    return [value]


async def list_run_sessions(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - RUN_SESSION_QUERY)
    if unknown:
        return detail_response(400, f"Unsupported query parameter(s): {', '.join(unknown)}")
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    query = Query(request)
    page = query.get("page", integer(ge=1, from_text=True), 1)
    size = query.get("page-size", integer(ge=1, le=1000, from_text=True), 100)
    active = query.get("active", boolean(from_text=True))
    stamps = {
        key: query.get(key, datetime_text(aware=True))
        for key in ("created__gte", "created__lte", "modified__gte", "modified__lte")
    }
    names: list[str] | None = query.get("runrequest__runbook__name", _as_list)
    names_in: list[str] | None = query.get("runrequest__runbook__name__in", _names_in)
    query.finish()
    wanted: Iterable[str] | None = None
    if names is not None or names_in is not None:
        wanted = [*(names or []), *(names_in or [])]
    sessions = store.list_run_sessions(
        name,
        created_gte=stamps["created__gte"],
        created_lte=stamps["created__lte"],
        modified_gte=stamps["modified__gte"],
        modified_lte=stamps["modified__lte"],
        runbook_names=wanted,
        active=active,
    )
    offset = (page - 1) * size
    count = len(sessions)
    views = _views(request)
    return json_response(
        {
            "results": [views.run_session(rec) for rec in sessions[offset : offset + size]],
            "count": count,
            "limit": size,
            "offset": offset,
            "next": url_for(request, page=str(page + 1)) if offset + size < count else None,
            "previous": url_for(request, page=str(page - 1)) if page > 1 else None,
        }
    )


async def create_run_session(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = _ws(request)
    store.get_workspace(name)
    data = validate(RUN_SESSION_CREATE, await body_of(request), ("body",))
    dedupe = data.get("dedupe") or {"enabled": True, "window": DEDUPE_WINDOW}
    window = _window_seconds(dedupe["window"])
    if window is None:
        raise Unprocessable(
            [
                {
                    "loc": ["body", "dedupe", "window"],
                    "msg": "Value error, the window must look like '30s', '10m' or '1h'",
                    "type": "value_error",
                    "input": dedupe["window"],
                }
            ]
        )
    session_name = data.get("name")
    if session_name is not None and store.session_named(name, session_name) is not None:
        raise Unprocessable(
            [
                {
                    "loc": ["body", "name"],
                    "msg": f"Value error, a run session named '{session_name}' already exists",
                    "type": "value_error",
                    "input": session_name,
                }
            ]
        )
    requests = [
        {"slxName": item["slxName"], "taskTitles": item.get("taskTitles"), "memo": item.get("memo")}
        for item in data["runRequests"]
    ]
    views = _views(request)
    if dedupe["enabled"]:
        target = store.dedupe_target(name, (item["slxName"] for item in requests), window)
        if target is not None:
            return json_response(views.run_session(store.merge_run_requests(target, requests)))
    rec = store.create_run_session(
        name,
        {
            "source": data["source"],
            "name": session_name,
            "notes": data.get("notes"),
            "personaName": data.get("personaName"),
            "runRequests": requests,
        },
        lifecycle=True,
    )
    return json_response(views.run_session(rec), 201)


async def get_run_session(request: web.Request) -> web.Response:
    store = state_of(request).store
    rec = store.get_run_session(_ws(request), _path_id(request, "runsession_id"))
    return json_response(_views(request).run_session(rec))


async def deactivate_run_session(request: web.Request) -> web.Response:
    store = state_of(request).store
    if "session_id" in request.match_info:
        rec = store.run_session_by_id(_path_id(request, "session_id"))
    else:
        rec = store.get_run_session(_ws(request), _path_id(request, "runsession_id"))
    validate(DEACTIVATE, await body_of(request, optional=True), ("body",))
    return json_response(_views(request).run_session(store.deactivate_run_session(rec)))


# --- errors -------------------------------------------------------------------------------------


def not_found(exc: NotFound) -> str:
    if exc.kind == "workspace":
        return f"Workspace '{exc.key}' not found"
    if exc.kind:
        return f"{_KIND_NAMES.get(exc.kind, exc.kind.capitalize())} '{exc.key}' not found"
    return "Not Found"


def _toggled(path: str) -> str:
    return path[:-1] if path.endswith("/") else path + "/"


def http_error(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    if exc.status == 404 and request.match_info.http_exception is not None:
        other = _toggled(request.path)
        if request.path != "/" and path_is_routed(request.app, other):
            location = str(request.url.with_path(other, encoded=False).with_query(request.url.query))
            return web.Response(status=307, headers={"Location": location})
    if exc.status == 405:
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return detail_response(405, "Method Not Allowed", headers)
    if exc.status == 404:
        return detail_response(404, "Not Found")
    if exc.status == 413:
        return detail_response(413, "Request Entity Too Large")
    return detail_response(exc.status, exc.reason)


def state_view(state: EmulatorState) -> Record:
    """Every object for ``GET /_emulator/state``: the v4 views plus the owning workspace; soft-deleted
    workflows and personas are listed with their ``deletedAt``."""
    views = Views(state)
    store = state.store
    return {
        "workspaces": [
            {
                **views.workspace(rec),
                "health": rec["health"],
                "runners": [views.runner(r) for r in rec["runners"]],
                "runnerTokens": dict(rec.get("runnerTokens") or {}),
                "uploadTokens": dict(rec.get("uploadTokens") or {}),
            }
            for rec in store.workspaces.values()
        ],
        "workflows": [
            {
                **views.workflow_v4(rec),
                "workspace": rec["workspace"],
                "webhookToken": rec["webhookToken"],
                "tokenRetrieved": bool(rec.get("tokenRetrieved")),
                "deletedAt": iso(rec.get("deletedAt")),
            }
            for rec in store.workflows.values()
        ],
        "personas": [
            {**views.persona_v4(rec), "workspace": rec["workspace"], "deletedAt": iso(rec.get("deletedAt"))}
            for rec in store.personas.values()
        ],
        "runSessions": [views.run_session(rec) for rec in store.run_sessions.values()],
        "issues": [
            {**views.issue(rec), "workspace": rec["workspace"], "runSessionId": rec["runSessionId"]}
            for rec in store.issues.values()
        ],
        "runs": [
            {
                "id": rec["id"],
                "workspace": rec["workspace"],
                "workflowId": rec["workflowId"],
                "runSessionId": rec["runSessionId"],
                "status": rec["status"],
                "createdAt": iso(rec["createdAt"]),
                "updatedAt": iso(rec["updatedAt"]),
            }
            for rec in store.runs.values()
        ],
        "reservedNames": list(store.reserved_names),
    }


# --- routing ------------------------------------------------------------------------------------

WS3 = f"{V3}/workspaces/{{workspace_name}}"
WSS3 = f"{V3}/workspaces/{{workspace_short_name}}"
WS4 = f"{V4}/workspaces/{{workspace_name}}"
WF3 = f"{WSS3}/workflows/{{workflow_short_name}}"

ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("/openapi.json", {"GET": get_document}),
    (f"{V3}/token/", {"POST": obtain_token}),
    (f"{V3}/token/refresh/", {"POST": refresh_token}),
    (f"{V3}/token/verify/", {"POST": verify_token}),
    (f"{V3}/workspaces", {"GET": list_workspaces, "POST": create_workspace}),
    (WSS3, {"GET": get_workspace}),
    (WS3, {"PATCH": patch_workspace, "DELETE": delete_workspace}),
    (f"{WS3}/status", {"GET": workspace_status}),
    (f"{WS3}/index-health", {"GET": workspace_index_health}),
    (f"{WS3}/runners", {"GET": workspace_runners}),
    (f"{WS3}/runners/{{runner_id}}", {"DELETE": delete_runner}),
    (f"{WS3}/runner-token", {"GET": runner_token}),
    (f"{WS3}/upload-config", {"GET": upload_config}),
    (f"{WS3}/generate-workspace-builder-config", {"GET": builder_config_gone}),
    (f"{WS3}/issues", {"GET": workspace_issues}),
    (f"{WSS3}/workflows", {"GET": list_workflows_v3}),
    (WF3, {"GET": get_workflow_v3}),
    (f"{WF3}/run", {"POST": run_workflow}),
    (f"{WF3}/token", {"GET": workflow_token}),
    (f"{WF3}/rotate-token", {"PATCH": rotate_workflow_token}),
    (f"{WF3}/webhook-url", {"GET": workflow_webhook_url}),
    (f"{WSS3}/personas", {"GET": list_personas_v3}),
    (f"{WSS3}/personas/{{persona_short_name}}", {"GET": get_persona_v3}),
    (f"{WS3}/runsessions", {"GET": list_run_sessions, "POST": create_run_session}),
    (f"{WS3}/runsessions/{{runsession_id}}", {"GET": get_run_session}),
    (f"{WS3}/runsessions/{{runsession_id}}/deactivate", {"POST": deactivate_run_session}),
    (f"{V1}/run-sessions/{{session_id}}/deactivate", {"POST": deactivate_run_session}),
    (f"{WS4}/workflows", {"GET": list_workflows_v4}),
    (f"{WS4}/workflows/sync-typed", {"POST": sync_workflow}),
    (f"{WS4}/workflows/{{workflow_name}}", {"GET": get_workflow_v4, "DELETE": delete_workflow}),
    (f"{WS4}/personas", {"GET": list_personas_v4}),
    (f"{WS4}/personas/sync-typed", {"POST": sync_persona}),
    (f"{WS4}/personas/{{persona_short_name}}", {"GET": get_persona_v4, "DELETE": delete_persona}),
]

DIALECT = Dialect(
    name="platform",
    routes=ROUTES,
    public_templates=frozenset(
        {"/openapi.json", f"{V3}/token/", f"{V3}/token/refresh/", f"{V3}/token/verify/"}
    ),
    fault_exempt=frozenset(),
    both_slash_forms=False,
    not_found=not_found,
    http_error=http_error,
    state_view=state_view,
    issue_view=lambda state, rec: Views(state).issue(rec),
)
