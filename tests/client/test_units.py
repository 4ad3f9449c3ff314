"""Small units: rate limiter, models, credentials, URL handling, TLS settings."""

from __future__ import annotations

import asyncio
import pathlib
import pickle
import ssl
import time

import certifi
import httpx
import pytest
from pydantic import SecretStr

from runwhen_operator.runwhen import auth, client, documented, models, ratelimit
from tests.client.mockapi import json_response, make_client, workspace

# --- rate limiter --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = ratelimit.TokenBucket(rate=20.0, burst=5, clock=clock)
    assert [bucket.reserve() for _ in range(5)] == [0.0] * 5
    # Later callers get the following slots, 1/20 s apart, in the order they asked.
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.05, 0.10, 0.15])
    clock.now += 1.0  # a second later the debt is paid and 17 tokens saved, capped at the burst
    assert [bucket.reserve() for _ in range(5)] == [0.0] * 5
    assert bucket.reserve() == pytest.approx(0.05)


async def test_bucket_paces_in_real_time() -> None:
    bucket = ratelimit.TokenBucket(rate=20.0, burst=2)
    started = time.monotonic()
    for _ in range(8):
        await bucket.acquire()
    assert time.monotonic() - started >= 0.29  # 2 at once, then 6 at 20/s


async def test_bucket_serves_waiters_in_order() -> None:
    bucket = ratelimit.TokenBucket(rate=50.0, burst=1)
    order: list[int] = []

    async def take(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    await asyncio.gather(*(take(i) for i in range(8)))
    assert order == list(range(8))


async def test_cancelled_wait_returns_its_token() -> None:
    clock = FakeClock()
    bucket = ratelimit.TokenBucket(rate=10.0, burst=1, clock=clock)
    await bucket.acquire()
    waiter = asyncio.ensure_future(bucket.acquire())  # reserves the slot 0.1 s ahead
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # The cancelled reservation was returned: the next caller gets that slot, not the one after.
    assert bucket.reserve() == pytest.approx(0.1)


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        ratelimit.TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError):
        ratelimit.TokenBucket(rate=1, burst=0)


async def test_client_rate_limit_applies_to_every_request() -> None:
    rw, rec = make_client(lambda r: json_response(200, workspace()), requests_per_second=20.0, burst=2)
    started = time.monotonic()
    async with rw:
        await asyncio.gather(*(rw.get_workspace("ws1") for _ in range(8)))
    elapsed = time.monotonic() - started
    assert len(rec.requests) == 8
    assert elapsed >= 0.27  # 2 at once, then 6 at 20/s


# --- models --------------------------------------------------------------------------------------


def test_models_keep_unknown_fields_and_wire_is_camel_case() -> None:
    data = workspace("ws1", displayName="Shop", futureField={"a": 1})
    ws = models.Workspace.model_validate(data)
    assert ws.display_name == "Shop"
    assert ws.wire() == data
    assert models.Workspace(name="x", display_name="y").wire() == {"name": "x", "displayName": "y"}


def test_workflow_definition_round_trips() -> None:
    data = {
        "id": 4,
        "name": "wf",
        "definition": {
            "fromActivities": [
                {
                    "name": "a",
                    "displayName": "A",
                    "description": "",
                    "match": {"activityVerbs": ["restart"], "slxs": ["s1"]},
                    "actions": [
                        {"tasks": {"slx": "s1", "persona": "p", "titles": ["t"], "sessionTTL": "20m"}}
                    ],
                }
            ]
        },
        "createdAt": "2026-03-01T12:00:00Z",
    }
    wf = models.Workflow.model_validate(data)
    tasks = wf.definition.from_activities[0].actions[0].tasks
    assert tasks is not None
    assert tasks.session_ttl == "20m"
    assert wf.wire() == data


def test_webhook_token_is_secret_in_repr_but_wire_reveals_it() -> None:
    data = {"token": "whk-123456", "webhookUrl": "https://h/api/v3/webhooks/workflows/whk-123456", "n": 1}
    token = models.WebhookToken.model_validate(data)
    assert "whk-123456" not in repr(token)
    assert "whk-123456" not in str(token)
    assert "webhooks/workflows/**********" in repr(token)
    assert token.token.get_secret_value() == "whk-123456"
    assert token.webhook_url == data["webhookUrl"]
    assert token.wire() == data


