"""The emulator's HTTP layer: the middlewares (recording, counting, errors, faults, auth, persistence)
around one dialect's routes (``platform`` or ``documented``) and the shared control endpoints.

``create_app(config)`` builds the aiohttp application; ``run_emulator(config)`` serves it in the
current event loop for as long as an ``async with`` block lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from runwhen_operator.emulator import control, documented, platform
from runwhen_operator.emulator.auth import AuthError
from runwhen_operator.emulator.core import (
    API_PREFIX,
    CONTROL_PREFIX,
    DIALECT_KEY,
    STATE_KEY,
    UNMATCHED,
    Dialect,
    EmulatorConfig,
    EmulatorState,
    Handler,
    add_routes,
    detail_response,
    dialect_of,
    json_response,
    state_of,
    template_of,
)
from runwhen_operator.emulator.platform_validation import Unprocessable
from runwhen_operator.emulator.recording import text_or_none
from runwhen_operator.emulator.store import Conflict, Invalid, NotFound

__all__ = [
    "API_PREFIX",
    "DIALECTS",
    "EmulatorConfig",
    "EmulatorState",
    "create_app",
    "listening_url",
    "run_emulator",
]

log = logging.getLogger("runwhen_operator.emulator")

DIALECTS: dict[str, Dialect] = {"platform": platform.DIALECT, "documented": documented.DIALECT}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(API_PREFIX)


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
async def record_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With ``--record-exchanges``: one line per API exchange, as the client saw it."""
    recorder = state_of(request).recorder
    if recorder is None or not _is_api(request):
        return await handler(request)
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        return response
    finally:
        try:
            raw: bytes | None = await request.read()
        except Exception:  # the body could not be read (too large, connection gone): leave it out
            raw = None
        gone = bool(request.get("emulator.client_gone"))
        dropped = gone or bool(request.get("emulator.dropped"))
        body = response.body if isinstance(response, web.Response) and not dropped else None
        recorder.record(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "requestContentType": request.headers.get("Content-Type"),
                "userAgent": request.headers.get("User-Agent"),
                "requestBody": text_or_none(raw),
                "status": 0 if dropped or response is None else response.status,
                "responseContentType": None
                if dropped or response is None
                else response.headers.get("Content-Type"),
                "responseBody": text_or_none(body if isinstance(body, bytes) else None),
                "fault": request.get("emulator.fault"),
                "clientGone": gone,
            }
        )


@web.middleware
async def count_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count API requests by ``METHOD template`` and responses by ``METHOD template status``."""
    if not _is_api(request):
        return await handler(request)
    state = state_of(request)
    key = f"{request.method} {template_of(request)}"
    state.requests[key] += 1
    status = 0  # no response at all, unless the handler produces one
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        if request.get("emulator.dropped") or request.get("emulator.client_gone"):
            status = 0
        state.responses[f"{key} {status}"] += 1


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer is JSON: 400 field maps, 422 detail lists (platform), ``{"detail"}``
    otherwise, worded by the dialect. Nothing escapes as a 500 unless something is really broken."""
    try:
        return await handler(request)
    except Invalid as exc:
        return json_response(exc.errors, 400)
    except Unprocessable as exc:
        return json_response({"detail": exc.errors}, 422)
    except NotFound as exc:
        control_path = request.path.startswith(CONTROL_PREFIX + "/")
        return detail_response(404, exc.detail if control_path else dialect_of(request).not_found(exc))
    except Conflict as exc:
        return detail_response(409, exc.detail)
    except AuthError as exc:
        return detail_response(401, exc.detail, {"WWW-Authenticate": 'Bearer realm="api"'})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return dialect_of(request).http_error(request, exc)
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:
        # The client left before its request arrived in full (a client killed or giving up mid-body):
        # nobody is there to answer, and what it meant to send is unknown.
        request["emulator.client_gone"] = True
        return detail_response(400, "The request did not arrive in full.")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return detail_response(500, "Internal server error.")


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency, rate limit and random errors before the handler; failures after a committed write."""
    state = state_of(request)
    faults = state.faults
    if not faults.active or not _is_api(request) or template_of(request) in dialect_of(request).fault_exempt:
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
        request["emulator.fault"] = "rateLimit"
        return detail_response(
            429,
            f"Request was throttled. Expected available in {retry_after} seconds.",
            {"Retry-After": str(retry_after)},
        )
    status = faults.server_error()
    if status is not None:
        request["emulator.fault"] = "error"
        return detail_response(
            status, {500: "Internal server error.", 502: "Bad gateway.", 503: "Service unavailable."}[status]
        )
    response = await handler(request)
    if request.method in WRITE_METHODS and 200 <= response.status < 300:
        action = faults.after_commit()
        if action == "error":
            request["emulator.fault"] = "failAfterCommit"
            return detail_response(500, "Internal server error.")
        if action == "drop":
            request["emulator.fault"] = "dropped"
            request["emulator.dropped"] = True
            transport = request.transport
            if transport is not None:
                transport.abort()
            # Writing to the aborted transport fails quietly: the client sees the connection close.
            return detail_response(500, "Internal server error.")
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer auth for the API and loopback-only access to ``/_emulator/``."""
    state = state_of(request)
    if _is_api(request):
        template = template_of(request)
        if template != UNMATCHED and template not in dialect_of(request).public_templates:
            request["emulator.user"] = state.tokens.authenticate(request.headers.get("Authorization"))
    elif (
        request.path.startswith(CONTROL_PREFIX + "/")
        and not state.config.allow_remote_control
        and not _is_loopback(request.remote)
    ):
        return detail_response(403, "The control endpoints answer loopback clients only.")
    return await handler(request)


@web.middleware
async def store_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Advance runs and sessions before the handler; save the state file after it if anything changed."""
    state = state_of(request)
    state.store.advance()
    try:
        return await handler(request)
    finally:
        state.save()


# --- the application ----------------------------------------------------------------------------


def create_app(config: EmulatorConfig, state: EmulatorState | None = None) -> web.Application:
    """The emulator as an aiohttp application, speaking ``config.dialect``."""
    dialect = DIALECTS.get(config.dialect)
    if dialect is None:
        raise ValueError(f"unknown dialect {config.dialect!r}; one of {', '.join(DIALECTS)}")
    app = web.Application(
        middlewares=[
            record_middleware,
            count_middleware,
            error_middleware,
            fault_middleware,
            auth_middleware,
            store_middleware,
        ],
        client_max_size=4 * 1024 * 1024,
    )
    app[STATE_KEY] = state if state is not None else EmulatorState(config)
    app[DIALECT_KEY] = dialect
    add_routes(app, dialect.routes, both_slash_forms=dialect.both_slash_forms)
    add_routes(app, control.ROUTES, both_slash_forms=True)
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
        app[STATE_KEY].close()
        await runner.cleanup()
