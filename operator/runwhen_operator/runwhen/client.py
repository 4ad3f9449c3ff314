"""The RunWhen API transport: the operator's only door to RunWhen.

One ``RunWhenClient`` holds one ``httpx.AsyncClient`` (one connection pool), one authenticator and
one token bucket. Every request goes through ``_send``, which applies the rate limit, sends the
``Authorization`` header, retries what is safe to retry, maps failures to ``errors`` and reports
each attempt to the metrics hooks. It knows no resource: the dialect modules (``documented``,
``platform``) hold the paths and payloads of each API shape and call ``call``/``request`` and the
two pagination styles here. See docs/client.md for the contract.

What one call may cost is bounded against a broken or hostile server: every body is read streamed
and refused past ``max_response_bytes``; one ``_send`` (attempts, backoff and body reads) ends within
``request_deadline``; a ``Retry-After`` counts for at most ``max_retry_after``; logins are limited by
the authenticator (``max_logins_per_minute`` and a growing delay after a failed one).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import quote

import certifi
import httpx
import pydantic

from runwhen_operator.runwhen import auth, errors, models, ratelimit

__all__ = ["OnRequest", "OnRetry", "RunWhenClient"]

logger = logging.getLogger(__name__)

#: ``on_request(method, path_template, status, duration_s, attempt)``; ``status`` is None when no
#: response arrived (transport error).
OnRequest = Callable[[str, str, int | None, float, int], None]
#: ``on_retry(method, path_template, reason)``; ``reason`` is the status code (``"503"``), ``"401"``
#: for a retry after renewing the credentials, or ``"transport:<ExceptionName>"``.
OnRetry = Callable[[str, str, str], None]

M = TypeVar("M", bound=pydantic.BaseModel)

API_PREFIX: Final = "/api/v3"

#: Methods whose repetition has the same effect as one request (for this API PATCH with the same body
#: is safe to repeat). POST is not: two POSTs create two objects.
_REPLAY_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
#: Server errors worth another try for replay-safe requests.
_RETRY_STATUSES: Final = frozenset({500, 502, 503, 504})
#: Transport errors raised before any byte of the request went out: safe to retry for every method.
_NOT_SENT_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
#: Transport errors that another try will not fix.
_FATAL_TRANSPORT_ERRORS: Final = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: The encodings the client asks for and decodes itself with a bounded output; any other a server
#: sends anyway is decoded by httpx, chunk by chunk, and still counted against the cap.
_ACCEPT_ENCODING: Final = "gzip, deflate"
#: Headers that describe the body as it came over the wire, not the decoded body handed on.
_WIRE_HEADERS: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_DECODE_STEP: Final = 256 * 1024

DEFAULT_MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
DEFAULT_REQUEST_DEADLINE: Final = 60.0
DEFAULT_MAX_RETRY_AFTER: Final = 300.0
_MAX_DETAIL = 300
_MAX_MESSAGE = 1000
_MAX_PAGES = 100_000


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verification always on: the system's CAs, certifi's, and the PEM ``ca_bundle`` if given."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    if ca_bundle and ca_bundle.strip():
        try:
            context.load_verify_locations(cadata=ca_bundle)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError("ca_bundle is not a valid PEM certificate bundle") from exc
    return context


def _normalise_base_url(base_url: str) -> httpx.URL:
    url = httpx.URL(base_url.strip())
    if url.scheme not in _DEFAULT_PORTS or not url.host:
        raise ValueError("base_url must be an absolute http(s) URL, e.g. https://papi.example.runwhen.com")
    if url.query or url.fragment or url.userinfo:
        raise ValueError("base_url must not have a query, fragment or user info")
    path = url.path.rstrip("/")
    # Accept a URL that already ends with the API prefix.
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return url.copy_with(path=path or "")


def _effective_port(url: httpx.URL) -> int | None:
    return url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme)


def _parse_retry_after(
    value: str | None, now: float | None = None, *, cap: float = DEFAULT_MAX_RETRY_AFTER
) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date, at most ``cap`` (a server
    asking for days is waited for ``cap`` seconds, then asked again)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = auth.http_date(value)
        if when is None:
            return None
        current = time.time() if now is None else now
        seconds = when - current
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return min(max(0.0, seconds), cap)


class _TooLargeError(Exception):
    """The decoded body outgrew the cap (internal; ``_read_body`` turns it into the public error)."""


class _BoundedDecoder:
    """Decodes an identity, gzip or deflate body into ``out`` and never produces more than the cap
    (plus one byte, to tell that it was exceeded): a compressed bomb costs at most the cap."""

    def __init__(self, encoding: str | None, out: bytearray, cap: int) -> None:
        self._encoding = encoding
        self._out = out
        self._cap = cap
        self._first = True
        self._zlib: Any = None
        if encoding == "gzip":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()

    def _append(self, data: bytes) -> None:
        if len(self._out) + len(data) > self._cap:
            raise _TooLargeError
        self._out += data

    def feed(self, chunk: bytes) -> None:
        if self._zlib is None:
            self._append(chunk)
            return
        first, self._first = self._first, False
        try:
            self._decompress(chunk)
        except zlib.error:
            if not (first and self._encoding == "deflate"):
                raise
            # Some servers send raw deflate without the zlib wrapper (httpx accepts both too).
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            self._decompress(chunk)

    def _decompress(self, data: bytes) -> None:
        while not self._zlib.eof:
            # Small steps, so that no decoded piece beside the body itself is large.
            step = min(self._cap - len(self._out) + 1, _DECODE_STEP)
            piece = self._zlib.decompress(data, step)
            self._append(piece)
            data = self._zlib.unconsumed_tail
            if not data and len(piece) < step:
                return
        # Bytes after the end of the compressed stream are dropped, never kept.

    def flush(self) -> None:
        if self._zlib is not None:
            self._append(self._zlib.flush())


def _past_authentication(status: int) -> bool:
    """Whether an answer shows that the server took the credentials: a 2xx, or a 4xx about the
    request itself (not 401/403, and not 429 or 5xx, which a proxy may answer before any check)."""
    return 200 <= status < 300 or (400 <= status < 500 and status not in (401, 403, 407, 429))


@dataclass
class _InFlight:
    """What ``_send`` is doing when its deadline expires."""

    attempt: int = 0
    started: float | None = None  # the monotonic start of the attempt on the wire, if one is


def _flatten_field_errors(data: Any, prefix: str = "") -> dict[str, list[str]]:
    """A DRF error body (``{"field": ["msg"], "nested": {"f": ["msg"]}, "list": [{}, {"f": [..]}]}``)
    as ``{"field": [...], "nested.f": [...], "list[1].f": [...]}``."""
    out: dict[str, list[str]] = {}
    fastapi = _fastapi_field_errors(data)
    if fastapi is not None:
        return fastapi

    def add(key: str, message: str) -> None:
        out.setdefault(key or "non_field_errors", []).append(message)

    def walk(value: Any, key: str) -> None:
        if isinstance(value, str):
            add(key, value)
        elif isinstance(value, Mapping):
            for sub, item in value.items():
                sub_key = str(sub)
                if sub_key == "detail" and not key:
                    sub_key = "non_field_errors"
                walk(item, f"{key}.{sub_key}" if key else sub_key)
        elif isinstance(value, list):
            if all(isinstance(item, str) for item in value):
                for item in value:
                    add(key, item)
            else:
                for index, item in enumerate(value):
                    if item in ({}, [], None):
                        continue
                    walk(item, f"{key}[{index}]")
        elif value is not None:
            add(key, str(value))

    walk(data, prefix)
    return out


_LOCATION_ROOTS: Final = frozenset({"body", "query", "path", "header"})


def _fastapi_field_errors(data: Any) -> dict[str, list[str]] | None:
    """A FastAPI validation body (``{"detail": [{"loc": ["body", "payload", "name"], "msg": "..."}]}``)
    as ``{"payload.name": ["..."]}``; None when the body has another shape."""
    if not isinstance(data, Mapping) or not isinstance(data.get("detail"), list):
        return None
    items = data["detail"]
    if not items or not all(isinstance(i, Mapping) and "msg" in i and "loc" in i for i in items):
        return None
    out: dict[str, list[str]] = {}
    for item in items:
        loc = [str(part) for part in item.get("loc") or [] if part is not None]
        if loc and loc[0] in _LOCATION_ROOTS:
            loc = loc[1:] or loc
        key = ""
        for part in loc:
            key += f"[{part}]" if part.isdigit() else (f".{part}" if key else part)
        out.setdefault(key or "non_field_errors", []).append(str(item.get("msg")))
    return out


def _summarise_field_errors(field_errors: Mapping[str, list[str]]) -> str:
    parts = []
    for field, messages in field_errors.items():
        text = " ".join(messages)
        parts.append(text if field == "non_field_errors" else f"{field}: {text}")
    return "; ".join(parts)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _validated(model: type[M], data: Any, what: str, status_code: int) -> M:
    """``data`` as a ``model``, or ``UnexpectedResponseError("<what> <Model> (N problem(s) at ...)")``
    naming only the locations: the input values may hold secrets (a webhook token)."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        locations = ", ".join(
            ".".join(str(part) for part in error["loc"]) or "(root)" for error in exc.errors()[:5]
        )
        raise errors.UnexpectedResponseError(
            f"{what} {model.__name__} ({exc.error_count()} problem(s) at {locations})",
            status_code=status_code,
        ) from None


