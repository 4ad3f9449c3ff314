"""Authentication edge cases on a scripted transport."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from runwhen_operator.runwhen import auth, errors
from tests.client.mockapi import json_response, make_client, make_jwt, token_pair, workspace

PASSWORD = "pw-Very-Secret-123"
CREDS = auth.PasswordCredentials("admin", PASSWORD)


def body_of(request: httpx.Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/json"):
        return json.loads(request.content)
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


class FakeClock:
    """Monotonic time the test moves by hand: token expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def with_clock(rw: Any) -> FakeClock:
    clock = FakeClock()
    rw._auth._clock = clock
    return clock


class FakeAuthServer:
    """Issues JWT pairs, rotates refresh tokens, accepts only the newest access token."""

    def __init__(self, *, lifetime: float = 300.0, json_ok: bool = True) -> None:
        self.lifetime = lifetime
        self.json_ok = json_ok
        self.valid_access: set[str] = set()
        self.valid_refresh: set[str] = set()
        self.logins = 0
        self.refreshes = 0
        self.api_calls = 0
        self.reject_next_api_calls = 0

    def issue(self) -> httpx.Response:
        pair = token_pair(self.lifetime)
        self.valid_access = {pair["access"]}
        self.valid_refresh.add(pair["refresh"])
        return json_response(200, pair)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        path = request.url.path
        if path in ("/api/v3/token/", "/api/v3/token/refresh/"):
            is_json = request.headers.get("content-type", "").startswith("application/json")
            if is_json and not self.json_ok:
                return json_response(415, {"detail": 'Unsupported media type "application/json" in request.'})
            body = body_of(request)
            if path == "/api/v3/token/":
                self.logins += 1
                if body != {"username": "admin", "password": PASSWORD}:
                    return json_response(
                        401, {"detail": "No active account found with the given credentials"}
                    )
                return self.issue()
            self.refreshes += 1
            token = body.get("refresh")
            if token not in self.valid_refresh:
                return json_response(
                    401, {"detail": "Token is invalid or expired", "code": "token_not_valid"}
                )
            self.valid_refresh.discard(token)
            return self.issue()
        self.api_calls += 1
        header = request.headers.get("authorization", "")
        if self.reject_next_api_calls > 0:
            self.reject_next_api_calls -= 1
            return json_response(401, {"detail": "Given token not valid for any token type"})
        if not header.startswith("Bearer ") or header[7:] not in self.valid_access:
            return json_response(401, {"detail": "Given token not valid for any token type"})
        return json_response(200, workspace(request.url.path.rsplit("/", 1)[-1]))


async def test_login_happens_once_and_token_is_reused() -> None:
    server = FakeAuthServer()
    rw, rec = make_client(server, CREDS)
    async with rw:
        for _ in range(3):
            await rw.get_workspace("ws1")
    assert server.logins == 1
    assert server.api_calls == 3
    login = rec.calls("POST", "/api/v3/token/")[0]
    assert login.headers["content-type"] == "application/json"
    assert "authorization" not in login.headers


async def test_json_refused_falls_back_to_form_and_remembers() -> None:
    server = FakeAuthServer(json_ok=False, lifetime=60.0)
    rw, rec = make_client(server, CREDS)
    clock = with_clock(rw)
    async with rw:
        await rw.get_workspace("ws1")
        clock.now += 60.0
        await rw.get_workspace("ws1")
    token_calls = [r for r in rec.requests if r.url.path.startswith("/api/v3/token/")]
    kinds = [(r.url.path, r.headers["content-type"].split(";")[0]) for r in token_calls]
    assert kinds == [
        ("/api/v3/token/", "application/json"),
        ("/api/v3/token/", "application/x-www-form-urlencoded"),
        ("/api/v3/token/refresh/", "application/x-www-form-urlencoded"),
    ]


async def test_token_expiry_triggers_one_refresh_for_a_concurrent_burst() -> None:
    server = FakeAuthServer(lifetime=60.0)
    rw, _ = make_client(server, CREDS)
    clock = with_clock(rw)
    async with rw:
        await rw.get_workspace("ws0")
        clock.now += 60.0
        results = await asyncio.gather(*(rw.get_workspace(f"ws{i}") for i in range(20)))
    assert [w.name for w in results] == [f"ws{i}" for i in range(20)]
    assert server.logins == 1
    assert server.refreshes == 1
    assert server.api_calls == 21


