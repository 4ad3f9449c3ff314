"""A hostile reverse proxy in front of the RunWhen API emulator.

`HostileProxy(upstream_url)` is a real HTTP server on a loopback port, run by an aiohttp application
on its own asyncio loop in a background thread. It forwards every request (method, path, query,
headers, body) to the upstream and its answer back, and records each request it receives with a
monotonic timestamp, so a test can compute requests/min and logins/min (``POST /api/v3/token/``)
over any window.

Misbehaviours are switched on and off at runtime, several at once, each scoped by an optional path
regex (``re.search`` on the path, without the query):

- ``forbidden``: 403 ``{"detail": "You do not have permission to perform this action."}``;
- ``expired_token``: the login (and refresh) answer is forwarded with its ``access`` token replaced by
  an unsigned JWT whose ``exp`` is a minute in the past;
- ``garbage_token``: the login (and refresh) answer is 200 ``{"access": 42}`` or an HTML page, in turns;
- ``huge_body``: a GET is answered 200 with a 50 MiB JSON object, streamed from one shared 1 MiB chunk
  (with a Content-Length and chunked, in turns);
- ``trickle``: 200 and its headers at once, then one byte every 2 s until the client goes away (also
  after the misbehaviour is switched off: an answer already trickling goes on);
- ``retry_after``: 429 with ``Retry-After: 999999``;
- ``wrong_identity``: a POST creating a workspace is forwarded, and the answer's ``name`` is replaced
  by another name (option ``name``; default: the requested name with ``-imposter`` appended).

Which one answers when several match: trickle, retry_after, forbidden, huge_body (they replace the
answer, the request never reaches the upstream), then the ones rewriting a forwarded answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

__all__ = [
    "FORBIDDEN_DETAIL",
    "HUGE_BODY_BYTES",
    "LOGIN_PATH",
    "MISBEHAVIOURS",
    "Hit",
    "HostileProxy",
    "expired_jwt",
]

MISBEHAVIOURS = (
    "forbidden",
    "expired_token",
    "garbage_token",
    "huge_body",
    "trickle",
    "retry_after",
    "wrong_identity",
)
#: Misbehaviours that answer instead of the upstream, in the order they are tried.
_REPLACING = ("trickle", "retry_after", "forbidden", "huge_body")
LOGIN_PATH = "/api/v3/token/"
FORBIDDEN_DETAIL = "You do not have permission to perform this action."
HUGE_BODY_BYTES = 50 * 1024 * 1024
RETRY_AFTER = "999999"
TRICKLE_INTERVAL = 2.0
_MIB = 1024 * 1024
_TOKEN_PATHS = re.compile(r"^/api/v3/token/(refresh/)?$")
_WORKSPACE_CREATE = re.compile(r"^/api/v3/workspaces/?$")
_LOGIN = re.compile(r"^/api/v3/token/?$")
# Not forwarded either way: connection-level headers, and what aiohttp sets itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
        "accept-encoding",
    }
)
_GARBAGE_HTML = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head>"
    b"<body><h1>Welcome back</h1><p>Your session has moved.</p></body></html>"
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: Any) -> dict[str, Any]:
    """The payload of a JWT, unverified; empty when it is not one."""
    if not isinstance(token, str) or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def expired_jwt(template: Any = None, now: float | None = None) -> str:
    """header.payload.signature with ``exp`` = now - 60 and ``iat`` = now - 120 (the other claims of
    ``template``, a JWT, kept); the signature is random bytes."""
    now = time.time() if now is None else now
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {**_claims(template), "exp": int(now) - 60, "iat": int(now) - 120}
    return ".".join(
        (
            _b64url(json.dumps(header, separators=(",", ":")).encode()),
            _b64url(json.dumps(payload, separators=(",", ":")).encode()),
            _b64url(secrets.token_bytes(32)),
        )
    )


@dataclass
class Hit:
    """One request the proxy received."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str
    query: str
    status: int | None = None  # None while the answer is being sent (or never completed)
    misbehaviour: str | None = None
    sent_bytes: int = 0  # of a streamed answer (huge_body, trickle)
    done_at: float | None = None

    @property
    def login(self) -> bool:
        return self.method == "POST" and bool(_LOGIN.match(self.path))


@dataclass
class _Switch:
    name: str
    pattern: re.Pattern[str] | None
    options: dict[str, Any] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        if self.pattern is not None and not self.pattern.search(path):
            return False
        if self.name in ("expired_token", "garbage_token"):
            return method == "POST" and (self.pattern is not None or bool(_TOKEN_PATHS.match(path)))
        if self.name == "huge_body":
            return method == "GET"
        if self.name == "wrong_identity":
            return method == "POST" and (self.pattern is not None or bool(_WORKSPACE_CREATE.match(path)))
        return True


