"""Credentials and the two ways the client authenticates.

- ``PasswordCredentials``: a JWT pair from ``POST /api/v3/token/``, renewed with
  ``POST /api/v3/token/refresh/`` shortly before the access token expires. The server rotates the
  refresh token on every refresh; the newest one is kept. A rejected refresh falls back to a login.
- ``TokenCredentials``: a personal access token sent as the Bearer token as is; nothing to renew.

Secrets are held as ``pydantic.SecretStr``; ``repr()``/``str()`` of credentials never show them, and
nothing here logs them or puts them into exception messages. Concurrent callers share one renewal
(a single in-flight task), so a burst of requests with an expired token makes one refresh call.

Logins are bounded per authenticator (one per client, so per connection): at most
``max_logins_per_minute`` (a token bucket), and after a failed login or renewal (refused, an answer
without tokens, a token already expired or refused on its first use) none before a delay that starts
at 2 s and doubles up to 5 minutes. A login that is not allowed yet is not waited for: it raises
``AuthenticationError`` at once, without a request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from runwhen_operator.runwhen import errors, ratelimit

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
    "http_date",
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
#: Logins allowed per minute and client by default (a token bucket: this many at once, refilled
#: evenly over a minute). Refreshes are not counted; the failure delay below applies to both.
DEFAULT_MAX_LOGINS_PER_MINUTE = 6.0
#: After a failed login or renewal, no new one for this long, doubling with every failure in a row ...
LOGIN_FAILURE_DELAY_SECONDS = 2.0
#: ... up to this.
LOGIN_FAILURE_DELAY_CAP_SECONDS = 300.0
_MAX_QUOTED_FAILURE = 300

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
        self,
        path: str,
        *,
        json_body: Mapping[str, str] | None,
        form_body: Mapping[str, str] | None,
        before_attempt: Callable[[], None] | None = None,
    ) -> Awaitable[httpx.Response]:
        """``before_attempt`` is called before each HTTP attempt (retries too) and may raise to stop
        the call before that attempt is sent."""
        ...


class Authenticator(Protocol):
    async def authorization(self) -> str:
        """The ``Authorization`` header value to send now (logging in or refreshing if needed)."""
        ...

    async def handle_unauthorized(self, authorization: str) -> bool:
        """A request sent with ``authorization`` got a 401. Renew the credentials (once for all
        concurrent callers) and return True if the request is worth sending again."""
        ...

    def accepted(self, authorization: str) -> None:
        """A request sent with ``authorization`` got past authentication (a 2xx, or a 4xx about the
        request itself): the credentials work."""
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

    def accepted(self, authorization: str) -> None:
        return None

    async def verify(self) -> None:
        return None

    def redact(self, text: str) -> str:
        return self._secrets.redact(text)

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticTokenAuthenticator()"


def http_date(value: str) -> float | None:
    """An HTTP date (``Date``, ``Retry-After``) as a Unix time; None when it is not one."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


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
    matter (``exp`` not after ``iat``: expired when issued, a lifetime of 0 or less); otherwise
    ``exp`` against the local wall clock.
    """
    claims = _jwt_claims(token)
    if claims is None:
        return None
    exp = _number(claims.get("exp"))
    if exp is None:
        return None
    iat = _number(claims.get("iat"))
    if iat is not None:
        return exp - iat
    return exp - wall_at_request


class _NotAttemptedError(errors.AuthenticationError):
    """A login or renewal the limits do not allow yet; no request was sent. Not itself a failure."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=None, retryable=True)


def _is_login_failure(exc: errors.RunWhenError) -> bool:
    """Failures that count towards the growing delay: the server refused the login, or answered
    something that is not a usable token. Transport errors, 5xx and 429 are not (the request
    pipeline retries those, and the rate limit still bounds the logins)."""
    if isinstance(exc, _NotAttemptedError):
        return False
    return isinstance(exc, errors.AuthError | errors.InvalidRequestError | errors.UnexpectedResponseError)


