"""No secret in any log record (DEBUG, including httpx/httpcore), repr or exception message over a
whole session against the emulator: login, refresh, CRUD, errors."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runwhen_operator.runwhen import auth, errors
from tests.client.documented_client import DocumentedClient

PASSWORD = "pw-Zq8x7-never-logged"
API_TOKEN = "pat-Kd93-never-logged"


class TokenRecordingTransport(httpx.AsyncHTTPTransport):
    """A real HTTP transport that also remembers every token the server handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, set[str]] = {"access": set(), "refresh": set(), "webhook": set()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        path = request.url.path
        if path.startswith("/api/v3/token") or path.endswith("/token"):
            raw = await response.aread()
            data = json.loads(raw) if response.status_code == 200 else {}
            for key in ("access", "refresh"):
                if key in data:
                    self.tokens[key].add(data[key])
            if "token" in data:
                self.tokens["webhook"].add(data["token"])
        return response


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured_logs() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    names = ["httpx", "httpcore", "runwhen_operator", "asyncio"]
    saved = (root.level, {n: logging.getLogger(n).level for n in names})
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_no_secret_in_logs_reprs_or_errors(emulator_factory: Any, captured_logs: Capture) -> None:
    em = emulator_factory(username="svc-operator", password=PASSWORD, api_token=API_TOKEN, token_lifetime=1.0)
    transport = TokenRecordingTransport()
    raised: list[BaseException] = []
    password_credentials = auth.PasswordCredentials("svc-operator", PASSWORD)
    token_credentials = auth.TokenCredentials(API_TOKEN)
    rw = DocumentedClient(em.url, password_credentials, transport=transport, backoff_base=0.01)

    async def expect(exc_type: type[errors.RunWhenError], coro: Any) -> None:
        with pytest.raises(exc_type) as info:
            await coro
        raised.append(info.value)

    async with rw:
        await rw.verify()  # login
        await rw.create_workspace({"name": "secret-ws"})
        wf = await rw.create_workflow("secret-ws", {"name": "wf", "definition": {"fromActivities": []}})
        webhook = await rw.get_workflow_token("secret-ws", wf.id)
        raised_repr = [repr(webhook), str(webhook)]
        await asyncio.sleep(1.05)  # the access token expires: the next call refreshes
        await rw.patch_workspace("secret-ws", {"displayName": "x"})
        await asyncio.sleep(1.05)  # and again, with the rotated refresh token
        assert [w.name async for w in rw.list_workspaces()] == ["secret-ws"]
        persona = await rw.create_persona("secret-ws", {"name": "p"})
        await rw.replace_persona("secret-ws", persona.id, {"name": "p", "fullName": "P"})
        await expect(
            errors.InvalidRequestError, rw.create_workspace({"name": "Bad Name", "password": PASSWORD})
        )
        await expect(errors.NotFoundError, rw.get_workspace("nope"))
        em.set_faults(failAfterCommitRate=1.0, seed=2)
        await expect(errors.WriteOutcomeUnknownError, rw.create_persona("secret-ws", {"name": "q"}))
        em.clear_faults()
        await rw.delete_workspace("secret-ws")
        raised_repr += [repr(rw), str(rw)]

    async with DocumentedClient(em.url, token_credentials) as token_rw:
        await token_rw.verify()
        await token_rw.create_workspace({"name": "tok-ws"})
        raised_repr += [repr(token_rw)]
    async with DocumentedClient(em.url, auth.PasswordCredentials("svc-operator", PASSWORD + "-wrong")) as bad:
        await expect(errors.AuthenticationError, bad.verify())
    async with DocumentedClient(em.url, auth.TokenCredentials(API_TOKEN + "-wrong")) as bad_token:
        await expect(errors.AuthenticationError, bad_token.verify())
    async with DocumentedClient(
        f"http://127.0.0.1:{closed_port()}", password_credentials, max_attempts=2, backoff_base=0.01
    ) as unreachable:
        await expect(errors.TransportError, unreachable.get_workspace("x"))

    # The session really exercised what it claims to.
    assert len(transport.tokens["access"]) >= 3  # one login and two refreshes
    assert len(transport.tokens["refresh"]) >= 3  # rotated each time
    assert em.requests()["POST /api/v3/token/refresh/"] == 2
    assert len(transport.tokens["webhook"]) == 1
    loggers = {r.name for r in captured_logs.records}
    assert {"httpx", "runwhen_operator.runwhen.client"} <= loggers
    assert any(name.startswith("httpcore") for name in loggers)
    assert any(r.levelno == logging.DEBUG for r in captured_logs.records)

    secrets = {
        PASSWORD,
        API_TOKEN,
        *transport.tokens["access"],
        *transport.tokens["refresh"],
        *transport.tokens["webhook"],
    }
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in captured_logs.records:
        text = formatter.format(record) + repr(record.__dict__)
        for secret in secrets:
            assert secret not in text, f"a secret leaked into a {record.name} log record"
    texts = [
        repr(password_credentials),
        str(password_credentials),
        repr(token_credentials),
        str(token_credentials),
    ]
    texts += raised_repr
    for exc in raised:
        texts += [repr(exc), str(exc), repr(getattr(exc, "field_errors", ""))]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    # The 400 echo of the password field name is fine; its value never appears.
    assert any("password" in str(exc) for exc in raised if isinstance(exc, errors.InvalidRequestError))