class HostileProxy:
    """A reverse proxy to ``upstream`` (``http://127.0.0.1:PORT``) with switchable misbehaviours."""

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        huge_body_bytes: int = HUGE_BODY_BYTES,
        trickle_interval: float = TRICKLE_INTERVAL,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = port
        self.huge_body_bytes = huge_body_bytes
        self.trickle_interval = trickle_interval
        self.url = ""
        self._lock = threading.Lock()
        self._switches: dict[str, _Switch] = {}
        self._hits: list[Hit] = []
        self._turns = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing: asyncio.Event | None = None
        self._chunk = b"a" * _MIB
        self._streams = 0  # answers being streamed right now

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> HostileProxy:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="hostile-proxy", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout=15)
        return self

    async def _start(self) -> None:
        self._closing = asyncio.Event()
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application(client_max_size=16 * _MIB)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        self.url = f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()
        self._loop = None
        self._thread = None

    async def _stop(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __enter__(self) -> HostileProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"HostileProxy(url={self.url!r}, upstream={self.upstream!r}, on={sorted(self.active())})"

    # --- switches -------------------------------------------------------------------------------

    def switch_on(self, misbehaviour: str, /, path: str | None = None, **options: Any) -> None:
        """Turn ``misbehaviour`` on for paths matching ``path`` (a regex; None: its default scope).
        Options: ``name`` (wrong_identity), ``size`` (huge_body, bytes)."""
        if misbehaviour not in MISBEHAVIOURS:
            raise ValueError(f"unknown misbehaviour {misbehaviour!r}; one of {MISBEHAVIOURS}")
        switch = _Switch(misbehaviour, re.compile(path) if path is not None else None, dict(options))
        with self._lock:
            self._switches[misbehaviour] = switch

    def switch_off(self, *names: str) -> None:
        """Turn ``names`` off (all of them without names)."""
        with self._lock:
            if not names:
                self._switches.clear()
            for name in names:
                self._switches.pop(name, None)

    @contextlib.contextmanager
    def misbehaving(self, misbehaviour: str, /, path: str | None = None, **options: Any) -> Iterator[None]:
        self.switch_on(misbehaviour, path, **options)
        try:
            yield
        finally:
            self.switch_off(misbehaviour)

    def active(self) -> dict[str, str | None]:
        with self._lock:
            return {n: (s.pattern.pattern if s.pattern else None) for n, s in self._switches.items()}

    def _matching(self, method: str, path: str) -> dict[str, _Switch]:
        with self._lock:
            return {n: s for n, s in self._switches.items() if s.matches(method, path)}

    # --- counters -------------------------------------------------------------------------------

    def hits(self, start: float | None = None, end: float | None = None) -> list[Hit]:
        """Requests received in [start, end) (monotonic seconds; None: unbounded)."""
        with self._lock:
            hits = list(self._hits)
        return [h for h in hits if (start is None or h.at >= start) and (end is None or h.at < end)]

    def logins(self, start: float | None = None, end: float | None = None) -> list[Hit]:
        return [h for h in self.hits(start, end) if h.login]

    def per_minute(self, start: float, end: float, *, logins: bool = False) -> float:
        """Requests (or logins) per minute over [start, end)."""
        hits = self.logins(start, end) if logins else self.hits(start, end)
        return len(hits) * 60.0 / max(end - start, 1e-9)

    def max_in_window(
        self,
        window: float = 60.0,
        *,
        logins: bool = True,
        start: float | None = None,
        end: float | None = None,
    ) -> int:
        """The most requests (or logins) within any ``window`` seconds that end at one received in
        [start, end): for each, how many arrived in the ``window`` seconds up to and including it."""
        times = [h.at for h in (self.logins() if logins else self.hits())]
        best, first = 0, 0
        for last, at in enumerate(times):
            while at - times[first] >= window:
                first += 1
            if (start is None or at >= start) and (end is None or at < end):
                best = max(best, last - first + 1)
        return best

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()

    @property
    def streams(self) -> int:
        """Answers being streamed now (huge bodies, trickles)."""
        return self._streams

    # --- the handler ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        hit = Hit(time.monotonic(), request.method, request.path, request.query_string)
        with self._lock:
            self._hits.append(hit)
        try:
            response = await self._answer(request, hit)
            if hit.status is None:
                hit.status = response.status
            return response
        finally:
            hit.done_at = time.monotonic()

    async def _answer(self, request: web.Request, hit: Hit) -> web.StreamResponse:
        switches = self._matching(request.method, request.path)
        replacing = {
            "trickle": self._trickle,
            "retry_after": self._retry_after,
            "forbidden": self._forbidden,
            "huge_body": self._huge_body,
        }
        for name in _REPLACING:
            if name in switches:
                hit.misbehaviour = name
                return await replacing[name](request, hit, switches[name])
        body = await request.read()
        try:
            status, headers, payload = await self._forward(request, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.json_response({"detail": f"hostile proxy: upstream failed: {exc}"}, status=502)
        rewriting = {
            "expired_token": self._expired_token,
            "garbage_token": self._garbage_token,
            "wrong_identity": self._wrong_identity,
        }
        for name, rewrite in rewriting.items():
            if name in switches and 200 <= status < 300:
                rewritten = rewrite(payload, switches[name], body)
                if rewritten is not None:
                    hit.misbehaviour = name
                    payload, content_type = rewritten
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                    headers["Content-Type"] = content_type
                    break
        return web.Response(status=status, headers=headers, body=payload)

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        url = URL(self.upstream + request.rel_url.raw_path_qs, encoded=True)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
            answer = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            return upstream.status, answer, payload

    # --- answers instead of the upstream's ----------------------------------------------------------

    async def _forbidden(self, request: web.Request, hit: Hit, switch: _Switch) -> web.StreamResponse:
        await request.read()
        return web.json_response({"detail": FORBIDDEN_DETAIL}, status=403)

    async def _retry_after(self, request: web.Request, hit: Hit, switch: _Switch) -> web.StreamResponse:
        await request.read()
        body = {"detail": f"Request was throttled. Expected available in {RETRY_AFTER} seconds."}
        return web.json_response(body, status=429, headers={"Retry-After": RETRY_AFTER})

    async def _huge_body(self, request: web.Request, hit: Hit, switch: _Switch) -> web.StreamResponse:
        size = int(switch.options.get("size", self.huge_body_bytes))
        head, tail = b'{"padding": "', b'"}'
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        if next(self._turns) % 2 == 0:
            response.content_length = len(head) + size + len(tail)
        else:
            response.enable_chunked_encoding()
        hit.status = 200
        self._streams += 1
        try:
            await response.prepare(request)
            await response.write(head)
            hit.sent_bytes += len(head)
            left = size
            while left > 0:
                if self._closing is not None and self._closing.is_set():
                    return response
                piece = self._chunk if left >= len(self._chunk) else self._chunk[:left]
                await response.write(piece)
                hit.sent_bytes += len(piece)
                left -= len(piece)
            await response.write(tail)
            hit.sent_bytes += len(tail)
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientError):
            pass  # the client gave up
        finally:
            self._streams -= 1
        return response

    async def _trickle(self, request: web.Request, hit: Hit, switch: _Switch) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        hit.status = 200
        self._streams += 1
        try:
            await response.prepare(request)
            assert self._closing is not None
            while not self._closing.is_set():
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                await response.write(b" ")
                hit.sent_bytes += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.trickle_interval)
        except (ConnectionError, aiohttp.ClientError):
            pass  # the client gave up
        finally:
            self._streams -= 1
        return response

    # --- rewritten answers --------------------------------------------------------------------------

    @staticmethod
    def _json(payload: bytes) -> Any:
        try:
            return json.loads(payload)
        except ValueError:
            return None

    def _expired_token(
        self, payload: bytes, switch: _Switch, request_body: bytes
    ) -> tuple[bytes, str] | None:
        data = self._json(payload)
        if not isinstance(data, dict) or "access" not in data:
            return None
        data["access"] = expired_jwt(data["access"])
        return json.dumps(data).encode(), "application/json"

    def _garbage_token(
        self, payload: bytes, switch: _Switch, request_body: bytes
    ) -> tuple[bytes, str] | None:
        if next(self._turns) % 2 == 0:
            return json.dumps({"access": 42}).encode(), "application/json"
        return _GARBAGE_HTML, "text/html; charset=utf-8"

    def _wrong_identity(
        self, payload: bytes, switch: _Switch, request_body: bytes
    ) -> tuple[bytes, str] | None:
        data = self._json(payload)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        asked = self._json(request_body)
        requested = asked.get("name") if isinstance(asked, dict) else None
        other = switch.options.get("name") or f"{requested or data['name']}-imposter"
        if other == data["name"]:
            other = f"{other}-imposter"
        data["name"] = other
        return json.dumps(data).encode(), "application/json"