class RunWhenClient:
    """An async transport to one RunWhen API server.

    ``base_url`` is the instance URL as users write it (``https://papi.example.runwhen.com``, with or
    without a trailing slash); the client appends ``/api/v3/``.
    """

    def __init__(
        self,
        base_url: str,
        credentials: auth.PasswordCredentials | auth.TokenCredentials,
        *,
        ca_bundle: str | None = None,
        timeout_seconds: float = 30.0,
        requests_per_second: float = 10.0,
        burst: int = 20,
        max_attempts: int = 5,
        backoff_base: float = 0.2,
        backoff_cap: float = 10.0,
        page_size: int = 100,
        on_request: OnRequest | None = None,
        on_retry: OnRetry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        request_deadline: float = DEFAULT_REQUEST_DEADLINE,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        max_logins_per_minute: float = auth.DEFAULT_MAX_LOGINS_PER_MINUTE,
    ) -> None:
        if not isinstance(credentials, auth.PasswordCredentials | auth.TokenCredentials):
            raise TypeError("credentials must be PasswordCredentials or TokenCredentials")
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be greater than 0")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if backoff_base < 0 or backoff_cap < 0:
            raise ValueError("backoff_base and backoff_cap must not be negative")
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int):
            raise TypeError("max_response_bytes must be an int")
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be at least 1")
        if not 0 < request_deadline < math.inf:
            raise ValueError("request_deadline must be a number of seconds greater than 0")
        if not 0 <= max_retry_after < math.inf:
            raise ValueError("max_retry_after must be a number of seconds, not negative")
        if not 0 < max_logins_per_minute < math.inf:
            raise ValueError("max_logins_per_minute must be greater than 0")
        self._base_url = _normalise_base_url(base_url)
        self._root = str(self._base_url).rstrip("/")
        self._api_path = self._base_url.path.rstrip("/") + "/api/"
        self._credentials = credentials
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._page_size = page_size
        self._on_request = on_request
        self._on_retry = on_retry
        self._max_response_bytes = max_response_bytes
        self._request_deadline = float(request_deadline)
        self._max_retry_after = float(max_retry_after)
        self._bucket = ratelimit.TokenBucket(requests_per_second, burst)
        self._random = random.Random()
        self._closed = False
        verify: ssl.SSLContext | bool = _ssl_context(ca_bundle) if self._base_url.scheme == "https" else True
        self._http = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            transport=transport,
            headers={
                "Accept": "application/json",
                "Accept-Encoding": _ACCEPT_ENCODING,
                "User-Agent": "runwhen-operator",
            },
        )
        self._auth = auth.make_authenticator(
            credentials, self._post_token, max_logins_per_minute=max_logins_per_minute
        )

    def __repr__(self) -> str:
        return f"RunWhenClient(base_url={str(self._base_url)!r}, credentials={self._credentials!r})"

    __str__ = __repr__

    @property
    def base_url(self) -> str:
        return str(self._base_url)

    @property
    def api_url(self) -> str:
        """The API root, ``<base_url>/api/v3/``."""
        return self._root + API_PREFIX + "/"

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> RunWhenClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool and stop any credential renewal in flight. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._auth.aclose()
        finally:
            await self._http.aclose()

    async def login(self) -> None:
        """Log in now with password credentials (raises ``errors.AuthError`` if refused); nothing for a
        token, which only an authenticated request can prove (the dialect probe makes one)."""
        if isinstance(self._credentials, auth.PasswordCredentials):
            await self._auth.verify()

    @property
    def uses_token(self) -> bool:
        return isinstance(self._credentials, auth.TokenCredentials)

    # --- plumbing ------------------------------------------------------------------------------

    def url(self, template: str, path_params: Mapping[str, str | int] | None = None) -> str:
        values: dict[str, str] = {}
        for key, value in (path_params or {}).items():
            text = str(value)
            if not text:
                raise ValueError(f"{key} must not be empty")
            values[key] = quote(text, safe="")
        return self._root + template.format(**values)

    async def call(
        self,
        model: type[M],
        method: str,
        template: str,
        path_params: Mapping[str, str | int],
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> M:
        response = await self.request(method, template, path_params, body=body, params=params)
        return self.parse(model, response)

    async def request(
        self,
        method: str,
        template: str,
        path_params: Mapping[str, str | int],
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        replay_safe: bool | None = None,
    ) -> httpx.Response:
        """``replay_safe``: whether the request may be sent again after a lost answer (default: by
        method; an upsert by name is a POST that is safe to repeat)."""
        url = self.url(template, path_params)
        return await self._send(
            method,
            template,
            url,
            params=params,
            json_body=None if body is None else dict(body),
            replay_safe=replay_safe,
        )

    def parse(self, model: type[M], response: httpx.Response) -> M:
        where = f"{response.request.method} {response.request.url.path}"
        try:
            data = response.json()
        except ValueError:
            raise errors.UnexpectedResponseError(
                f"{where} answered {response.status_code} with a body that is not JSON",
                status_code=response.status_code,
            ) from None
        return _validated(model, data, f"{where} answered an invalid", response.status_code)

    async def paginate(
        self,
        template: str,
        path_params: Mapping[str, str | int],
        model: type[M],
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[M]:
        query: dict[str, str] | None = {**(params or {}), "page-size": str(self._page_size)}
        url: str | None = self.url(template, path_params)
        seen: set[str] = set()
        while url is not None:
            if url in seen or len(seen) >= _MAX_PAGES:
                raise errors.UnexpectedResponseError(f"GET {template}: pagination does not end ({url})")
            seen.add(url)
            response = await self._send("GET", template, url, params=query)
            page = self.parse(models.Page, response)
            for item in page.results:
                yield _validated(
                    model, item, f"GET {template}: the server listed an invalid", response.status_code
                )
            if not page.next:
                return
            next_url = self._check_next(template, page.next)
            # The next link carries the filters, the page number and normally the page size (httpx
            # replaces a URL's whole query when given params, so add a missing page size to the URL).
            if "page-size" not in next_url.params:
                next_url = next_url.copy_add_param("page-size", str(self._page_size))
            url = str(next_url)
            query = None

    async def paginate_offset(
        self,
        template: str,
        path_params: Mapping[str, str | int],
        model: type[M],
        params: Mapping[str, str] | None = None,
        *,
        numbered: bool = False,
        max_page_size: int = 1000,
    ) -> AsyncIterator[M]:
        """Pages the client computes itself, never following the server's ``next`` link: ``limit``
        and ``offset`` (``numbered``: ``page`` from 1 and ``page-size``). Ends on a short or empty page,
        or once ``count`` items were read; a page that repeats none of the count's progress ends it
        too, so a server that ignores the offset cannot loop the client."""
        size = min(self._page_size, max_page_size)
        url = self.url(template, path_params)
        read = 0
        for index in range(_MAX_PAGES):
            query = dict(params or {})
            if numbered:
                query.update({"page": str(index + 1), "page-size": str(size)})
            else:
                query.update({"limit": str(size), "offset": str(read)})
            response = await self._send("GET", template, url, params=query)
            page = self.parse(models.Page, response)
            for item in page.results:
                yield _validated(
                    model, item, f"GET {template}: the server listed an invalid", response.status_code
                )
            read += len(page.results)
            # A server may cap the page size below what was asked: only an empty page, the count
            # reached, or (without a count) a short page ends the listing.
            if not page.results or (page.count is not None and read >= page.count):
                return
            if page.count is None and len(page.results) < size:
                return
        raise errors.UnexpectedResponseError(f"GET {template}: pagination does not end ({url})")

    def _check_next(self, template: str, link: str) -> httpx.URL:
        """Follow a ``next`` link only if it stays on the API of the same origin."""
        try:
            url = self._base_url.join(link)
        except httpx.InvalidURL:
            raise errors.UnexpectedResponseError(
                f"GET {template}: the next-page link is not a valid URL"
            ) from None
        same_origin = (
            url.scheme == self._base_url.scheme
            and url.host == self._base_url.host
            and _effective_port(url) == _effective_port(self._base_url)
        )
        if not same_origin or not url.path.startswith(self._api_path) or url.userinfo:
            raise errors.UnexpectedResponseError(
                f"GET {template}: refusing to follow a next-page link outside {self.api_url} "
                f"({url.scheme}://{url.host}:{_effective_port(url)}{url.path})"
            )
        return url

    async def _post_token(
        self,
        path: str,
        *,
        json_body: Mapping[str, str] | None,
        form_body: Mapping[str, str] | None,
        before_attempt: Callable[[], None] | None = None,
    ) -> httpx.Response:
        # Logging in and refreshing are safe to repeat: a replayed refresh at worst gets a 401 for a
        # refresh token the first attempt already rotated, and the authenticator then logs in.
        return await self._send(
            "POST",
            path,
            self._root + path,
            json_body=None if json_body is None else dict(json_body),
            form_body=None if form_body is None else dict(form_body),
            authenticated=False,
            replay_safe=True,
            before_attempt=before_attempt,
        )

    @staticmethod
    def _closed_error(method: str, url: str) -> errors.TransportError:
        """The connection's client was closed under this request (rebuilt after its Secret changed,
        or removed): nothing was sent; the caller's pass fails like a transport error and is tried
        again with the connection's new client."""
        return errors.TransportError(
            f"{method} {httpx.URL(url).path} not sent: the connection's client was closed"
        )

    async def _send(
        self,
        method: str,
        template: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        form_body: Mapping[str, str] | None = None,
        authenticated: bool = True,
        replay_safe: bool | None = None,
        before_attempt: Callable[[], None] | None = None,
    ) -> httpx.Response:
        if self._closed:
            raise self._closed_error(method, url)
        safe = method in _REPLAY_SAFE_METHODS if replay_safe is None else replay_safe
        state = _InFlight()
        deadline = asyncio.timeout(self._request_deadline)
        try:
            async with deadline:
                return await self._attempts(
                    method,
                    template,
                    url,
                    params=params,
                    json_body=json_body,
                    form_body=form_body,
                    authenticated=authenticated,
                    safe=safe,
                    state=state,
                    before_attempt=before_attempt,
                )
        except TimeoutError:
            if not deadline.expired():
                raise
            description = (
                f"{method} {httpx.URL(url).path}: no complete answer within "
                f"{self._request_deadline:g}s (--request-deadline)"
            )
            if state.started is None:
                raise errors.TransportError(description) from None
            self._report(method, template, None, state.started, state.attempt)
            if not safe:
                raise errors.WriteOutcomeUnknownError(
                    f"{description}; the request may have been applied: observe the remote state "
                    "before sending it again",
                ) from None
            raise errors.TransportError(description) from None

    async def _attempts(
        self,
        method: str,
        template: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        json_body: Any,
        form_body: Mapping[str, str] | None,
        authenticated: bool,
        safe: bool,
        state: _InFlight,
        before_attempt: Callable[[], None] | None,
    ) -> httpx.Response:
        attempt = 0
        budget = self._max_attempts
        renewed = False
        maybe_applied = False
        while True:
            attempt += 1
            headers: dict[str, str] = {}
            authorization = ""
            if authenticated:
                authorization = await self._auth.authorization()
                headers["Authorization"] = authorization
            if before_attempt is not None:
                before_attempt()
            await self._bucket.acquire()
            started = time.monotonic()
            if self._closed or self._http.is_closed:
                raise self._closed_error(method, url)
            state.attempt, state.started = attempt, started
            try:
                request = self._http.build_request(
                    method, url, params=params, json=json_body, data=form_body, headers=headers
                )
                response = await self._receive(request, method, safe)
            except httpx.TransportError as exc:
                state.started = None
                self._report(method, template, None, started, attempt)
                reason = f"transport:{type(exc).__name__}"
                description = self._redact(f"{method} {httpx.URL(url).path} failed: {reason} {exc}")
                if isinstance(exc, _FATAL_TRANSPORT_ERRORS):
                    raise errors.TransportError(description, retryable=False) from exc
                sent = not isinstance(exc, _NOT_SENT_ERRORS)
                if sent and not safe:
                    raise errors.WriteOutcomeUnknownError(
                        f"{description}; the request may have been applied: observe the remote state "
                        "before sending it again",
                    ) from exc
                maybe_applied = maybe_applied or sent
                if attempt < budget:
                    await self._backoff(method, template, attempt, reason, None)
                    continue
                raise errors.TransportError(f"{description} (after {attempt} attempt(s))") from exc
            except errors.RunWhenError as exc:
                # An answer that could not be read whole (too large, not decodable).
                state.started = None
                self._report(method, template, exc.status_code, started, attempt)
                raise
            state.started = None
            self._report(method, template, response.status_code, started, attempt)
            status = response.status_code
            if authenticated and _past_authentication(status):
                self._auth.accepted(authorization)
            if 200 <= status < 300:
                return response
            if status == 401 and authenticated and not renewed:
                renewed = True
                if await self._auth.handle_unauthorized(authorization):
                    budget += 1
                    self._notify_retry(method, template, "401")
                    continue
            if status == 404 and method == "DELETE" and maybe_applied:
                # An earlier attempt may have deleted it before its answer was lost: it is gone.
                logger.info("RunWhen DELETE %s: gone after a retried attempt; treating as deleted", template)
                return response
            if status == 429:
                retry_after = self._retry_after(response)
                if attempt < budget and (retry_after is None or retry_after <= self._backoff_cap):
                    await self._backoff(method, template, attempt, "429", retry_after)
                    continue
                raise self._error_for(response, retry_after=retry_after)
            if status >= 500:
                if not safe:
                    error = self._error_for(response)
                    raise errors.WriteOutcomeUnknownError(
                        f"{error.message}; the request may have been applied: observe the remote state "
                        "before sending it again",
                        status_code=status,
                    )
                if status in _RETRY_STATUSES:
                    maybe_applied = True
                    if attempt < budget:
                        await self._backoff(method, template, attempt, str(status), None)
                        continue
            raise self._error_for(response)

    async def _receive(self, request: httpx.Request, method: str, safe: bool) -> httpx.Response:
        """Send ``request`` and read its answer whole, refusing a body past ``max_response_bytes``."""
        response = await self._http.send(request, stream=True)
        try:
            data = await self._read_body(response)
        except _TooLargeError:
            where = f"{method} {request.url.path}"
            message = f"{where} answered more than {self._max_response_bytes} bytes (--max-response-bytes)"
            status = response.status_code
            if not safe and (200 <= status < 300 or status >= 500):
                # Answered (so maybe applied), but what it says cannot be read.
                raise errors.WriteOutcomeUnknownError(
                    f"{message}; the request may have been applied: observe the remote state before "
                    "sending it again",
                    status_code=status,
                ) from None
            raise errors.ResponseTooLargeError(
                message, status_code=status, limit=self._max_response_bytes
            ) from None
        except zlib.error:
            raise errors.UnexpectedResponseError(
                f"{method} {request.url.path} answered {response.status_code} with a body that does "
                f"not decode as {_truncate(response.headers.get('content-encoding', ''), 40)!r}",
                status_code=response.status_code,
            ) from None
        except httpx.DecodingError:
            raise errors.UnexpectedResponseError(
                f"{method} {request.url.path} answered {response.status_code} with a body that does "
                "not decode",
                status_code=response.status_code,
            ) from None
        finally:
            await response.aclose()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
        extensions = {k: v for k, v in response.extensions.items() if k in ("http_version", "reason_phrase")}
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=data,
            request=request,
            extensions=extensions,
        )

    async def _read_body(self, response: httpx.Response) -> bytes:
        cap = self._max_response_bytes
        if response.is_stream_consumed:
            # Built in memory and read already (an ``httpx.MockTransport`` answer): only the cap.
            if len(response.content) > cap:
                raise _TooLargeError
            return response.content
        encodings = [
            value.strip().lower()
            for value in response.headers.get_list("content-encoding", split_commas=True)
            if value.strip() and value.strip().lower() != "identity"
        ]
        if not encodings:
            length = response.headers.get("content-length", "").strip()
            if length.isdigit() and int(length) > cap:
                raise _TooLargeError
        out = bytearray()
        if len(encodings) <= 1 and set(encodings) <= {"gzip", "deflate"}:
            decoder = _BoundedDecoder(encodings[0] if encodings else None, out, cap)
            async for chunk in response.aiter_raw():
                decoder.feed(chunk)
            decoder.flush()
        else:
            async for chunk in response.aiter_bytes():
                if len(out) + len(chunk) > cap:
                    raise _TooLargeError
                out += chunk
        return bytes(out)

    def _retry_after(self, response: httpx.Response) -> float | None:
        return _parse_retry_after(response.headers.get("Retry-After"), cap=self._max_retry_after)

    async def _backoff(
        self, method: str, template: str, attempt: int, reason: str, retry_after: float | None
    ) -> None:
        """Full jitter: a uniform wait in [0, min(cap, base * 2^(attempt-1))]; at least ``Retry-After``
        when the server sent one."""
        ceiling = min(self._backoff_cap, self._backoff_base * (2 ** (attempt - 1)))
        delay = self._random.uniform(0.0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        logger.info(
            "RunWhen %s %s: %s; retrying in %.2fs (attempt %d)", method, template, reason, delay, attempt + 1
        )
        self._notify_retry(method, template, reason)
        if delay > 0:
            await asyncio.sleep(delay)

    def _report(self, method: str, template: str, status: int | None, started: float, attempt: int) -> None:
        duration = time.monotonic() - started
        logger.debug("RunWhen %s %s -> %s in %.3fs (attempt %d)", method, template, status, duration, attempt)
        if self._on_request is None:
            return
        try:
            self._on_request(method, template, status, duration, attempt)
        except Exception:
            logger.exception("the on_request hook failed")

    def _notify_retry(self, method: str, template: str, reason: str) -> None:
        if self._on_retry is None:
            return
        try:
            self._on_retry(method, template, reason)
        except Exception:
            logger.exception("the on_retry hook failed")

    def _redact(self, text: str) -> str:
        return _truncate(self._auth.redact(text), _MAX_MESSAGE)

    def _error_for(
        self, response: httpx.Response, *, retry_after: float | None = None
    ) -> errors.RunWhenError:
        status = response.status_code
        request = response.request
        where = f"{request.method} {request.url.path}"
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        detail = ""
        if isinstance(body, Mapping) and isinstance(body.get("detail"), str):
            detail = _truncate(body["detail"], _MAX_DETAIL)
        summary = detail or response.reason_phrase or "no detail"
        message = self._redact(f"{where} -> {status}: {summary}")
        if 300 <= status < 400:
            return errors.UnexpectedResponseError(
                self._redact(f"{where} -> {status}: redirected; the client does not follow redirects"),
                status_code=status,
            )
        if status in (400, 422):
            field_errors = _flatten_field_errors(body) if isinstance(body, Mapping | list) else {}
            field_errors = {
                self._auth.redact(k): [self._auth.redact(m) for m in v] for k, v in field_errors.items()
            }
            text = _summarise_field_errors(field_errors) or summary
            return errors.InvalidRequestError(
                self._redact(f"{where} -> {status}: {text}"), status_code=status, field_errors=field_errors
            )
        if status == 401:
            return errors.AuthenticationError(message, status_code=status)
        if status == 403:
            return errors.PermissionDeniedError(message, status_code=status)
        if status == 404:
            return errors.NotFoundError(message, status_code=status)
        if status == 409:
            return errors.ConflictError(message, status_code=status)
        if status == 429:
            if retry_after is None:
                retry_after = self._retry_after(response)
            return errors.RateLimitedError(message, status_code=status, retry_after=retry_after)
        if status >= 500:
            return errors.ServerError(message, status_code=status, retryable=status in _RETRY_STATUSES)
        return errors.UnexpectedResponseError(message, status_code=status)