def _expired_by_server_clock(token: str, response: httpx.Response) -> float | None:
    """How many seconds before the answer's ``Date`` the token's ``exp`` lies, if it does: expired
    by the server's own clock when it was handed out (the local clock plays no part)."""
    claims = _jwt_claims(token)
    exp = _number(claims.get("exp")) if claims is not None else None
    date = response.headers.get("Date")
    if exp is None or not date:
        return None
    server_now = http_date(date)
    if server_now is None:
        return None
    # ``Date`` has whole seconds, rounded down: a token it shows as expired is.
    behind = server_now - exp
    return behind if behind >= 0 else None


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
        max_logins_per_minute: float = DEFAULT_MAX_LOGINS_PER_MINUTE,
    ) -> None:
        if not max_logins_per_minute > 0 or math.isinf(max_logins_per_minute):
            raise ValueError("max_logins_per_minute must be a number greater than 0")
        self._credentials = credentials
        self._post_token = post_token
        self._clock = clock
        self._wall_clock = wall_clock
        self._session: _Session | None = None
        self._inflight: asyncio.Task[_Session] | None = None
        self._use_form = False
        self._secrets = _SecretRegistry(credentials.password)
        self._max_logins_per_minute = float(max_logins_per_minute)
        self._login_bucket = ratelimit.TokenBucket(
            self._max_logins_per_minute / 60.0,
            max(1, math.floor(self._max_logins_per_minute)),
            clock=self._now,
        )
        # Failed logins in a row. A login that succeeds sets them aside (``_held_failures``) until a
        # request succeeds with its token: a server whose fresh tokens are refused on their first
        # use keeps the delay growing instead of starting it again at every login.
        self._failures = 0
        self._held_failures = 0
        self._next_attempt = -math.inf  # monotonic time before which nothing is sent
        self._last_failure = ""
        self._unproven: str | None = None  # the header of a token no request has succeeded with
        self._rejected: str | None = None  # the header of a token the server refused (401)
        self.logins = 0
        self.refreshes = 0
        self.failed_logins = 0

    def __repr__(self) -> str:
        return f"JwtAuthenticator(username={self._credentials.username!r})"

    def redact(self, text: str) -> str:
        return self._secrets.redact(text)

    def _now(self) -> float:
        # ``_clock`` is read at each call: tests move it by hand after construction.
        return self._clock()

    # --- public --------------------------------------------------------------------------------

    async def authorization(self) -> str:
        session = self._session
        if session is None or session.header == self._rejected or not session.access_fresh(self._clock()):
            session = await self._single_flight(self._renew)
        return session.header

    async def handle_unauthorized(self, authorization: str) -> bool:
        session = self._session
        if session is not None and session.header != authorization:
            # Someone renewed the token after this request was sent: just send it again.
            return True
        if session is not None and self._rejected != authorization:
            self._rejected = authorization
            if authorization == self._unproven:
                # Refused on its first use: the token endpoint hands out tokens this server does
                # not take (expired by its clock, say). A failed login; no new one at once.
                error = errors.InvalidTokenError(
                    f"RunWhen refused the access token its token endpoint had just handed out to "
                    f"{self._credentials.username!r} (401 on its first use: expired by the server's "
                    "clock, or not valid for this API)",
                    status_code=401,
                )
                self._record_failure(error)
                raise error
        if self._inflight is None:
            logger.info("RunWhen rejected the access token (401); renewing it")
        await self._single_flight(self._renew)
        return True

    def accepted(self, authorization: str) -> None:
        if authorization == self._unproven:
            self._unproven = None
            self._held_failures = 0

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
        self._check_failure_delay()
        try:
            session = await factory()
        except errors.RunWhenError as exc:
            if _is_login_failure(exc):
                self._record_failure(exc)
            raise
        self._session = session
        self._secrets.add(session.access)
        self._secrets.add(session.refresh)
        # A usable token: the delay starts again from the beginning (see ``__init__``).
        self._held_failures += self._failures
        self._failures = 0
        self._unproven = session.header
        self._rejected = None
        return session

    # --- limits --------------------------------------------------------------------------------

    def _not_attempted(self, reason: str, wait: float) -> _NotAttemptedError:
        return _NotAttemptedError(
            self.redact(
                f"RunWhen login as {self._credentials.username!r} not attempted: {reason}; "
                f"next attempt in {max(0.0, wait):.0f}s"
            )
        )

    def _check_failure_delay(self) -> None:
        wait = self._next_attempt - self._clock()
        if wait > 0:
            streak = self._failures + self._held_failures
            raise self._not_attempted(
                f"the last one failed {streak} time(s) in a row ({self._last_failure})", wait
            )

    def _take_login(self) -> None:
        wait = self._login_bucket.try_take()
        if wait > 0:
            raise self._not_attempted(
                f"at most {self._max_logins_per_minute:g} logins per minute (--max-logins-per-minute)",
                wait,
            )

    def _record_failure(self, exc: errors.RunWhenError) -> None:
        self._failures += 1
        self.failed_logins += 1
        streak = self._failures + self._held_failures
        delay = min(LOGIN_FAILURE_DELAY_CAP_SECONDS, LOGIN_FAILURE_DELAY_SECONDS * 2.0 ** min(streak - 1, 30))
        self._next_attempt = self._clock() + delay
        message = self.redact(exc.message)
        if len(message) > _MAX_QUOTED_FAILURE:
            message = message[: _MAX_QUOTED_FAILURE - 3] + "..."
        self._last_failure = message
        logger.warning(
            "RunWhen login as %r failed (%d in a row); the next one not before %.0fs from now",
            self._credentials.username,
            streak,
            delay,
        )

    # --- renewal steps -------------------------------------------------------------------------

    async def _renew(self) -> _Session:
        current = self._session
        if current is not None and current.refresh_usable(self._clock()):
            try:
                return await self._refresh_session(current)
            except errors.InvalidTokenError:
                raise  # a failed renewal: not a reason to log in at once
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
        except (errors.InvalidTokenError, _NotAttemptedError):
            raise
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
        # Every POST to the login path takes a token of the login limit, its retries included.
        admit = self._take_login if path == LOGIN_PATH else None
        if self._use_form:
            response = await self._post_token(path, json_body=None, form_body=body, before_attempt=admit)
        else:
            try:
                response = await self._post_token(path, json_body=body, form_body=None, before_attempt=admit)
            except errors.RunWhenError as exc:
                if exc.status_code not in (400, 415):
                    raise
                logger.info(
                    "RunWhen token endpoint refused a JSON body (status %s); using form-urlencoded",
                    exc.status_code,
                )
                response = await self._post_token(path, json_body=None, form_body=body, before_attempt=admit)
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
        session = _Session(
            access=SecretStr(access),
            refresh=SecretStr(refresh),
            access_expires=None if access_life is None else mono + access_life,
            access_margin=margin,
            refresh_expires=None if refresh_life is None else mono + refresh_life,
        )
        where = f"{response.request.url.path} answered {response.status_code}"
        if access_life is not None and not session.access_fresh(mono):
            # Using it would mean renewing it before every request: a failed login instead.
            raise errors.InvalidTokenError(
                "RunWhen's token endpoint handed out an access token that is already expired "
                f"(valid for {access_life:.0f}s by its claims; {where}); not using it",
                status_code=response.status_code,
            )
        behind = _expired_by_server_clock(access, response)
        if behind is not None:
            raise errors.InvalidTokenError(
                "RunWhen's token endpoint handed out an access token that is already expired "
                f"(its exp is {behind:.0f}s before the server's own Date; {where}); not using it",
                status_code=response.status_code,
            )
        return session


def make_authenticator(
    credentials: Credentials,
    post_token: TokenPoster,
    *,
    max_logins_per_minute: float = DEFAULT_MAX_LOGINS_PER_MINUTE,
) -> Authenticator:
    if isinstance(credentials, PasswordCredentials):
        return JwtAuthenticator(credentials, post_token, max_logins_per_minute=max_logins_per_minute)
    if isinstance(credentials, TokenCredentials):
        return StaticTokenAuthenticator(credentials)
    raise TypeError("credentials must be PasswordCredentials or TokenCredentials")
