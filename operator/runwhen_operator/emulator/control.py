"""The ``/_emulator/`` control endpoints, the same in both dialects: state, counters, faults, health,
runners and their heartbeats, issues, run settings, reserved workspace names, reset. Bodies are
JSON; a bad body is a 400 field map, an unknown workspace or issue a 404."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from runwhen_operator.emulator.core import (
    CONTROL_PREFIX,
    dialect_of,
    json_response,
    path_int,
    read_json,
    state_of,
)
from runwhen_operator.emulator.store import (
    HEALTH_STATUSES,
    RUN_OUTCOMES,
    Invalid,
    Record,
    RunSettings,
    iso,
    parse_datetime,
)
from runwhen_operator.emulator.validation import (
    NON_FIELD,
    Field,
    bool_field,
    dns_label,
    enum,
    integer,
    list_of,
    nested,
    number,
    object_field,
    parse_body,
    string,
)

__all__ = ["ROUTES"]

RUNNER_HEALTH = ("online", "stale", "unknown")

_HEALTH_DETAIL = nested(
    {
        "component": Field(string(), required=True),
        "status": Field(string(), required=True),
        "message": Field(string()),
    }
)
_INDEX_HEALTH = nested(
    {
        "status": Field(string(allow_blank=False)),
        "indexedResources": Field(integer(minimum=0)),
        "lastIndexedAt": Field(string(), nullable=True),
    }
)
HEALTH_FIELDS = {
    "status": Field(enum(HEALTH_STATUSES)),
    "details": Field(list_of(_HEALTH_DETAIL)),
    "metrics": Field(object_field(number())),
    "workspace": Field(bool_field()),
    "sync": Field(bool_field()),
    "indexHealth": Field(_INDEX_HEALTH),
}


def _issue_fields(*, nullable: bool) -> dict[str, Field]:
    """Opening an issue: the platform dialect allows a null title and severity (and a taskTitle)."""
    fields = {
        "title": Field(string(allow_blank=False), required=not nullable, nullable=nullable),
        "severity": Field(integer(minimum=1, maximum=4), required=not nullable, nullable=nullable),
        "slxName": Field(string(), default=str),
        "runSessionId": Field(integer(minimum=1), nullable=True),
        "openOccurrenceCount": Field(integer(minimum=1), default=lambda: 1),
    }
    if nullable:
        fields["taskTitle"] = Field(string())
    return fields


RUNNER_FIELDS = {
    "name": Field(string(allow_blank=False), required=True),
    "value": Field(string()),
    "health": Field(enum(RUNNER_HEALTH), required=True),
    "lastHeartbeat": Field(string(), nullable=True),
}
HEARTBEAT_FIELDS = {
    "health": Field(enum(RUNNER_HEALTH), default=lambda: "online"),
    "value": Field(string(allow_blank=False)),
}
RESERVED_FIELDS = {"names": Field(list_of(dns_label()), required=True)}
RUN_SETTINGS_FIELDS = {
    "outcome": Field(enum(RUN_OUTCOMES)),
    "stepSeconds": Field(number(minimum=0, maximum=3600)),
}


def _timestamp(text: str, path: str) -> float:
    try:
        return parse_datetime(text)
    except (ValueError, OverflowError):
        raise Invalid({path: ["Enter a valid date/time."]}) from None


def _runners(body: Any, now: float) -> list[Record]:
    if not isinstance(body, list):
        raise Invalid({NON_FIELD: ["Expected a list of runners."]})
    errors: dict[str, list[str]] = {}
    runners = []
    for index, item in enumerate(body):
        try:
            data = parse_body(item, RUNNER_FIELDS)
        except Invalid as exc:
            errors.update({f"{index}.{key}": messages for key, messages in exc.errors.items()})
            continue
        beat: float | None
        if "lastHeartbeat" not in data:
            beat = None if data["health"] == "unknown" else now
        elif data["lastHeartbeat"] is None:
            beat = None
        else:
            try:
                beat = _timestamp(data["lastHeartbeat"], f"{index}.lastHeartbeat")
            except Invalid as exc:
                errors.update(exc.errors)
                continue
        runners.append(
            {
                "name": data["name"],
                "value": data.get("value", data["name"]),
                "health": data["health"],
                "lastHeartbeat": beat,
            }
        )
    if errors:
        raise Invalid(errors)
    return runners


def _runner_view(rec: Record) -> Record:
    return {**rec, "lastHeartbeat": iso(rec["lastHeartbeat"])}


def _run_settings_view(settings: RunSettings) -> Record:
    return {"outcome": settings.outcome, "stepSeconds": settings.step_seconds}


# --- handlers -----------------------------------------------------------------------------------


async def control_state(request: web.Request) -> web.Response:
    state = state_of(request)
    body = dialect_of(request).state_view(state)
    body["dialect"] = state.config.dialect
    body["runSettings"] = _run_settings_view(state.store.run_settings)
    body["faults"] = state.faults.config.wire()
    body["requests"] = dict(state.requests)
    body["responses"] = dict(state.responses)
    return json_response(body)


async def control_reset_requests(request: web.Request) -> web.Response:
    state = state_of(request)
    state.requests.clear()
    state.responses.clear()
    return web.Response(status=204)


async def control_get_faults(request: web.Request) -> web.Response:
    return json_response(state_of(request).faults.config.wire())


async def control_put_faults(request: web.Request) -> web.Response:
    faults = state_of(request).faults
    return json_response(faults.configure(await read_json(request)).wire())


async def control_health(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    rec = store.set_health(name, parse_body(await read_json(request), HEALTH_FIELDS, partial=True))
    return json_response({"workspace": rec["name"], **rec["health"]})


async def control_runners(request: web.Request) -> web.Response:
    store = state_of(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    rec = store.set_runners(name, _runners(await read_json(request, empty=[]), store.clock()))
    return json_response([_runner_view(runner) for runner in rec["runners"]])


async def control_heartbeat(request: web.Request) -> web.Response:
    """A runner reports in (what the runner's own registration and status calls do): registered by
    name on its first report, its health (default ``online``) and heartbeat set to now."""
    store = state_of(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    data = parse_body(await read_json(request, empty={}), HEARTBEAT_FIELDS)
    runner = store.heartbeat(name, request.match_info["runner_name"], data["health"], data.get("value"))
    return json_response(_runner_view(runner))


async def control_open_issue(request: web.Request) -> web.Response:
    state = state_of(request)
    name = request.match_info["workspace_name"]
    state.store.get_workspace(name)
    fields = _issue_fields(nullable=state.config.dialect == "platform")
    data = parse_body(await read_json(request), fields)
    data.setdefault("title", None)
    data.setdefault("severity", None)
    return json_response(dialect_of(request).issue_view(state, state.store.open_issue(name, data)), 201)


async def control_close_issue(request: web.Request) -> web.Response:
    state = state_of(request)
    rec = state.store.close_issue(request.match_info["workspace_name"], path_int(request, "issue_id"))
    return json_response(dialect_of(request).issue_view(state, rec))


async def control_get_runs(request: web.Request) -> web.Response:
    return json_response(_run_settings_view(state_of(request).store.run_settings))


async def control_put_runs(request: web.Request) -> web.Response:
    store = state_of(request).store
    data = parse_body(await read_json(request), RUN_SETTINGS_FIELDS, partial=True)
    return json_response(_run_settings_view(store.set_run_settings(data)))


async def control_reserved_names(request: web.Request) -> web.Response:
    store = state_of(request).store
    data = parse_body(await read_json(request), RESERVED_FIELDS)
    return json_response({"names": store.set_reserved_names(data["names"])})


async def control_reset(request: web.Request) -> web.Response:
    state = state_of(request)
    state.store.reset()
    state.faults.clear()
    state.requests.clear()
    state.responses.clear()
    return web.Response(status=204)


CWS = f"{CONTROL_PREFIX}/workspaces/{{workspace_name}}"

ROUTES: list[tuple[str, dict[str, Any]]] = [
    (f"{CONTROL_PREFIX}/state", {"GET": control_state}),
    (f"{CONTROL_PREFIX}/requests", {"DELETE": control_reset_requests}),
    (f"{CONTROL_PREFIX}/faults", {"GET": control_get_faults, "PUT": control_put_faults}),
    (f"{CWS}/health", {"PUT": control_health}),
    (f"{CWS}/runners", {"PUT": control_runners}),
    (f"{CWS}/runners/{{runner_name}}/heartbeat", {"POST": control_heartbeat}),
    (f"{CWS}/issues", {"POST": control_open_issue}),
    (f"{CWS}/issues/{{issue_id}}/close", {"POST": control_close_issue}),
    (f"{CONTROL_PREFIX}/runs", {"GET": control_get_runs, "PUT": control_put_runs}),
    (f"{CONTROL_PREFIX}/reserved-names", {"PUT": control_reserved_names}),
    (f"{CONTROL_PREFIX}/reset", {"POST": control_reset}),
]
