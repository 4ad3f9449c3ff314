"""What both dialects share: configuration, the state around the store, the dialect interface and
small HTTP helpers (JSON answers, bodies, path and query parameters, route templates)."""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import MultiDict

from runwhen_operator.emulator.auth import TokenService
from runwhen_operator.emulator.faults import Faults
from runwhen_operator.emulator.recording import ExchangeRecorder
from runwhen_operator.emulator.store import (
    NON_FIELD,
    Invalid,
    NotFound,
    Record,
    RunSettings,
    StateFileError,
    Store,
    load_state,
    save_state,
)

__all__ = [
    "API_PREFIX",
    "CONTROL_PREFIX",
    "DIALECTS",
    "STATE_KEY",
    "UNMATCHED",
    "Dialect",
    "EmulatorConfig",
    "EmulatorState",
    "Handler",
    "detail_response",
    "json_response",
    "parse_json",
    "path_int",
    "read_json",
    "state_of",
    "template_of",
    "url_for",
]

log = logging.getLogger("runwhen_operator.emulator")

API_PREFIX = "/api/"
CONTROL_PREFIX = "/_emulator"
UNMATCHED = "<unmatched>"
DIALECTS = ("platform", "documented")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Routes = Sequence[tuple[str, Mapping[str, Handler]]]


@dataclass
class EmulatorConfig:
    """Everything the command line can set."""

    host: str = "127.0.0.1"
    port: int = 8080
    dialect: str = "platform"
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
    record_exchanges: Path | None = None
    signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    @property
    def email(self) -> str:
        """The user's e-mail address: the user name if it is one, else ``<username>@example.com``."""
        return self.username if "@" in self.username else f"{self.username}@example.com"


@dataclass(frozen=True)
class Dialect:
    """One API dialect: its routes and how it words what the shared layers raise."""

    name: str
    routes: Routes
    public_templates: frozenset[str]
    """Templates answered without authentication."""
    fault_exempt: frozenset[str]
    """Templates faults never apply to."""
    both_slash_forms: bool
    """Every path answers with and without a trailing slash, and counters drop the slash."""
    not_found: Callable[[NotFound], str]
    """The ``detail`` of a 404 about a missing object."""
    http_error: Callable[[web.Request, web.HTTPException], web.StreamResponse]
    """The answer to a routing or protocol error (404, 405, 413, ...)."""
    state_view: Callable[[EmulatorState], Record]
    """The objects part of ``GET /_emulator/state``."""
    issue_view: Callable[[EmulatorState, Record], Record]
    """An issue as the API shows it (the control endpoints answer with it)."""


class EmulatorState:
    """The store plus everything around it: tokens, faults, counters, the state file, the recorder."""

    def __init__(self, config: EmulatorConfig) -> None:
        if config.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {config.dialect!r}")
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
            email=config.email,
        )
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.responses: Counter[str] = Counter()
        self.saved_generation = self.store.generation
        self.recorder = (
            ExchangeRecorder(config.record_exchanges, config.dialect)
            if config.record_exchanges is not None
            else None
        )

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

    def close(self) -> None:
        self.save()
        if self.recorder is not None:
            self.recorder.close()


STATE_KEY = web.AppKey("emulator_state", EmulatorState)
DIALECT_KEY = web.AppKey("emulator_dialect", Dialect)


def state_of(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


def dialect_of(request: web.Request) -> Dialect:
    return request.app[DIALECT_KEY]


# --- answers and bodies -------------------------------------------------------------------------


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def detail_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response({"detail": detail}, status, headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity); ValueError (or RecursionError) otherwise."""
    return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The JSON body, or Invalid with a ``non_field_errors`` message; an empty body is ``empty``
    (``{}`` when not given)."""
    raw = await request.read()
    if not raw.strip():
        return {} if empty is None else empty
    try:
        return parse_json(raw)
    except (ValueError, RecursionError) as exc:
        raise Invalid({NON_FIELD: [f"JSON parse error - {exc}"]}) from exc


def path_int(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise NotFound()
    return int(text)


# --- routes and URLs ----------------------------------------------------------------------------


def template_of(request: web.Request) -> str:
    """The route pattern of the request (also for a 405), or ``<unmatched>``. Without its trailing
    slash in a dialect that serves both slash forms."""
    cached = request.get("emulator.template")
    if isinstance(cached, str):
        return cached
    resource = request.match_info.route.resource
    canonical = None
    if resource is not None:
        canonical = resource.canonical
    else:
        path = request.rel_url.path
        for candidate in request.app.router.resources():
            if (
                isinstance(candidate, web.Resource)
                and candidate.get_info()
                and _path_matches(candidate, path)
            ):
                canonical = candidate.canonical
                break
    template = UNMATCHED
    if canonical is not None:
        template = canonical.rstrip("/") or "/" if dialect_of(request).both_slash_forms else canonical
    request["emulator.template"] = template
    return template


def _path_matches(resource: web.Resource, path: str) -> bool:
    info = resource.get_info()
    if "path" in info:
        return bool(info["path"] == path)
    pattern = info.get("pattern")
    return pattern is not None and pattern.fullmatch(path) is not None


def path_is_routed(app: web.Application, path: str) -> bool:
    """Whether some route of ``app`` matches ``path`` (with any method)."""
    return any(
        isinstance(resource, web.Resource) and resource.get_info() and _path_matches(resource, path)
        for resource in app.router.resources()
    )


def url_for(request: web.Request, **query: str | None) -> str:
    """The request URL with ``query`` set (a None value removes the parameter)."""
    params: MultiDict[str] = MultiDict(request.query)
    for key, value in query.items():
        params.popall(key, None)
        if value is not None:
            params[key] = value
    return str(request.url.with_query(params))


def add_routes(app: web.Application, routes: Routes, *, both_slash_forms: bool) -> None:
    """Register ``routes``; each template becomes its own resource (templates that differ only in a
    parameter's name serve different methods of one path)."""
    for template, methods in routes:
        if both_slash_forms:
            bare = template.rstrip("/")
            paths = [bare, bare + "/"]
        else:
            paths = [template]
        for path in paths:
            resource = app.router.add_resource(path)
            for method, handler in methods.items():
                resource.add_route(method, handler)
