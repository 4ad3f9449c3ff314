"""What one client may cost against a broken or hostile RunWhen: response size, the deadline of a
request, ``Retry-After``, and logins (rate, growing delay after failures, unusable tokens).

Size and deadline run against a real HTTP server on a loopback socket (``RawServer``): a 50 MB
answer and an answer trickling one byte every 2 s need real streaming. Logins run on a scripted
transport with a clock the test moves, so minutes of delays take no time.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from runwhen_operator import cli
from runwhen_operator.runwhen import auth, client, errors
from tests.client.mockapi import b64, json_response, make_client, make_jwt, token_pair, workspace
from tests.client.test_mock_auth import FakeClock, with_clock

MIB = 1024 * 1024
HUGE = 50 * MIB
CREDS = auth.PasswordCredentials("admin", "pw-Limits-Secret-42")
LOGIN = "/api/v3/token/"


# --- a real HTTP/1.1 server ---------------------------------------------------------------------

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Route = Callable[[Reader, Writer], Awaitable[None]]


class RawServer:
    """An HTTP/1.1 server on 127.0.0.1 whose answers are written by ``route(reader, writer)`` byte
    by byte, after it read the request; one request per connection."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.url = ""
        self.requests: list[tuple[str, str]] = []
        self.open_answers = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if hasattr(self._server, "close_clients"):
            self._server.close_clients()

    async def _serve(self, reader: Reader, writer: Writer) -> None:
        self.open_answers += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            self.requests.append((method, path.split("?", 1)[0]))
            await self.route(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self.open_answers -= 1
            writer.close()


def head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def write_chunked(writer: Writer, pieces: AsyncIterator[bytes]) -> None:
    async for piece in pieces:
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def padding(total: int, chunk: bytes = b"a" * (64 * 1024)) -> AsyncIterator[bytes]:
    """``{"padding": "aaa..."}`` of ``total`` bytes of padding, from one shared chunk."""
    yield b'{"padding": "'
    left = total
    while left > 0:
        piece = chunk if left >= len(chunk) else chunk[:left]
        left -= len(piece)
        yield piece
    yield b'"}'


def gzip_bomb(decoded: int) -> bytes:
    """A gzip member of ``decoded`` zero bytes (about a thousandth of that on the wire)."""
    encoder = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(MIB)
    parts = [encoder.compress(zeros) for _ in range(decoded // MIB)]
    parts.append(encoder.flush())
    return b"".join(parts)


def token_client(url: str, **kw: Any) -> client.RunWhenClient:
    return client.RunWhenClient(url, auth.TokenCredentials("pat-limits-0123"), backoff_base=0.01, **kw)


async def measured(call: Awaitable[Any]) -> tuple[BaseException | Any, float]:
    """The call's result or error, and the peak of Python memory allocated while it ran (bytes)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        try:
            result: BaseException | Any = await call
        except Exception as exc:
            result = exc
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    return result, peak


# --- response size -----------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked", "gzip-bomb"])
async def test_a_50mb_answer_is_refused_with_memory_near_the_cap(framing: str) -> None:
    bomb = gzip_bomb(HUGE) if framing == "gzip-bomb" else b""

    async def route(reader: Reader, writer: Writer) -> None:
        if framing == "content-length":
            writer.write(head(Content_Length=str(HUGE + 15)))
            async for piece in padding(HUGE):
                writer.write(piece)
                await writer.drain()
        elif framing == "chunked":
            writer.write(head(Transfer_Encoding="chunked"))
            await write_chunked(writer, padding(HUGE))
        else:
            writer.write(head(Content_Encoding="gzip", Content_Length=str(len(bomb))))
            writer.write(bomb)
            await writer.drain()

    cap = 8 * MIB  # the default
    async with RawServer(route) as server, token_client(server.url) as rw:
        error, peak = await measured(rw.request("GET", "/api/v3/workspaces/", {}))
    print(f"{framing}: peak {peak / MIB:.1f} MiB for a {HUGE // MIB} MiB answer (cap {cap // MIB} MiB)")
    if framing == "content-length":
        assert peak < 2 * MIB  # refused on the header, before any of the body
    else:
        assert peak < cap + 4 * MIB  # never more than the cap buffered
    assert isinstance(error, errors.ResponseTooLargeError), error
    assert isinstance(error, errors.UnexpectedResponseError)
    assert error.retryable is True
    assert error.status_code == 200
    assert str(error) == f"GET /api/v3/workspaces/ answered more than {cap} bytes (--max-response-bytes)"
    assert server.requests == [("GET", "/api/v3/workspaces/")]  # not retried within the call


async def test_the_cap_is_a_constructor_keyword_and_a_small_one_bites_early() -> None:
    async def route(reader: Reader, writer: Writer) -> None:
        writer.write(head(Transfer_Encoding="chunked"))
        await write_chunked(writer, padding(HUGE))

    async with RawServer(route) as server, token_client(server.url, max_response_bytes=MIB) as rw:
        error, peak = await measured(rw.request("GET", "/api/v3/workspaces/", {}))
    assert isinstance(error, errors.ResponseTooLargeError)
    assert error.limit == MIB
    assert f"more than {MIB} bytes" in str(error)
    print(f"cap 1 MiB: peak {peak / MIB:.1f} MiB for a 50 MiB answer")
    assert peak < 4 * MIB


async def test_an_answer_under_the_cap_reads_like_before() -> None:
    body = json.dumps(workspace("zipped", displayName="Z" * 5000)).encode()
    zipped = gzip.compress(body)

    async def route(reader: Reader, writer: Writer) -> None:
        writer.write(head(Content_Encoding="gzip", Content_Length=str(len(zipped)), X_Marker="kept"))
        writer.write(zipped)
        await writer.drain()

    async with RawServer(route) as server, token_client(server.url, max_response_bytes=len(body)) as rw:
        response = await rw.request("GET", "/api/v3/workspaces/{workspace_name}", {"workspace_name": "z"})
    assert response.status_code == 200
    assert response.reason_phrase == "OK"
    assert response.json()["name"] == "zipped"
    assert response.text == body.decode()
    assert response.headers["x-marker"] == "kept"
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(body))
    assert (response.request.method, response.request.url.path) == ("GET", "/api/v3/workspaces/z")


async def test_an_error_answer_past_the_cap_is_refused_too_and_a_post_is_outcome_unknown() -> None:
    async def route(reader: Reader, writer: Writer) -> None:
        writer.write(head(Transfer_Encoding="chunked"))
        await write_chunked(writer, padding(4 * MIB))

    async with RawServer(route) as server, token_client(server.url, max_response_bytes=MIB) as rw:
        with pytest.raises(errors.WriteOutcomeUnknownError) as info:
            await rw.request("POST", "/api/v3/workspaces/", {}, body={"name": "x"})
    # A 2xx to a POST was applied; what it answered cannot be read: observe before sending again.
    assert f"answered more than {MIB} bytes (--max-response-bytes)" in str(info.value)
    assert "observe the remote state" in str(info.value)


async def test_a_token_endpoint_answering_too_much_is_a_failed_login() -> None:
    async def route(reader: Reader, writer: Writer) -> None:
        writer.write(head(Transfer_Encoding="chunked"))
        await write_chunked(writer, padding(HUGE))

    async with RawServer(route) as server:
        rw = client.RunWhenClient(server.url, CREDS, max_response_bytes=MIB)
        async with rw:
            with pytest.raises(errors.ResponseTooLargeError):
                await rw.login()
            with pytest.raises(errors.AuthenticationError, match="failed 1 time"):
                await rw.login()
    assert server.requests == [("POST", LOGIN)]


# --- the deadline of one request ---------------------------------------------------------------


async def trickle(reader: Reader, writer: Writer) -> None:
    writer.write(head(Transfer_Encoding="chunked"))
    await writer.drain()
    while True:
        writer.write(b"1\r\n \r\n")
        await writer.drain()
        try:
            if not await asyncio.wait_for(reader.read(1), 2.0):
                return  # the client closed the connection
        except TimeoutError:
            pass


@pytest.mark.parametrize(
    ("method", "expected"), [("GET", errors.TransportError), ("POST", errors.WriteOutcomeUnknownError)]
)
async def test_a_trickling_answer_is_released_within_the_deadline(
    method: str, expected: type[errors.RunWhenError]
) -> None:
    deadline = 3.0
    seen: list[tuple[str, str, int | None, int]] = []
    async with RawServer(trickle) as server:
        rw = token_client(
            server.url, request_deadline=deadline, on_request=lambda m, t, s, d, a: seen.append((m, t, s, a))
        )
        async with rw:
            started = time.monotonic()
            with pytest.raises(expected) as info:
                # The outer bound only keeps a regression from hanging the suite.
                await asyncio.wait_for(rw.request(method, "/api/v3/workspaces/", {}), deadline + 30)
            held = time.monotonic() - started
        await asyncio.sleep(0.1)
        assert server.open_answers == 0  # the connection was closed, not left trickling
    print(f"{method}: a trickling answer released after {held:.2f}s (deadline {deadline:g}s)")
    assert deadline <= held < deadline + 2.0
    assert f"{method} /api/v3/workspaces/: no complete answer within 3s (--request-deadline)" in str(
        info.value
    )
    assert seen == [(method, "/api/v3/workspaces/", None, 1)]  # reported like a transport error
    assert len(server.requests) == 1


async def test_the_deadline_covers_retries_and_backoff() -> None:
    answers = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal answers
        answers += 1
        return json_response(503, {"detail": "busy"})

    rw, _ = make_client(handler, request_deadline=0.5, backoff_base=0.2, backoff_cap=0.2, max_attempts=100)
    async with rw:
        started = time.monotonic()
        with pytest.raises(errors.TransportError, match=r"no complete answer within 0.5s"):
            await rw.get_workspace("ws")
        held = time.monotonic() - started
    assert held < 1.0
    assert 2 <= answers < 100


# --- Retry-After --------------------------------------------------------------------------------


async def test_retry_after_999999_is_capped() -> None:
    rw, rec = make_client(
        lambda r: json_response(429, {"detail": "later"}, headers={"Retry-After": "999999"})
    )
    async with rw:
        with pytest.raises(errors.RateLimitedError) as info:
            await rw.get_workspace("ws")
    assert info.value.retry_after == 300.0  # the default cap: five minutes
    assert len(rec.requests) == 1

    when = email.utils.formatdate(time.time() + 86400 * 30, usegmt=True)
    rw, _ = make_client(
        lambda r: json_response(429, {"detail": "later"}, headers={"Retry-After": when}), max_retry_after=30.0
    )
    async with rw:
        with pytest.raises(errors.RateLimitedError) as info:
            await rw.get_workspace("ws")
    assert info.value.retry_after == 30.0


async def test_a_capped_retry_after_is_waited_for_within_the_call() -> None:
    answers = iter(
        [
            json_response(429, {"detail": "x"}, headers={"Retry-After": "999999"}),
            json_response(200, workspace()),
        ]
    )
    rw, rec = make_client(lambda r: next(answers), max_retry_after=0.3, backoff_cap=1.0)
    async with rw:
        started = time.monotonic()
        assert (await rw.get_workspace("ws1")).name == "ws1"
        waited = time.monotonic() - started
    assert 0.3 <= waited < 1.0
    assert len(rec.requests) == 2


def test_the_parser_caps_what_it_parses() -> None:
    assert client._parse_retry_after("999999") == 300.0
    assert client._parse_retry_after("999999", cap=5.0) == 5.0
    assert client._parse_retry_after("12", cap=5.0) == 5.0
    assert client._parse_retry_after("3", cap=5.0) == 3.0
    assert client._parse_retry_after("nope", cap=5.0) is None


# --- logins -------------------------------------------------------------------------------------


def jwt(claims: dict[str, Any]) -> str:
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims)}.c2lnbmF0dXJl"


def expired_access(kind: str) -> str:
    now = time.time()
    if kind == "exp-before-iat":
        return make_jwt(-60.0)
    if kind == "exp-equals-iat":
        return make_jwt(0.0)
    if kind == "exp-in-the-past-no-iat":
        return jwt({"exp": now - 60, "type": "access"})
    # exp a minute in the past, iat two: only the server's clock (its Date) tells.
    return jwt({"exp": int(now) - 60, "iat": int(now) - 120, "type": "access"})


class TokenServer:
    """A token endpoint handing out ``access()`` tokens; API calls succeed only with a token it
    counts as good."""

    def __init__(
        self, access: Callable[[], Any], *, good: bool = False, date: bool = False, raw: bytes | None = None
    ) -> None:
        self.access = access
        self.trusted = good
        self.date = date
        self.raw = raw
        self.logins = 0
        self.refreshes = 0
        self.api_calls = 0
        self.good: set[str] = set()
        self.refuse_password = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == LOGIN:
            self.logins += 1
            if self.refuse_password:
                return json_response(401, {"detail": "No active account found with the given credentials"})
            if self.raw is not None:
                return httpx.Response(200, content=self.raw, headers={"Content-Type": "text/html"})
            access = self.access()
            if self.trusted:
                self.good.add(access)
            headers = {"Date": email.utils.formatdate(time.time(), usegmt=True)} if self.date else {}
            return json_response(
                200, {"access": access, "refresh": make_jwt(3600.0, kind="refresh")}, headers=headers
            )
        if request.url.path == "/api/v3/token/refresh/":
            self.refreshes += 1
            return json_response(401, {"detail": "Token is invalid or expired", "code": "token_not_valid"})
        self.api_calls += 1
        header = request.headers.get("authorization", "")
        if header[7:] in self.good:
            return json_response(200, workspace())
        return json_response(401, {"detail": "Given token not valid for any token type"})


def good_token() -> str:
    return make_jwt(3600.0)


async def many_requests(rw: Any, clock: FakeClock, count: int, step: float) -> list[BaseException | Any]:
    results: list[BaseException | Any] = []
    for _ in range(count):
        try:
            results.append(await rw.get_workspace("ws1"))
        except errors.RunWhenError as exc:
            results.append(exc)
        clock.now += step
    return results


@pytest.mark.parametrize("kind", ["exp-before-iat", "exp-equals-iat", "exp-in-the-past-no-iat", "by-date"])
async def test_an_already_expired_token_is_a_failed_login_and_logins_stay_bounded(kind: str) -> None:
    server = TokenServer(lambda: expired_access(kind), date=kind == "by-date")
    rw, _ = make_client(server, CREDS)
    clock = with_clock(rw)
    async with rw:
        # 200 requests over 100 s of the fake clock.
        results = await many_requests(rw, clock, 200, 0.5)
    print(f"{kind}: 200 requests over 100 s -> {server.logins} logins, {server.api_calls} API calls")
    # Failures at 0, 2, 6, 14, 30 and 62 s (the delay doubles from 2 s): six logins in 100 s.
    assert server.logins == 6
    assert server.api_calls == 0  # an expired token is never sent
    assert all(isinstance(r, errors.AuthenticationError) for r in results)
    invalid = [r for r in results if isinstance(r, errors.InvalidTokenError)]
    assert len(invalid) == server.logins
    assert "already expired" in str(invalid[0])
    delayed = [str(r) for r in results if not isinstance(r, errors.InvalidTokenError)]
    assert delayed[0].startswith("RunWhen login as 'admin' not attempted: the last one failed 1 time(s)")
    assert "next attempt in 2s" in delayed[0]
    assert CREDS.password.get_secret_value() not in " ".join(str(r) for r in results)


async def test_a_token_refused_on_its_first_use_is_a_failed_login_too() -> None:
    # The stale token of a server without a Date header: valid by its own claims, refused by the API.
    server = TokenServer(lambda: expired_access("by-date"), date=False)
    rw, _ = make_client(server, CREDS)
    clock = with_clock(rw)
    async with rw:
        results = await many_requests(rw, clock, 200, 0.5)
    print(
        f"refused on first use: 200 requests over 100 s -> {server.logins} logins, {server.api_calls} calls"
    )
    assert server.logins <= 6
    assert server.api_calls == server.logins  # one try of each token, never a second
    assert server.refreshes <= server.logins  # a renewal tries its refresh token first
    assert all(isinstance(r, errors.AuthenticationError) for r in results)
    assert isinstance(results[0], errors.InvalidTokenError)
    assert "401 on its first use" in str(results[0])


@pytest.mark.parametrize("garbage", ["number", "html"])
async def test_a_garbage_token_answer_is_a_failed_login(garbage: str) -> None:
    if garbage == "html":
        server = TokenServer(lambda: None, raw=b"<!DOCTYPE html><html><body>Sign in</body></html>")
    else:
        server = TokenServer(lambda: 42)
    rw, _ = make_client(server, CREDS)
    clock = with_clock(rw)
    async with rw:
        results = await many_requests(rw, clock, 200, 0.5)
    print(f"garbage ({garbage}): 200 requests over 100 s -> {server.logins} logins")
    assert isinstance(results[0], errors.UnexpectedResponseError)
    assert all(isinstance(r, errors.UnexpectedResponseError | errors.AuthenticationError) for r in results)
    assert server.logins == 6
    assert server.api_calls == 0


async def test_concurrent_callers_share_one_failed_login() -> None:
    server = TokenServer(lambda: expired_access("exp-before-iat"))
    rw, _ = make_client(server, CREDS)
    with_clock(rw)
    async with rw:
        results = await asyncio.gather(*(rw.get_workspace("ws") for _ in range(20)), return_exceptions=True)
        again = await asyncio.gather(*(rw.get_workspace("ws") for _ in range(20)), return_exceptions=True)
    assert server.logins == 1
    assert all(isinstance(r, errors.InvalidTokenError) for r in results)
    assert all(isinstance(r, errors.AuthenticationError) and "not attempted" in str(r) for r in again)


async def test_the_delay_doubles_up_to_five_minutes_and_a_usable_login_resets_it() -> None:
    server = TokenServer(good_token, good=True)
    server.refuse_password = True
    rw, _ = make_client(server, CREDS)
    clock = with_clock(rw)
    waits: list[str] = []
    async with rw:
        for _ in range(10):
            with pytest.raises(errors.AuthenticationError, match="failed"):
                await rw.get_workspace("ws")  # attempted, refused
            with pytest.raises(errors.AuthenticationError, match="not attempted") as info:
                await rw.get_workspace("ws")  # within the delay: no request
            waits.append(str(info.value).rsplit("next attempt in ", 1)[1])
            clock.now += 301.0  # past any delay, and the login bucket is full again
        assert waits == ["2s", "4s", "8s", "16s", "32s", "64s", "128s", "256s", "300s", "300s"]
        assert server.logins == 10

        server.refuse_password = False
        assert (await rw.get_workspace("ws")).name == "ws1"  # a login, and its token works
        server.refuse_password = True
        server.good.clear()  # the token stops working: the renewal logs in, which is refused
        with pytest.raises(errors.AuthenticationError):
            await rw.get_workspace("ws")
        with pytest.raises(errors.AuthenticationError, match="not attempted") as info:
            await rw.get_workspace("ws")
    assert "failed 1 time(s) in a row" in str(info.value)
    assert str(info.value).endswith("next attempt in 2s")
    assert rw._auth.logins == 1


async def test_at_most_max_logins_per_minute() -> None:
    server = TokenServer(good_token, good=True)
    rw, _ = make_client(server, CREDS, max_logins_per_minute=6)
    clock = with_clock(rw)
    async with rw:
        for _ in range(6):
            await rw.client.login()
        with pytest.raises(errors.AuthenticationError) as info:
            await rw.client.login()
        assert server.logins == 6  # the seventh was not sent
        assert "at most 6 logins per minute (--max-logins-per-minute); next attempt in 10s" in str(info.value)
        clock.now += 10.0
        await rw.client.login()  # one more each 10 s
        with pytest.raises(errors.AuthenticationError):
            await rw.client.login()
        # Requests go on with the token it has.
        assert (await rw.get_workspace("ws")).name == "ws1"
    assert server.logins == 7
    assert rw._auth.logins == 7


async def test_every_post_to_the_login_path_counts_its_retries_too() -> None:
    logins = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal logins
        logins += 1
        return json_response(503, {"detail": "busy"})

    rw, _ = make_client(handler, CREDS, max_logins_per_minute=3, max_attempts=10)
    with_clock(rw)
    async with rw:
        with pytest.raises(errors.AuthenticationError, match="at most 3 logins per minute"):
            await rw.client.login()
    assert logins == 3


def test_login_limits_are_validated() -> None:
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_logins_per_minute"):
            client.RunWhenClient("https://x.example", CREDS, max_logins_per_minute=bad)
    with pytest.raises(ValueError, match="max_response_bytes"):
        client.RunWhenClient("https://x.example", CREDS, max_response_bytes=0)
    with pytest.raises(ValueError, match="request_deadline"):
        client.RunWhenClient("https://x.example", CREDS, request_deadline=0)
    with pytest.raises(ValueError, match="max_retry_after"):
        client.RunWhenClient("https://x.example", CREDS, max_retry_after=-1)


def test_a_usable_token_is_still_read_as_before() -> None:
    authenticator = auth.JwtAuthenticator(CREDS, post_token=None)  # type: ignore[arg-type]
    dated = {"Date": email.utils.formatdate(time.time(), usegmt=True)}
    response = json_response(
        200, token_pair(60.0), headers=dated, request=httpx.Request("POST", "https://x/api/v3/token/")
    )
    session = authenticator._parse_tokens(response, wall=0.0, mono=100.0, previous_refresh=None)
    assert session.access_expires == pytest.approx(160.0, abs=1.0)


# --- the command line ---------------------------------------------------------------------------


def test_the_limit_flags_and_their_defaults() -> None:
    args = cli.build_parser().parse_args(["run"])
    assert args.max_response_bytes == 8 * MIB
    assert args.request_deadline == 60.0
    assert args.max_retry_after == 300.0
    assert args.max_logins_per_minute == 6.0
    assert args.pass_deadline == 300.0
    args = cli.build_parser().parse_args(
        [
            "run",
            "--max-response-bytes",
            "1048576",
            "--request-deadline",
            "10s",
            "--max-retry-after",
            "30s",
            "--max-logins-per-minute",
            "2",
            "--pass-deadline",
            "1m30s",
        ]
    )
    assert (args.max_response_bytes, args.request_deadline, args.max_retry_after) == (MIB, 10.0, 30.0)
    assert (args.max_logins_per_minute, args.pass_deadline) == (2.0, 90.0)


def test_the_limit_flags_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWHEN_MAX_RESPONSE_BYTES", "4096")
    monkeypatch.setenv("RUNWHEN_REQUEST_DEADLINE", "15s")
    monkeypatch.setenv("RUNWHEN_MAX_RETRY_AFTER", "1m")
    monkeypatch.setenv("RUNWHEN_MAX_LOGINS_PER_MINUTE", "0.5")
    monkeypatch.setenv("RUNWHEN_PASS_DEADLINE", "2m")
    args = cli.build_parser().parse_args(["run"])
    assert (args.max_response_bytes, args.request_deadline, args.max_retry_after) == (4096, 15.0, 60.0)
    assert (args.max_logins_per_minute, args.pass_deadline) == (0.5, 120.0)


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--max-response-bytes", "0", "must be at least 1"),
        ("--max-response-bytes", "lots", "is not a whole number"),
        ("--request-deadline", "0", "must be a duration greater than 0"),
        ("--request-deadline", "60", "invalid duration"),
        ("--max-retry-after", "0s", "must be a duration greater than 0"),
        ("--max-logins-per-minute", "0", "must be a number greater than 0"),
        ("--pass-deadline", "soon", "invalid duration"),
    ],
)
def test_bad_limit_values_are_argparse_errors(
    flag: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["run", flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err
    assert says in err


def test_the_flags_reach_the_client_and_the_pass_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from runwhen_operator.handlers import operator

    seen: list[Any] = []

    async def fake_run(config: Any) -> None:
        seen.append(config)

    monkeypatch.setattr(operator, "run", fake_run)
    code = cli.main(
        [
            "run",
            "--metrics-port",
            "0",
            "--health-port",
            "0",
            "--max-response-bytes",
            "2048",
            "--request-deadline",
            "7s",
            "--max-retry-after",
            "9s",
            "--max-logins-per-minute",
            "3",
            "--pass-deadline",
            "45s",
        ]
    )
    assert code == 0
    config = seen[0]
    options = config.client_options
    assert {k: options[k] for k in ("max_response_bytes", "request_deadline", "max_retry_after")} == {
        "max_response_bytes": 2048,
        "request_deadline": 7.0,
        "max_retry_after": 9.0,
    }
    assert options["max_logins_per_minute"] == 3.0
    assert config.options.pass_deadline == 45.0
    # Every client option is one RunWhenClient takes.
    rw = client.RunWhenClient("https://x.example", CREDS, **options)
    assert rw._max_response_bytes == 2048
