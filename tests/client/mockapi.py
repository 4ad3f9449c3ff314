"""A scripted RunWhen API on ``httpx.MockTransport``, for edge cases the emulator cannot produce."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from runwhen_operator.runwhen import auth
from tests.client.documented_client import DocumentedClient

BASE = "https://papi.test.runwhen.example"
_counter = itertools.count(1)

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_jwt(lifetime: float = 300.0, *, kind: str = "access", iat: float | None = None) -> str:
    """An (unsigned) JWT with ``iat``/``exp``; unique on every call."""
    issued = time.time() if iat is None else iat
    payload = {"iat": issued, "exp": issued + lifetime, "type": kind, "jti": next(_counter), "sub": "admin"}
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}.c2lnbmF0dXJl"


def token_pair(lifetime: float = 300.0) -> dict[str, str]:
    return {"access": make_jwt(lifetime), "refresh": make_jwt(3600.0, kind="refresh")}


def json_response(status: int, body: Any = None, **kw: Any) -> httpx.Response:
    if body is None:
        return httpx.Response(status, **kw)
    return httpx.Response(status, json=body, **kw)


def workspace(name: str = "ws1", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "displayName": extra.pop("displayName", ""),
        "owner": "admin",
        "configProvided": {},
        "secretsProvided": {},
        "enabledLocations": [],
        "slxGroups": {},
        "createdAt": "2026-03-01T12:00:00Z",
        "updatedAt": "2026-03-01T12:00:00Z",
        **extra,
    }


class Recorder:
    """Records every request and answers with the handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        result = self.handler(request)
        if isinstance(result, httpx.Response):
            return result
        return await result

    def calls(self, method: str | None = None, path: str | None = None) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.url.path == path)
        ]


def make_client(
    handler: Handler,
    credentials: auth.PasswordCredentials | auth.TokenCredentials | None = None,
    **kw: Any,
) -> tuple[DocumentedClient, Recorder]:
    recorder = Recorder(handler)
    options: dict[str, Any] = {
        "backoff_base": 0.001,
        "backoff_cap": 0.05,
        "requests_per_second": 10_000.0,
        "burst": 10_000,
    }
    options.update(kw)
    rw = DocumentedClient(
        options.pop("base_url", BASE),
        credentials or auth.TokenCredentials("static-token-value"),
        transport=httpx.MockTransport(recorder),
        **options,
    )
    return rw, recorder
