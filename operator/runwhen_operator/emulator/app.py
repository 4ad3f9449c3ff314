"""The emulator's HTTP layer: routes, middlewares (counting, errors, faults, auth, persistence).

``create_app(config)`` builds the aiohttp application; ``run_emulator(config)`` serves it in the
current event loop for as long as an ``async with`` block lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import MultiDict

from runwhen_operator.emulator.auth import AuthError, TokenService
from runwhen_operator.emulator.faults import Faults
from runwhen_operator.emulator.store import (
    NON_FIELD,
    SOURCES,
    Invalid,
    NotFound,
    Record,
    RunSettings,
    StateFileError,
    Store,
    iso,
    issue_view,
    load_state,
    parse_datetime,
    persona_view,
    run_session_view,
    run_view,
    save_state,
    workflow_view,
    workspace_view,
)

__all__ = [
    "API_PREFIX",
    "EmulatorConfig",
    "EmulatorState",
    "create_app",
    "listening_url",
    "run_emulator",
    "url_for",
]

log = logging.getLogger("runwhen_operator.emulator")

API_PREFIX = "/api/v3"
CONTROL_PREFIX = "/_emulator"
MAX_PAGE_SIZE = 1000
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PUBLIC_API_TEMPLATES = frozenset(
    {
        f"{API_PREFIX}/token",
        f"{API_PREFIX}/token/refresh",
        f"{API_PREFIX}/schema",
        f"{API_PREFIX}/webhooks/workflows/{{token}}",
    }
)
UNMATCHED = "<unmatched>"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class EmulatorConfig:
    """Everything the command line can set."""

    host: str = "127.0.0.1"
    port: int = 8080
    username: str = "admin"
    password: str = "admin"
    api_token: str | None = None
    token_lifetime: float = 300.0
    refresh_token_lifetime: float = 86_400.0
    page_size: int = 50
    auto_suffix_duplicates: bool = False
    state_file: Path | None = None
    run_step_seconds: float = 1.0
    run_outcome: str = "completed"
    allow_remote_control: bool = False
    access_log: bool = False
    signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))


class EmulatorState:
    """The store plus everything around it: tokens, faults, counters, the state file."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.store = Store(
            run_settings=RunSettings(outcome=config.run_outcome, step_seconds=config.run_step_seconds)
        )
        key = config.signing_key
        if config.state_file is not None:
            data = load_state(config.state_file)
            if data is not None:
                self.store.restore(data)
                stored_key = data.get("signingKey")
                if isinstance(stored_key, str):
                    try:
                        key = bytes.fromhex(stored_key)
                    except ValueError as exc:
                        raise StateFileError("malformed signingKey in the state file") from exc
        self.tokens = TokenService(
            username=config.username,
            password=config.password,
            api_token=config.api_token,
            access_lifetime=config.token_lifetime,
            refresh_lifetime=config.refresh_token_lifetime,
            key=key,
        )
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.responses: Counter[str] = Counter()
        self.saved_generation = self.store.generation

    def save(self) -> None:
        """Write the state file if there is one and anything changed since the last save."""
        path = self.config.state_file
        if path is None or self.store.generation == self.saved_generation:
            return
        payload = self.store.snapshot()
        payload["signingKey"] = self.tokens.key.hex()
        try:
            save_state(path, payload)
        except OSError:
            log.exception("cannot write the state file %s", path)
            return
        self.saved_generation = self.store.generation


STATE_KEY = web.AppKey("emulator_state", EmulatorState)


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


# --- helpers ------------------------------------------------------------------------------------


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"detail": detail}, status, headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity) or Invalid with a ``non_field_errors`` message."""
    try:
        return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise Invalid({NON_FIELD: [f"JSON parse error - {exc}"]}) from exc


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The JSON body; an empty body is ``empty`` (``{}`` when not given)."""
    raw = await request.read()
    if not raw.strip():
        return {} if empty is None else empty
    return parse_json(raw)