# --- credentials ---------------------------------------------------------------------------------


def test_credentials_never_show_secrets() -> None:
    pw = auth.PasswordCredentials("admin", "hunter2-secret")
    tok = auth.TokenCredentials("pat-secret-value")
    for text in (repr(pw), str(pw), f"{pw}", repr(tok), str(tok), f"{[pw, tok]}"):
        assert "hunter2-secret" not in text
        assert "pat-secret-value" not in text
    assert "admin" in repr(pw)
    assert pw.password.get_secret_value() == "hunter2-secret"
    assert tok.token.get_secret_value() == "pat-secret-value"
    assert auth.PasswordCredentials("admin", SecretStr("x1")) == auth.PasswordCredentials("admin", "x1")
    with pytest.raises(TypeError):
        pickle.dumps(pw)
    with pytest.raises(ValueError):
        auth.TokenCredentials("")


# --- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "api"),
    [
        ("https://papi.example.runwhen.com", "https://papi.example.runwhen.com/api/v3/"),
        ("https://papi.example.runwhen.com/", "https://papi.example.runwhen.com/api/v3/"),
        ("https://papi.example.runwhen.com/api/v3/", "https://papi.example.runwhen.com/api/v3/"),
        ("http://127.0.0.1:8080/prefix/", "http://127.0.0.1:8080/prefix/api/v3/"),
    ],
)
def test_base_url_normalisation(given: str, api: str) -> None:
    rw = client.RunWhenClient(given, auth.TokenCredentials("t0ken"))
    assert rw.api_url == api


@pytest.mark.parametrize(
    "bad", ["papi.example.runwhen.com", "ftp://x", "https://user:pw@host", "https://h/?q=1"]
)
def test_bad_base_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        client.RunWhenClient(bad, auth.TokenCredentials("t0ken"))


async def test_path_parameters_are_escaped_and_empty_ones_refused() -> None:
    rw, rec = make_client(lambda r: json_response(200, workspace()))
    async with rw:
        await rw.get_workspace("../x y")
        with pytest.raises(ValueError):
            await rw.get_workspace("")
    assert rec.requests[0].url.raw_path == b"/api/v3/workspaces/..%2Fx%20y"
    assert len(rec.requests) == 1


async def test_templates_and_trailing_slashes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/status"):
            return json_response(200, {"workspace": True, "sync": False})
        if path.endswith("/health"):
            return json_response(
                200, {"workspace": "ws1", "status": "healthy", "checkedAt": "2026-03-01T12:00:00Z"}
            )
        if path.endswith("/token"):
            return json_response(200, {"token": "t-1234", "webhookUrl": "https://h"})
        if path.endswith("/run"):
            return json_response(200, {"id": 1, "workflowId": 2, "status": "queued", "context": {"a": 1}})
        if "/runsessions/" in path:
            return json_response(200, {"id": 9, "source": "api"})
        if "/personas/" in path:
            return json_response(200 if request.method != "DELETE" else 204, {"id": 5, "name": "p"})
        return json_response(200 if request.method != "DELETE" else 204, {"id": 2, "name": "wf"})

    seen: list[tuple[str, str]] = []
    rw, rec = make_client(handler, on_request=lambda m, t, s, d, a: seen.append((m, t)))
    async with rw:
        await rw.get_workspace_status("ws1")
        health = await rw.get_workspace_health("ws1", include_metrics=True)
        await rw.get_workflow("ws1", 2)
        await rw.replace_workflow("ws1", 2, {"name": "wf"})
        await rw.delete_workflow("ws1", 2)
        run = await rw.run_workflow("ws1", 2, {"a": 1})
        await rw.run_workflow("ws1", 2)
        await rw.get_workflow_token("ws1", 2)
        await rw.get_persona("ws1", 5)
        await rw.replace_persona("ws1", 5, {"name": "p"})
        await rw.delete_persona("ws1", 5)
        await rw.get_run_session("ws1", 9)
    assert health.status == "healthy"
    assert run.status == "queued"
    assert [r.url.path for r in rec.requests] == [
        "/api/v3/workspaces/ws1/status",
        "/api/v3/workspaces/ws1/health",
        "/api/v3/workspaces/ws1/workflows/2",
        "/api/v3/workspaces/ws1/workflows/2",
        "/api/v3/workspaces/ws1/workflows/2",
        "/api/v3/workspaces/ws1/workflows/2/run",
        "/api/v3/workspaces/ws1/workflows/2/run",
        "/api/v3/workspaces/ws1/workflows/2/token",
        "/api/v3/workspaces/ws1/personas/5",
        "/api/v3/workspaces/ws1/personas/5",
        "/api/v3/workspaces/ws1/personas/5",
        "/api/v3/workspaces/ws1/runsessions/9",
    ]
    assert dict(rec.requests[1].url.params) == {"include_details": "true", "include_metrics": "true"}
    assert rec.requests[5].content == b'{"context":{"a":1}}'
    assert rec.requests[6].content == b"{}"
    assert seen[2] == ("GET", "/api/v3/workspaces/{workspace_name}/workflows/{workflow_id}")
    assert seen[5] == ("POST", "/api/v3/workspaces/{workspace_name}/workflows/{workflow_id}/run")
    assert seen[8] == ("GET", "/api/v3/workspaces/{workspace_name}/personas/{persona_id}")
    assert seen[11] == ("GET", "/api/v3/workspaces/{workspace_name}/runsessions/{runsession_id}")