async def test_refresh_uses_the_rotated_refresh_token() -> None:
    server = FakeAuthServer(lifetime=60.0)
    rw, rec = make_client(server, CREDS)
    clock = with_clock(rw)
    async with rw:
        for i in range(3):
            await rw.get_workspace(f"ws{i}")
            clock.now += 55.0  # within the last 10 % of the lifetime: renewed before it expires
        await rw.get_workspace("last")
    refresh_bodies = [body_of(r)["refresh"] for r in rec.calls("POST", "/api/v3/token/refresh/")]
    assert len(refresh_bodies) == 3
    assert len(set(refresh_bodies)) == 3
    assert server.logins == 1  # every refresh succeeded: each used the newest refresh token


async def test_401_refreshes_once_and_retries_once() -> None:
    server = FakeAuthServer()
    rw, _ = make_client(server, CREDS)
    async with rw:
        await rw.get_workspace("ws0")
        server.reject_next_api_calls = 1
        assert (await rw.get_workspace("ws1")).name == "ws1"
    assert server.refreshes == 1
    assert server.api_calls == 3


async def test_persistent_401_does_not_loop() -> None:
    server = FakeAuthServer()
    retries: list[str] = []
    rw, _ = make_client(server, CREDS, on_retry=lambda m, t, r: retries.append(r))
    async with rw:
        await rw.get_workspace("ws0")
        server.reject_next_api_calls = 100
        with pytest.raises(errors.AuthenticationError) as info:
            await rw.get_workspace("ws1")
    assert server.api_calls == 3  # the first call, then one 401 and one retry
    assert server.refreshes == 1
    assert retries == ["401"]
    assert info.value.status_code == 401


async def test_rejected_refresh_falls_back_to_login() -> None:
    server = FakeAuthServer(lifetime=60.0)
    rw, _ = make_client(server, CREDS)
    clock = with_clock(rw)
    async with rw:
        await rw.get_workspace("ws0")
        server.valid_refresh.clear()  # the server forgot every refresh token
        clock.now += 60.0
        await rw.get_workspace("ws1")
    assert server.refreshes == 1
    assert server.logins == 2


async def test_wrong_password_is_authentication_error_without_the_password() -> None:
    server = FakeAuthServer()
    rw, rec = make_client(server, auth.PasswordCredentials("admin", "wrong-password-xyz"))
    async with rw:
        with pytest.raises(errors.AuthenticationError) as info:
            await rw.get_workspace("ws1")
    assert "wrong-password-xyz" not in str(info.value)
    assert "wrong-password-xyz" not in repr(info.value)
    assert "admin" in str(info.value)
    assert server.api_calls == 0
    assert len(rec.calls("POST", "/api/v3/token/")) == 1


async def test_failed_login_is_shared_by_concurrent_callers() -> None:
    server = FakeAuthServer()
    rw, _ = make_client(server, auth.PasswordCredentials("admin", "nope-nope"))
    async with rw:
        results = await asyncio.gather(*(rw.get_workspace("ws") for _ in range(10)), return_exceptions=True)
    assert all(isinstance(r, errors.AuthenticationError) for r in results)
    assert server.logins == 1


async def test_cancelled_caller_does_not_cancel_the_shared_login() -> None:
    server = FakeAuthServer()
    rw, _ = make_client(server, CREDS)
    async with rw:
        first = asyncio.ensure_future(rw.get_workspace("a"))
        second = asyncio.ensure_future(rw.get_workspace("b"))
        await asyncio.sleep(0.001)
        first.cancel()
        assert (await second).name == "b"
        with pytest.raises(asyncio.CancelledError):
            await first
    assert server.logins == 1


async def test_token_response_without_tokens_is_unexpected_and_not_quoted() -> None:
    rw, _ = make_client(lambda r: json_response(200, {"access": "", "note": "leaky-body-marker"}), CREDS)
    async with rw:
        with pytest.raises(errors.UnexpectedResponseError) as info:
            await rw.verify()
    assert "leaky-body-marker" not in str(info.value)


async def test_refresh_without_new_refresh_token_keeps_the_old_one() -> None:
    first = token_pair(60.0)
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/api/v3/token/":
            return json_response(200, first)
        if request.url.path == "/api/v3/token/refresh/":
            assert body_of(request)["refresh"] == first["refresh"]
            return json_response(200, {"access": make_jwt(60.0)})
        return json_response(200, workspace())

    rw, _ = make_client(handler, CREDS)
    clock = with_clock(rw)
    async with rw:
        await rw.get_workspace("ws1")
        clock.now += 60.0
        await rw.get_workspace("ws1")
        clock.now += 60.0
        await rw.get_workspace("ws1")
    assert calls.count("/api/v3/token/refresh/") == 2
    assert calls.count("/api/v3/token/") == 1