def path_int(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise NotFound()
    return int(text)


def template_of(request: web.Request) -> str:
    """The canonical route pattern without a trailing slash (also for a 405), or ``<unmatched>``."""
    cached = request.get("emulator.template")
    if isinstance(cached, str):
        return cached
    resource = request.match_info.route.resource
    template = UNMATCHED
    if resource is not None:
        template = resource.canonical.rstrip("/") or "/"
    else:
        path = request.rel_url.path
        for candidate in request.app.router.resources():
            if (
                isinstance(candidate, web.Resource)
                and candidate.get_info()
                and _path_matches(candidate, path)
            ):
                template = candidate.canonical.rstrip("/") or "/"
                break
    request["emulator.template"] = template
    return template


def _path_matches(resource: web.Resource, path: str) -> bool:
    info = resource.get_info()
    if "path" in info:
        return bool(info["path"] == path)
    pattern = info.get("pattern")
    return pattern is not None and pattern.fullmatch(path) is not None


def url_for(request: web.Request, **query: str | None) -> str:
    """The request URL with ``query`` set (a None value removes the parameter)."""
    params: MultiDict[str] = MultiDict(request.query)
    for key, value in query.items():
        params.popall(key, None)
        if value is not None:
            params[key] = value
    return str(request.url.with_query(params))


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
    size = min(size if size is not None else _state(request).config.page_size, MAX_PAGE_SIZE)
    page = _query_int(request, "page", minimum=1) or 1
    count = len(items)
    pages = max(1, math.ceil(count / size))
    if page > pages:
        raise NotFound("Invalid page.")
    results = [view(rec) for rec in items[(page - 1) * size : page * size]]
    return _json(
        {
            "count": count,
            "next": url_for(request, page=str(page + 1)) if page < pages else None,
            "previous": (url_for(request, page=str(page - 1) if page > 2 else None) if page > 1 else None),
            "results": results,
        }
    )


def _is_loopback(remote: str | None) -> bool:
    if remote is None:
        return True
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# --- middlewares --------------------------------------------------------------------------------


@web.middleware
async def count_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count API requests by ``METHOD template`` and responses by ``METHOD template status``."""
    if not request.path.startswith(API_PREFIX + "/"):
        return await handler(request)
    state = _state(request)
    key = f"{request.method} {template_of(request)}"
    state.requests[key] += 1
    status = 0  # no response at all, unless the handler produces one
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        if request.get("emulator.dropped"):
            status = 0
        state.responses[f"{key} {status}"] += 1


_HTTP_DETAILS = {
    404: "Not found.",
    413: "Request body is too large.",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer is JSON: 400 field maps, ``{"detail"}`` otherwise. Nothing escapes as a 500
    unless something is really broken."""
    try:
        return await handler(request)
    except Invalid as exc:
        return _json(exc.errors, 400)
    except NotFound as exc:
        return _detail(404, exc.detail)
    except AuthError as exc:
        return _detail(401, exc.detail, {"WWW-Authenticate": 'Bearer realm="api"'})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 405:
            detail = f'Method "{request.method}" not allowed.'
        else:
            detail = _HTTP_DETAILS.get(exc.status, exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return _detail(exc.status, detail, headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _detail(500, "Internal server error.")


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency, rate limit and random errors before the handler; failures after a committed write."""
    state = _state(request)
    faults = state.faults
    if not faults.active or not request.path.startswith(API_PREFIX + "/"):
        return await handler(request)
    if template_of(request) == f"{API_PREFIX}/schema":
        return await handler(request)
    if faults.config.latency_ms:
        # The body is received first, as a real server behind a proxy would: a client that gives up
        # during the delay has still sent its request, which is then applied (the case that makes a
        # lost answer ambiguous for the client).
        if request.can_read_body:
            await request.read()
        await asyncio.sleep(faults.config.latency_ms / 1000.0)
    retry_after = faults.retry_after()
    if retry_after is not None:
        return _detail(
            429,
            f"Request was throttled. Expected available in {retry_after} seconds.",
            {"Retry-After": str(retry_after)},
        )
    status = faults.server_error()
    if status is not None:
        return _detail(
            status, {500: "Internal server error.", 502: "Bad gateway.", 503: "Service unavailable."}[status]
        )
    response = await handler(request)
    if request.method in WRITE_METHODS and 200 <= response.status < 300:
        action = faults.after_commit()
        if action == "error":
            return _detail(500, "Internal server error.")
        if action == "drop":
            request["emulator.dropped"] = True
            transport = request.transport
            if transport is not None:
                transport.abort()
            # Writing to the aborted transport fails quietly: the client sees the connection close.
            return _detail(500, "Internal server error.")
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer auth for ``/api/v3/`` and loopback-only access to ``/_emulator/``."""
    state = _state(request)
    path = request.path
    if path.startswith(API_PREFIX + "/"):
        template = template_of(request)
        if template != UNMATCHED and template not in PUBLIC_API_TEMPLATES:
            request["emulator.user"] = state.tokens.authenticate(request.headers.get("Authorization"))
    elif (
        path.startswith(CONTROL_PREFIX + "/")
        and not state.config.allow_remote_control
        and not _is_loopback(request.remote)
    ):
        return _detail(403, "The control endpoints answer loopback clients only.")
    return await handler(request)


@web.middleware
async def store_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Advance workflow runs before the handler; save the state file after it if anything changed."""
    state = _state(request)
    state.store.advance()
    try:
        return await handler(request)
    finally:
        state.save()


# --- API handlers -------------------------------------------------------------------------------


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
    return _json(_state(request).tokens.obtain(username, password))


async def refresh_token(request: web.Request) -> web.Response:
    body = await _credentials(request)
    (token,) = _required_strings(body, "refresh")
    return _json(_state(request).tokens.refresh(token))


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


async def list_workspaces(request: web.Request) -> web.Response:
    return paginate(request, _state(request).store.list_workspaces(), workspace_view)


async def create_workspace(request: web.Request) -> web.Response:
    state = _state(request)
    body = await read_json(request)
    rec = state.store.create_workspace(
        body, owner=request["emulator.user"], auto_suffix=state.config.auto_suffix_duplicates
    )
    return _json(workspace_view(rec), 201)


async def get_workspace(request: web.Request) -> web.Response:
    return _json(workspace_view(_state(request).store.get_workspace(request.match_info["workspace_name"])))


async def put_workspace(request: web.Request) -> web.Response:
    store = _state(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    rec = store.update_workspace(name, await read_json(request), partial=False)
    return _json(workspace_view(rec))


async def patch_workspace(request: web.Request) -> web.Response:
    store = _state(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    rec = store.update_workspace(name, await read_json(request), partial=True)
    return _json(workspace_view(rec))


async def delete_workspace(request: web.Request) -> web.Response:
    _state(request).store.delete_workspace(request.match_info["workspace_name"])
    return web.Response(status=204)


async def workspace_status(request: web.Request) -> web.Response:
    health = _state(request).store.get_workspace(request.match_info["workspace_name"])["health"]
    return _json({"workspace": health["workspace"], "sync": health["sync"]})


async def workspace_health(request: web.Request) -> web.Response:
    store = _state(request).store
    rec = store.get_workspace(request.match_info["workspace_name"])
    health = rec["health"]
    body: Record = {"workspace": rec["name"], "status": health["status"], "checkedAt": iso(store.clock())}
    if _query_flag(request, "include_details"):
        body["details"] = health["details"]
    if _query_flag(request, "include_metrics"):
        body["metrics"] = health["metrics"]
    return _json(body)


def _issue_filters(request: web.Request) -> dict[str, Any]:
    return {
        "closed": _query_bool(request, "closed"),
        "severity_lte": _query_int(request, "severity__lte"),
    }


async def workspace_issues(request: web.Request) -> web.Response:
    store = _state(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    return paginate(request, store.list_issues(name, **_issue_filters(request)), issue_view)


async def list_workflows(request: web.Request) -> web.Response:
    store = _state(request).store
    return paginate(request, store.list_workflows(request.match_info["workspace_name"]), workflow_view)


async def create_workflow(request: web.Request) -> web.Response:
    store = _state(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    rec = store.create_workflow(name, await read_json(request))
    return _json(workflow_view(rec), 201)


async def get_workflow(request: web.Request) -> web.Response:
    store = _state(request).store
    rec = store.get_workflow(request.match_info["workspace_name"], path_int(request, "workflow_id"))
    return _json(workflow_view(rec))


async def put_workflow(request: web.Request) -> web.Response:
    store = _state(request).store
    name, workflow_id = request.match_info["workspace_name"], path_int(request, "workflow_id")
    store.get_workflow(name, workflow_id)
    rec = store.replace_workflow(name, workflow_id, await read_json(request))
    return _json(workflow_view(rec))


async def delete_workflow(request: web.Request) -> web.Response:
    _state(request).store.delete_workflow(
        request.match_info["workspace_name"], path_int(request, "workflow_id")
    )
    return web.Response(status=204)


async def run_workflow(request: web.Request) -> web.Response:
    store = _state(request).store
    name, workflow_id = request.match_info["workspace_name"], path_int(request, "workflow_id")
    store.get_workflow(name, workflow_id)
    run = store.trigger_run(name, workflow_id, await read_json(request), triggered_by="user")
    return _json(run_view(run))


def _webhook_url(request: web.Request, token: str) -> str:
    return f"{request.url.origin()}{API_PREFIX}/webhooks/workflows/{token}"


async def workflow_token(request: web.Request) -> web.Response:
    store = _state(request).store
    token = store.webhook_token(request.match_info["workspace_name"], path_int(request, "workflow_id"))
    return _json({"token": token, "webhookUrl": _webhook_url(request, token)})


async def workflow_webhook(request: web.Request) -> web.Response:
    store = _state(request).store
    workflow = store.workflow_by_webhook_token(request.match_info["token"])
    run = store.trigger_run(
        workflow["workspace"], workflow["id"], await read_json(request), triggered_by="system"
    )
    return _json(run_view(run))


async def list_personas(request: web.Request) -> web.Response:
    store = _state(request).store
    return paginate(request, store.list_personas(request.match_info["workspace_name"]), persona_view)


async def create_persona(request: web.Request) -> web.Response:
    store = _state(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    return _json(persona_view(store.create_persona(name, await read_json(request))), 201)


async def get_persona(request: web.Request) -> web.Response:
    store = _state(request).store
    rec = store.get_persona(request.match_info["workspace_name"], path_int(request, "persona_id"))
    return _json(persona_view(rec))


async def put_persona(request: web.Request) -> web.Response:
    store = _state(request).store
    name, persona_id = request.match_info["workspace_name"], path_int(request, "persona_id")
    store.get_persona(name, persona_id)
    return _json(persona_view(store.replace_persona(name, persona_id, await read_json(request))))


async def delete_persona(request: web.Request) -> web.Response:
    _state(request).store.delete_persona(
        request.match_info["workspace_name"], path_int(request, "persona_id")
    )
    return web.Response(status=204)


async def list_run_sessions(request: web.Request) -> web.Response:
    store = _state(request).store
    name = request.match_info["workspace_name"]
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
    sessions = store.list_run_sessions(
        name,
        modified_lte=modified_lte,
        runbook_name=request.query.get("runrequest__runbook__name"),
        source=source,
        workflow_id=_query_int(request, "workflowId"),
    )
    return paginate(request, sessions, run_session_view)


async def create_run_session(request: web.Request) -> web.Response:
    store = _state(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    return _json(run_session_view(store.create_run_session(name, await read_json(request))), 201)


async def get_run_session(request: web.Request) -> web.Response:
    store = _state(request).store
    rec = store.get_run_session(request.match_info["workspace_name"], path_int(request, "runsession_id"))
    return _json(run_session_view(rec))


async def patch_run_session(request: web.Request) -> web.Response:
    store = _state(request).store
    name, session_id = request.match_info["workspace_name"], path_int(request, "runsession_id")
    store.get_run_session(name, session_id)
    return _json(run_session_view(store.patch_run_session(name, session_id, await read_json(request))))


async def run_session_issues(request: web.Request) -> web.Response:
    store = _state(request).store
    name, session_id = request.match_info["workspace_name"], path_int(request, "runsession_id")
    store.get_run_session(name, session_id)
    issues = store.list_issues(name, run_session_id=session_id, **_issue_filters(request))
    return paginate(request, issues, issue_view)


async def get_run_session_issue(request: web.Request) -> web.Response:
    store = _state(request).store
    name, session_id = request.match_info["workspace_name"], path_int(request, "runsession_id")
    store.get_run_session(name, session_id)
    rec = store.get_issue(name, path_int(request, "issue_id"), run_session_id=session_id)
    return _json(issue_view(rec))


async def patch_run_session_issue(request: web.Request) -> web.Response:
    store = _state(request).store
    name, session_id = request.match_info["workspace_name"], path_int(request, "runsession_id")
    store.get_run_session(name, session_id)
    issue_id = path_int(request, "issue_id")
    store.get_issue(name, issue_id, run_session_id=session_id)
    rec = store.patch_issue(name, issue_id, await read_json(request), run_session_id=session_id)
    return _json(issue_view(rec))


# --- control handlers ---------------------------------------------------------------------------


async def control_state(request: web.Request) -> web.Response:
    state = _state(request)
    body = state.store.state()
    body["faults"] = state.faults.config.wire()
    body["requests"] = dict(state.requests)
    body["responses"] = dict(state.responses)
    return _json(body)


async def control_reset_requests(request: web.Request) -> web.Response:
    state = _state(request)
    state.requests.clear()
    state.responses.clear()
    return web.Response(status=204)


async def control_get_faults(request: web.Request) -> web.Response:
    return _json(_state(request).faults.config.wire())


async def control_put_faults(request: web.Request) -> web.Response:
    faults = _state(request).faults
    return _json(faults.configure(await read_json(request)).wire())


async def control_health(request: web.Request) -> web.Response:
    store = _state(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    rec = store.set_health(name, await read_json(request))
    return _json({"workspace": rec["name"], **rec["health"]})


async def control_open_issue(request: web.Request) -> web.Response:
    store = _state(request).store
    name = request.match_info["workspace_name"]
    store.get_workspace(name)
    return _json(issue_view(store.open_issue(name, await read_json(request))), 201)


async def control_close_issue(request: web.Request) -> web.Response:
    store = _state(request).store
    rec = store.close_issue(request.match_info["workspace_name"], path_int(request, "issue_id"))
    return _json(issue_view(rec))


def _run_settings_view(settings: RunSettings) -> Record:
    return {"outcome": settings.outcome, "stepSeconds": settings.step_seconds}


async def control_get_runs(request: web.Request) -> web.Response:
    return _json(_run_settings_view(_state(request).store.run_settings))


async def control_put_runs(request: web.Request) -> web.Response:
    store = _state(request).store
    return _json(_run_settings_view(store.set_run_settings(await read_json(request))))


async def control_reset(request: web.Request) -> web.Response:
    state = _state(request)
    state.store.reset()
    state.faults.clear()
    state.requests.clear()
    state.responses.clear()
    return web.Response(status=204)


# --- routing ------------------------------------------------------------------------------------

WS = f"{API_PREFIX}/workspaces/{{workspace_name}}"
CWS = f"{CONTROL_PREFIX}/workspaces/{{workspace_name}}"

ROUTES: list[tuple[str, dict[str, Handler]]] = [
    (f"{API_PREFIX}/token/", {"POST": obtain_token}),
    (f"{API_PREFIX}/token/refresh/", {"POST": refresh_token}),
    (f"{API_PREFIX}/schema/", {"GET": get_schema}),
    (f"{API_PREFIX}/webhooks/workflows/{{token}}", {"POST": workflow_webhook}),
    (f"{API_PREFIX}/workspaces/", {"GET": list_workspaces, "POST": create_workspace}),
    (
        WS,
        {"GET": get_workspace, "PUT": put_workspace, "PATCH": patch_workspace, "DELETE": delete_workspace},
    ),
    (f"{WS}/status", {"GET": workspace_status}),
    (f"{WS}/health", {"GET": workspace_health}),
    (f"{WS}/issues", {"GET": workspace_issues}),
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
    (f"{CONTROL_PREFIX}/state", {"GET": control_state}),
    (f"{CONTROL_PREFIX}/requests", {"DELETE": control_reset_requests}),
    (f"{CONTROL_PREFIX}/faults", {"GET": control_get_faults, "PUT": control_put_faults}),
    (f"{CWS}/health", {"PUT": control_health}),
    (f"{CWS}/issues", {"POST": control_open_issue}),
    (f"{CWS}/issues/{{issue_id}}/close", {"POST": control_close_issue}),
    (f"{CONTROL_PREFIX}/runs", {"GET": control_get_runs, "PUT": control_put_runs}),
    (f"{CONTROL_PREFIX}/reset", {"POST": control_reset}),
]


def create_app(config: EmulatorConfig, state: EmulatorState | None = None) -> web.Application:
    """The emulator as an aiohttp application. Every path answers with and without a trailing slash."""
    app = web.Application(
        middlewares=[count_middleware, error_middleware, fault_middleware, auth_middleware, store_middleware],
        client_max_size=4 * 1024 * 1024,
    )
    app[STATE_KEY] = state if state is not None else EmulatorState(config)
    for template, methods in ROUTES:
        bare = template.rstrip("/")
        for path in (bare, bare + "/"):
            resource = app.router.add_resource(path)
            for method, handler in methods.items():
                resource.add_route(method, handler)
    return app


def listening_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@contextlib.asynccontextmanager
async def run_emulator(config: EmulatorConfig | None = None) -> AsyncIterator[str]:
    """Serve the emulator in the running event loop; yields its base URL (``http://host:port``)."""
    config = config or EmulatorConfig(port=0)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=log if config.access_log else None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = config.port
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            port = int(sockets[0].getsockname()[1])
        yield listening_url(config.host, port)
    finally:
        app[STATE_KEY].save()
        await runner.cleanup()