# --- TLS -----------------------------------------------------------------------------------------


def _first_pem_certificate() -> str:
    text = pathlib.Path(certifi.where()).read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----"
    start = text.index("-----BEGIN CERTIFICATE-----")
    return text[start : text.index(end, start) + len(end)] + "\n"


def test_tls_context_verifies_and_adds_the_ca_bundle() -> None:
    plain = client._ssl_context(None)
    assert plain.verify_mode == ssl.CERT_REQUIRED
    assert plain.check_hostname is True
    bundle = _first_pem_certificate()
    with_ca = client._ssl_context(bundle)
    assert with_ca.verify_mode == ssl.CERT_REQUIRED
    assert with_ca.check_hostname is True
    client.RunWhenClient("https://papi.example.runwhen.com", auth.TokenCredentials("t0ken"), ca_bundle=bundle)


def test_invalid_ca_bundle_is_refused() -> None:
    with pytest.raises(ValueError):
        client.RunWhenClient(
            "https://papi.example.runwhen.com",
            auth.TokenCredentials("t0ken"),
            ca_bundle="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )


async def test_tls_failure_is_a_transport_error_not_a_silent_downgrade() -> None:
    # A local TLS server with a certificate nobody trusts: the handshake must fail.
    import subprocess
    import tempfile

    from runwhen_operator.runwhen import errors

    with tempfile.TemporaryDirectory() as tmp:
        key, cert = f"{tmp}/k.pem", f"{tmp}/c.pem"
        made = subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                cert,
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
            capture_output=True,
            check=False,
        )
        if made.returncode != 0:
            pytest.skip("openssl is not available")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1000)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        try:
            rw = client.RunWhenClient(
                f"https://127.0.0.1:{port}", auth.TokenCredentials("t0ken"), max_attempts=1
            )
            async with rw:
                with pytest.raises(errors.TransportError):
                    await documented.DocumentedApi(rw).get_workspace_status("ws1")
            trusted = client.RunWhenClient(
                f"https://127.0.0.1:{port}",
                auth.TokenCredentials("t0ken"),
                ca_bundle=pathlib.Path(cert).read_text(),
                max_attempts=1,
            )
            async with trusted:
                with pytest.raises(errors.UnexpectedResponseError):  # '{}' is no WorkspaceStatus: TLS worked
                    await documented.DocumentedApi(trusted).get_workspace_status("ws1")
        finally:
            server.close()
            await server.wait_closed()


def test_one_pool_per_client() -> None:
    rw = client.RunWhenClient("https://a.example", auth.TokenCredentials("t0ken"))
    assert isinstance(rw._http, httpx.AsyncClient)
    assert rw._http.follow_redirects is False
    assert rw._http.timeout == httpx.Timeout(30.0)