async def test_login_5xx_is_retried() -> None:
    answers = iter([json_response(502, {"detail": "x"}), json_response(200, token_pair())])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/token/":
            return next(answers)
        return json_response(200, workspace())

    rw, rec = make_client(handler, CREDS)
    async with rw:
        await rw.verify()
    assert len(rec.calls("POST", "/api/v3/token/")) == 2


async def test_static_token_is_sent_as_is_and_401_is_final() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return json_response(401, {"detail": "Invalid token."})

    rw, _ = make_client(handler, auth.TokenCredentials("pat-abc-123"))
    async with rw:
        with pytest.raises(errors.AuthenticationError):
            await rw.get_workspace("ws1")
    assert seen == ["Bearer pat-abc-123"]


@pytest.mark.parametrize(
    ("status", "cls"), [(401, errors.AuthenticationError), (403, errors.PermissionDeniedError)]
)
async def test_verify_with_token_makes_one_cheap_request(status: int, cls: type[errors.AuthError]) -> None:
    rw, rec = make_client(
        lambda r: json_response(status, {"detail": "no"}), auth.TokenCredentials("pat-xyz-000")
    )
    async with rw:
        with pytest.raises(cls):
            await rw.verify()
    assert len(rec.requests) == 1
    request = rec.requests[0]
    assert (request.method, request.url.path, request.url.params["page-size"]) == (
        "GET",
        "/api/v3/workspaces/",
        "1",
    )


async def test_verify_with_password_logs_in() -> None:
    server = FakeAuthServer()
    rw, _ = make_client(server, CREDS)
    async with rw:
        # Each login proves the password on its own; verify() adds the one probe that proves access.
        await rw.client.login()
        await rw.client.login()
        assert server.api_calls == 0
        await rw.verify()
    assert server.logins == 3
    assert server.api_calls == 1


def test_refresh_margin_is_the_smaller_of_30s_and_a_tenth_of_the_lifetime() -> None:
    authenticator = auth.JwtAuthenticator(CREDS, post_token=None)  # type: ignore[arg-type]
    response = json_response(
        200, token_pair(3600.0), request=httpx.Request("POST", "https://x/api/v3/token/")
    )
    long = authenticator._parse_tokens(response, wall=0.0, mono=100.0, previous_refresh=None)
    assert long.access_margin == pytest.approx(30.0)
    assert long.access_expires == pytest.approx(3700.0, abs=1.0)
    response = json_response(200, token_pair(60.0), request=httpx.Request("POST", "https://x/api/v3/token/"))
    short = authenticator._parse_tokens(response, wall=0.0, mono=100.0, previous_refresh=None)
    assert short.access_margin == pytest.approx(6.0)
    assert short.access_fresh(100.0 + 53.0)
    assert not short.access_fresh(100.0 + 55.0)


def test_opaque_access_token_has_no_known_expiry() -> None:
    authenticator = auth.JwtAuthenticator(CREDS, post_token=None)  # type: ignore[arg-type]
    response = json_response(
        200,
        {"access": "opaque", "refresh": "opaque2"},
        request=httpx.Request("POST", "https://x/api/v3/token/"),
    )
    session = authenticator._parse_tokens(response, wall=0.0, mono=0.0, previous_refresh=None)
    assert session.access_expires is None
    assert session.access_fresh(1e12)


async def test_closing_the_client_during_a_token_renewal_does_not_kill_its_waiters() -> None:
    """A connection's client closed or rebuilt (its Secret rotated) while requests wait for a shared
    token renewal: each waiter gets a transport error it handles, never the renewal's cancellation
    (which would end the worker task that awaited it)."""
    started = asyncio.Event()

    async def post_token(path: str, **_: Any) -> Any:
        started.set()
        await asyncio.sleep(3600)  # an answer that does not come before the client is closed
        raise AssertionError("not reached")

    authenticator = auth.JwtAuthenticator(auth.PasswordCredentials("u", "p"), post_token)  # type: ignore[arg-type]
    waiters = [asyncio.create_task(authenticator.authorization()) for _ in range(5)]
    await started.wait()
    await authenticator.aclose()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, errors.TransportError) for r in results), results
    assert not any(w.cancelled() for w in waiters)
