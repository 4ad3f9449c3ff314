"""Credentials and the two ways the client authenticates.

- ``PasswordCredentials``: a JWT pair from ``POST /api/v3/token/``, renewed with
  ``POST /api/v3/token/refresh/`` shortly before the access token expires. The server rotates the
  refresh token on every refresh; the newest one is kept. A rejected refresh falls back to a login.
- ``TokenCredentials``: a personal access token sent as the Bearer token as is; nothing to renew.

Secrets are held as ``pydantic.SecretStr``; ``repr()``/``str()`` of credentials never show them, and
nothing here logs them or puts them into exception messages. Concurrent callers share one renewal
(a single in-flight task), so a burst of requests with an expired token makes one refresh call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from runwhen_operator.runwhen import errors

__all__ = [
    "LOGIN_PATH",
    "REFRESH_PATH",
    "Authenticator",
    "Credentials",
    "JwtAuthenticator",
    "PasswordCredentials",
    "StaticTokenAuthenticator",
    "TokenCredentials",
    "TokenPoster",
    "make_authenticator",
]

logger = logging.getLogger(__name__)

LOGIN_PATH = "/api/v3/token/"
REFRESH_PATH = "/api/v3/token/refresh/"

#: Renew the access token when less than this many seconds of it remain ...
REFRESH_MARGIN_SECONDS = 30.0
#: ... or less than this fraction of its lifetime, whichever is smaller (so that a token that lives
#: only a few seconds is not renewed on every request).
REFRESH_MARGIN_FRACTION = 0.1
#: Do not use a refresh token that expires within this many seconds; log in instead.
REFRESH_TOKEN_MARGIN_SECONDS = 5.0

_MASK = "**********"


class PasswordCredentials:
    """A RunWhen username and password (exchanged for a JWT pair)."""

    __slots__ = ("_password", "_username")

    def __init__(self, username: str, password: str | SecretStr) -> None:
        if not username:
            raise ValueError("username must not be empty")
        self._username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)

    @property
    def username(self) -> str:
        return self._username

    @property
    def password(self) -> SecretStr:
        return self._password

    def __repr__(self) -> str:
        return f"PasswordCredentials(username={self._username!r}, password='{_MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PasswordCredentials):
            return NotImplemented
        return (self._username, self._password) == (other._username, other._password)

    def __hash__(self) -> int:
        return hash((self._username, self._password))

    def __reduce__(self) -> Any:
        raise TypeError("credentials cannot be pickled")


class TokenCredentials:
    """A personal access token, used as the Bearer token as is."""

    __slots__ = ("_token",)

    def __init__(self, token: str | SecretStr) -> None:
        secret = token if isinstance(token, SecretStr) else SecretStr(token)
        if not secret.get_secret_value():
            raise ValueError("token must not be empty")
        self._token = secret

    @property
    def token(self) -> SecretStr:
        return self._token

    def __repr__(self) -> str:
        return f"TokenCredentials(token='{_MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenCredentials):
            return NotImplemented
        return self._token == other._token

    def __hash__(self) -> int:
        return hash(self._token)

    def __reduce__(self) -> Any:
        raise TypeError("credentials cannot be pickled")


Credentials = PasswordCredentials | TokenCredentials


class TokenPoster(Protocol):
    """Sends an unauthenticated POST to a token endpoint through the client's pipeline (rate limit,
    retries, metrics) and returns the 2xx response, or raises a ``RunWhenError``."""

    def __call__(
        self, path: str, *, json_body: Mapping[str, str] | None, form_body: Mapping[str, str] | None
    ) -> Awaitable[httpx.Response]: ...


class Authenticator(Protocol):
    async def authorization(self) -> str:
        """The ``Authorization`` header value to send now (logging in or refreshing if needed)."""
        ...

    async def handle_unauthorized(self, authorization: str) -> bool:
        """A request sent with ``authorization`` got a 401. Renew the credentials (once for all
        concurrent callers) and return True if the request is worth sending again."""
        ...

    async def verify(self) -> None:
        """Prove the credentials work with the server (raises ``AuthError`` if not) or, for tokens,
        do nothing (the client checks them with a request)."""
        ...

    def redact(self, text: str) -> str:
        """``text`` with every secret this authenticator knows replaced by a mask."""
        ...

    async def aclose(self) -> None: ...


class _SecretRegistry:
    """The secrets seen so far (bounded), to scrub them from text that leaves the client."""

    def __init__(self, *initial: SecretStr) -> None:
        self._values: deque[str] = deque(maxlen=16)
        for secret in initial:
            self.add(secret)

    def add(self, secret: SecretStr) -> None:
        value = secret.get_secret_value()
        if len(value) >= 4 and value not in self._values:
            self._values.append(value)

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, _MASK)
        return text


class StaticTokenAuthenticator:
    def __init__(self, credentials: TokenCredentials) -> None:
        self._credentials = credentials
        self._secrets = _SecretRegistry(credentials.token)

    async def authorization(self) -> str:
        return "Bearer " + self._credentials.token.get_secret_value()

    async def handle_unauthorized(self, authorization: str) -> bool:
        return False

    async def verify(self) -> None:
        return None

    def redact(self, text: str) -> str:
        return self._secrets.redact(text)

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticTokenAuthenticator()"


def _jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, read without verifying the signature (only to learn ``exp``/``iat``)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _lifetime(token: str, wall_at_request: float) -> float | None:
    """Seconds the token is valid for, counted from when it was requested.

    Uses ``exp - iat`` when both are present, so the local clock's offset from the server's does not
    matter; otherwise ``exp`` against the local wall clock.
    """
    claims = _jwt_claims(token)
    if claims is None:
        return None
    exp = _number(claims.get("exp"))
    if exp is None:
        return None
    iat = _number(claims.get("iat"))
    if iat is not None and exp > iat:
        return exp - iat
    return exp - wall_at_request


@dataclass(frozen=True, repr=False, eq=False)
class _Session:
    access: SecretStr
    refresh: SecretStr
    access_expires: float | None  # monotonic deadline
    access_margin: float
    refresh_expires: float | None  # monotonic deadline

    def access_fresh(self, now: float) -> bool:
        return self.access_expires is None or now < self.access_expires - self.access_margin

    def refresh_usable(self, now: float) -> bool:
        return self.refresh_expires is None or now < self.refresh_expires - REFRESH_TOKEN_MARGIN_SECONDS

    @property
    def header(self) -> str:
        return "Bearer " + self.access.get_secret_value()

    def __repr__(self) -> str:
        return "_Session(...)"


class JwtAuthenticator:
    """Username/password login with JWT access and (rotating) refresh tokens."""

    def __init__(
        self,
        credentials: PasswordCredentials,
        post_token: TokenPoster,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self._post_token = post_token
        self._clock = clock
        self._wall_clock = wall_clock
        self._session: _Session | None = None
        self._inflight: asyncio.Task[_Session] | None = None
        self._use_form = False
        self._secrets = _SecretRegistry(credentials.password)
        self.logins = 0
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"JwtAuthenticator(username={self._credentials.username!r})"

    def redact(self, text: str) -> str:
        return self._secrets.redact(text)

    # --- public --------------------------------------------------------------------------------

    async def authorization(self) -> str:
        session = self._session
        if session is None or not session.access_fresh(self._clock()):
            session = await self._single_flight(self._renew)
        return session.header

    async def handle_unauthorized(self, authorization: str) -> bool:
        session = self._session
        if session is not None and session.header != authorization:
            # Someone renewed the token after this request was sent: just send it again.
            return True
        if self._inflight is None:
            logger.info("RunWhen rejected the access token (401); renewing it")
        await self._single_flight(self._renew)
        return True

    async def verify(self) -> None:
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        await self._single_flight(self._login_session)

    async def aclose(self) -> None:
        task = self._inflight
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        self._inflight = None

    # --- renewal -------------------------------------------------------------------------------

    async def _single_flight(self, factory: Callable[[], Awaitable[_Session]]) -> _Session:
        task = self._inflight
        if task is None:
            task = asyncio.ensure_future(self._install(factory))
            self._inflight = task
            task.add_done_callback(self._renewal_done)
        # shield: a caller that is cancelled does not cancel the renewal the others wait for.
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and not (current is not None and current.cancelling()):
                # The renewal was cancelled under the caller (the client was closed or rebuilt,
                # e.g. its Secret rotated): an error the caller handles, not the end of its task.
                raise errors.TransportError(
                    "the connection's client was closed while it renewed its token"
                ) from None
            raise

    def _renewal_done(self, task: asyncio.Task[_Session]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here, so that an unawaited failure is not reported as lost

    async def _install(self, factory: Callable[[], Awaitable[_Session]]) -> _Session:
        session = await factory()
        self._session = session
        self._secrets.add(session.access)
        self._secrets.add(session.refresh)
        return session

    async def _renew(self) -> _Session:
        current = self._session
        if current is not None and current.refresh_usable(self._clock()):
            try:
                return await self._refresh_session(current)
            except (errors.AuthError, errors.InvalidRequestError) as exc:
                logger.info(
                    "RunWhen rejected the refresh token (status %s); logging in again", exc.status_code
                )
        return await self._login_session()

    async def _login_session(self) -> _Session:
        username = self._credentials.username
        # The token endpoint takes `username` or `email` with the password; RunWhen's own clients log
        # in with `email`, so a login that looks like one is sent as such.
        login_field = "email" if "@" in username else "username"
        body = {login_field: username, "password": self._credentials.password.get_secret_value()}
        try:
            session = await self._token_call(LOGIN_PATH, body)
        except errors.AuthError as exc:
            raise errors.AuthenticationError(
                self.redact(f"RunWhen login as {username!r} failed: {exc.message}"),
                status_code=exc.status_code,
            ) from None
        except errors.InvalidRequestError as exc:
            raise errors.AuthenticationError(
                self.redact(f"RunWhen login as {username!r} was rejected: {exc.message}"),
                status_code=exc.status_code,
            ) from None
        self.logins += 1
        logger.debug("logged in to RunWhen as %r", username)
        return session

    async def _refresh_session(self, current: _Session) -> _Session:
        body = {"refresh": current.refresh.get_secret_value()}
        session = await self._token_call(REFRESH_PATH, body, previous_refresh=current.refresh)
        self.refreshes += 1
        logger.debug("refreshed the RunWhen access token")
        return session

    async def _token_call(
        self, path: str, body: Mapping[str, str], *, previous_refresh: SecretStr | None = None
    ) -> _Session:
        wall = self._wall_clock()
        mono = self._clock()
        if self._use_form:
            response = await self._post_token(path, json_body=None, form_body=body)
        else:
            try:
                response = await self._post_token(path, json_body=body, form_body=None)
            except errors.RunWhenError as exc:
                if exc.status_code not in (400, 415):
                    raise
                logger.info(
                    "RunWhen token endpoint refused a JSON body (status %s); using form-urlencoded",
                    exc.status_code,
                )
                response = await self._post_token(path, json_body=None, form_body=body)
                self._use_form = True
        return self._parse_tokens(response, wall, mono, previous_refresh)

    def _parse_tokens(
        self,
        response: httpx.Response,
        wall: float,
        mono: float,
        previous_refresh: SecretStr | None,
    ) -> _Session:
        try:
            data = response.json()
        except ValueError:
            data = None
        access = data.get("access") if isinstance(data, dict) else None
        refresh = data.get("refresh") if isinstance(data, dict) else None
        if not isinstance(refresh, str) or not refresh:
            refresh = previous_refresh.get_secret_value() if previous_refresh is not None else None
        if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
            # Never quote the body: it may hold tokens.
            raise errors.UnexpectedResponseError(
                f"RunWhen token endpoint {response.request.url.path} answered {response.status_code} "
                "without the expected access and refresh tokens",
                status_code=response.status_code,
            )
        access_life = _lifetime(access, wall)
        refresh_life = _lifetime(refresh, wall)
        margin = 0.0
        if access_life is not None:
            margin = min(REFRESH_MARGIN_SECONDS, REFRESH_MARGIN_FRACTION * max(access_life, 0.0))
        return _Session(
            access=SecretStr(access),
            refresh=SecretStr(refresh),
            access_expires=None if access_life is None else mono + access_life,
            access_margin=margin,
            refresh_expires=None if refresh_life is None else mono + refresh_life,
        )


def make_authenticator(credentials: Credentials, post_token: TokenPoster) -> Authenticator:
    if isinstance(credentials, PasswordCredentials):
        return JwtAuthenticator(credentials, post_token)
    if isinstance(credentials, TokenCredentials):
        return StaticTokenAuthenticator(credentials)
    raise TypeError("credentials must be PasswordCredentials or TokenCredentials")
