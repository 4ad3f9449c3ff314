"""The client against the real emulator (a separate process speaking HTTP): auth, CRUD, pagination,
error classes, 429 storms, and writes lost after commit."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest

from runwhen_operator.runwhen import auth, client, errors
from tests.client.documented_client import DocumentedClient

LOGIN = ("POST", "/api/v3/token/")
REFRESH = ("POST", "/api/v3/token/refresh/")

WORKFLOW_BODY: dict[str, Any] = {
    "name": "restart-on-oom",
    "definition": {
        "fromActivities": [
            {
                "name": "oom",
                "displayName": "OOM kills",
                "description": "restart what was killed",
                "match": {"activityVerbs": ["oomkilled"], "slxs": ["k8s-pods"]},
                "actions": [
                    {
                        "tasks": {
                            "slx": "k8s-pods",
                            "persona": "eager-edgar",
                            "titles": ["restart"],
                            "sessionTTL": "20m",
                        }
                    }
                ],
            }
        ]
    },
}


def hits(em: Any, method: str, path: str) -> int:
    """Requests the emulator counted for ``METHOD path`` (with or without the trailing slash)."""
    counts = em.requests()
    bare = path.rstrip("/")
    return sum(n for key, n in counts.items() if key in (f"{method} {bare}", f"{method} {bare}/"))


def password_client(em: Any, **kw: Any) -> client.RunWhenClient:
    return DocumentedClient(em.url, auth.PasswordCredentials(em.username, em.password), **kw)


def token_client(em: Any, token: str | None = None, **kw: Any) -> client.RunWhenClient:
    return DocumentedClient(em.url, auth.TokenCredentials(token or em.api_token), **kw)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- auth ----------------------------------------------------------------------------------------


async def test_password_mode_full_crud_round_trip(emulator: Any) -> None:
    async with password_client(emulator) as rw:
        await rw.verify()
        ws = await rw.create_workspace({"name": "shop", "displayName": "Shop"})
        assert (ws.name, ws.display_name, ws.owner) == ("shop", "Shop", emulator.username)
        assert (await rw.patch_workspace("shop", {"displayName": "Shop 2"})).display_name == "Shop 2"
        replaced = await rw.replace_workspace("shop", {"name": "shop", "enabledLocations": ["loc-1"]})
        assert (replaced.display_name, replaced.enabled_locations) == ("", ["loc-1"])  # PUT resets
        assert [w.name async for w in rw.list_workspaces()] == ["shop"]
        status = await rw.get_workspace_status("shop")
        assert isinstance(status.workspace, bool)
        health = await rw.get_workspace_health("shop", include_details=True, include_metrics=True)
        assert health.workspace == "shop"
        assert health.details is not None
        emulator.open_issue("shop", "cpu high", 2, "cpu-slx")
        emulator.open_issue("shop", "disk warning", 4, "disk-slx")
        issues = [i async for i in rw.list_workspace_issues("shop", severity_lte=3)]
        assert [(i.title, i.severity, i.slx_name) for i in issues] == [("cpu high", 2, "cpu-slx")]

        wf = await rw.create_workflow("shop", WORKFLOW_BODY)
        assert wf.wire()["definition"] == WORKFLOW_BODY["definition"]
        assert (await rw.get_workflow("shop", wf.id)).name == "restart-on-oom"
        replaced_wf = await rw.replace_workflow(
            "shop", wf.id, {"name": "renamed", "definition": {"fromActivities": []}}
        )
        assert replaced_wf.name == "renamed"
        run = await rw.run_workflow("shop", wf.id, {"reason": "test"})
        assert run.workflow_id == wf.id
        assert run.status in ("queued", "started", "completed")
        token = await rw.get_workflow_token("shop", wf.id)
        assert token.token.get_secret_value()
        assert token.token.get_secret_value() not in repr(token)
        sessions = [s async for s in rw.list_run_sessions("shop", workflowId=wf.id)]
        assert [s.id for s in sessions] == [run.run_session_id]
        assert (await rw.get_run_session("shop", sessions[0].id)).workflow_id == wf.id

        persona = await rw.create_persona("shop", {"name": "eager-edgar", "fullName": "Eager Edgar"})
        assert persona.filter_confidence_threshold == 0.5  # the server's default
        assert (await rw.get_persona("shop", persona.id)).full_name == "Eager Edgar"
        updated = await rw.replace_persona("shop", persona.id, {"name": "eager-edgar", "fullName": "Edgar"})
        assert updated.full_name == "Edgar"
        assert [p.name async for p in rw.list_personas("shop")] == ["eager-edgar"]

        await rw.delete_persona("shop", persona.id)
        await rw.delete_workflow("shop", wf.id)
        with pytest.raises(errors.NotFoundError):
            await rw.get_workflow("shop", wf.id)
        await rw.delete_workspace("shop")
    state = emulator.state()
    assert (state["workspaces"], state["workflows"], state["personas"]) == ([], [], [])
    assert hits(emulator, *LOGIN) == 1  # verify() logged in; every later call reused the token


async def test_token_mode(emulator: Any) -> None:
    async with token_client(emulator) as rw:
        await rw.verify()
        await rw.create_workspace({"name": "tok"})
        assert [w.name async for w in rw.list_workspaces()] == ["tok"]
    assert hits(emulator, *LOGIN) == 0
    assert hits(emulator, *REFRESH) == 0


async def test_wrong_credentials_fail_verify_with_auth_errors(emulator: Any) -> None:
    async with token_client(emulator, "not-the-token") as rw:
        with pytest.raises(errors.AuthenticationError) as info:
            await rw.verify()
    assert info.value.status_code == 401
    assert hits(emulator, "GET", "/api/v3/workspaces/") == 1  # a 401 with a static token is final
    async with DocumentedClient(emulator.url, auth.PasswordCredentials(emulator.username, "wrong")) as rw:
        with pytest.raises(errors.AuthError):
            await rw.verify()
        with pytest.raises(errors.AuthenticationError):
            await rw.get_workspace("x")


async def test_expiry_during_a_burst_makes_exactly_one_refresh(emulator_factory: Any) -> None:
    em = emulator_factory(token_lifetime=2.0)
    async with password_client(em) as rw:
        await rw.create_workspace({"name": "burst"})
        await asyncio.sleep(2.05)  # the access token has expired
        em.reset_requests()
        results = await asyncio.gather(*(rw.get_workspace("burst") for _ in range(20)))
    assert [w.name for w in results] == ["burst"] * 20
    assert hits(em, *REFRESH) == 1
    assert hits(em, *LOGIN) == 0
    assert hits(em, "GET", "/api/v3/workspaces/{workspace_name}") == 20  # no 401 and retry


async def test_refresh_token_rotation(emulator_factory: Any) -> None:
    em = emulator_factory(token_lifetime=1.0)
    async with password_client(em) as rw:
        await rw.verify()
        first_refresh = rw._auth._session.refresh.get_secret_value()  # type: ignore[attr-defined]
        for _ in range(2):
            await asyncio.sleep(1.0)
            assert [w async for w in rw.list_workspaces()] == []
        latest_refresh = rw._auth._session.refresh.get_secret_value()  # type: ignore[attr-defined]
    assert latest_refresh != first_refresh
    assert hits(em, *REFRESH) == 2
    assert hits(em, *LOGIN) == 1  # both refreshes used the newest refresh token
    async with httpx.AsyncClient() as raw:  # the rotated-out token is revoked
        answer = await raw.post(em.url + "/api/v3/token/refresh/", json={"refresh": first_refresh})
    assert answer.status_code == 401


async def test_relogin_when_the_refresh_token_was_revoked(emulator_factory: Any) -> None:
    em = emulator_factory(token_lifetime=1.0)
    async with password_client(em) as rw:
        await rw.verify()
        stolen = rw._auth._session.refresh.get_secret_value()  # type: ignore[attr-defined]
        async with httpx.AsyncClient() as raw:  # someone else uses it: the server revokes it
            assert (
                await raw.post(em.url + "/api/v3/token/refresh/", json={"refresh": stolen})
            ).status_code == 200
        await asyncio.sleep(1.0)
        em.reset_requests()
        await rw.create_workspace({"name": "after-relogin"})
    assert hits(em, *REFRESH) == 1  # rejected
    assert hits(em, *LOGIN) == 1  # then a fresh login
    assert [w["name"] for w in em.state()["workspaces"]] == ["after-relogin"]


async def test_401_after_the_emulator_forgot_its_signing_key_relogs_in(emulator_factory: Any) -> None:
    # Tokens from one emulator are not valid at another: the client gets a 401 with a token it
    # believes fresh, refreshes (rejected too), logs in again and retries the call once.
    first = emulator_factory()
    second = emulator_factory()
    retries: list[str] = []
    async with password_client(first, on_retry=lambda m, t, r: retries.append(r)) as rw:
        await rw.verify()
        rw.client._base_url = httpx.URL(second.url)
        rw.client._root = second.url
        assert (await rw.create_workspace({"name": "moved"})).name == "moved"
    assert retries == ["401"]
    assert hits(second, *REFRESH) == 1
    assert hits(second, *LOGIN) == 1
    assert hits(second, "POST", "/api/v3/workspaces/") == 2


# --- pagination ----------------------------------------------------------------------------------


async def test_pagination_over_several_pages(emulator: Any) -> None:
    async with token_client(emulator, page_size=3) as rw:
        await rw.create_workspace({"name": "pages"})
        for i in range(10):
            await rw.create_persona("pages", {"name": f"p{i:02d}"})
        emulator.reset_requests()
        names = [p.name async for p in rw.list_personas("pages")]
    assert names == [f"p{i:02d}" for i in range(10)]
    assert hits(emulator, "GET", "/api/v3/workspaces/{workspace_name}/personas/") == 4


async def test_pagination_uses_the_servers_next_links(emulator_factory: Any) -> None:
    em = emulator_factory(api_token="rw-test-token", extra_args=["--page-size", "5"])
    async with token_client(em, page_size=4) as rw:
        for i in range(9):
            await rw.create_workspace({"name": f"ws-{i}"})
        em.reset_requests()
        names = sorted([w.name async for w in rw.list_workspaces()])
    assert names == sorted(f"ws-{i}" for i in range(9))
    assert hits(em, "GET", "/api/v3/workspaces/") == 3  # our page size (4) wins over the server's (5)


# --- error classes -------------------------------------------------------------------------------


async def test_400_with_field_errors(emulator: Any) -> None:
    async with token_client(emulator) as rw:
        with pytest.raises(errors.InvalidRequestError) as info:
            await rw.create_workspace({"name": "Not_A_Label!", "bogus": 1})
    assert set(info.value.field_errors) == {"name", "bogus"}
    assert info.value.field_errors["bogus"] == ["Unknown field."]
    assert "bogus: Unknown field." in str(info.value)
    assert info.value.status_code == 400
    assert info.value.retryable is False
    assert emulator.state()["workspaces"] == []


async def test_404(emulator: Any) -> None:
    async with token_client(emulator) as rw:
        with pytest.raises(errors.NotFoundError) as info:
            await rw.get_workspace("missing")
        with pytest.raises(errors.NotFoundError):
            [w async for w in rw.list_workflows("missing")]
        with pytest.raises(errors.NotFoundError):
            await rw.delete_workspace("missing")
    assert info.value.status_code == 404
    assert info.value.retryable is False


async def test_429_when_retries_are_exhausted(emulator: Any) -> None:
    emulator.set_faults(rateLimitPerSecond=1)
    async with token_client(emulator, max_attempts=1) as rw:
        results = await asyncio.gather(
            *(rw.get_workspace_status("x") for _ in range(3)), return_exceptions=True
        )
    limited = [r for r in results if isinstance(r, errors.RateLimitedError)]
    assert len(limited) == 2  # the server's bucket holds one request
    assert sum(isinstance(r, errors.NotFoundError) for r in results) == 1
    assert all(r.retry_after is not None and r.retry_after >= 1 for r in limited)
    assert all(r.retryable and r.status_code == 429 for r in limited)
    assert hits(emulator, "GET", "/api/v3/workspaces/{workspace_name}/status") == 3


async def test_5xx_get_is_retried_then_server_error(emulator: Any) -> None:
    emulator.set_faults(errorRate=1.0, seed=7)
    retries: list[str] = []
    async with token_client(
        emulator, max_attempts=3, backoff_base=0.01, on_retry=lambda m, t, r: retries.append(r)
    ) as rw:
        with pytest.raises(errors.ServerError) as info:
            await rw.get_workspace("any")
        with pytest.raises(errors.WriteOutcomeUnknownError) as post_info:
            await rw.create_workspace({"name": "never"})
    assert info.value.status_code in (500, 502, 503)
    assert len(retries) == 2
    assert set(retries) <= {"500", "502", "503"}
    assert hits(emulator, "GET", "/api/v3/workspaces/{workspace_name}") == 3
    assert hits(emulator, "POST", "/api/v3/workspaces/") == 1  # a POST is never retried blindly
    assert post_info.value.retryable is True


async def test_5xx_get_recovers(emulator: Any) -> None:
    async with token_client(emulator, max_attempts=8, backoff_base=0.01) as rw:
        await rw.create_workspace({"name": "flaky"})
        emulator.set_faults(errorRate=0.5, seed=3)
        names = [(await rw.get_workspace("flaky")).name for _ in range(10)]
    assert names == ["flaky"] * 10
    assert hits(emulator, "GET", "/api/v3/workspaces/{workspace_name}") > 10


async def test_transport_error_against_a_closed_port() -> None:
    attempts: list[int] = []
    rw = DocumentedClient(
        f"http://127.0.0.1:{closed_port()}",
        auth.TokenCredentials("whatever-token"),
        max_attempts=3,
        backoff_base=0.01,
        on_request=lambda m, t, s, d, a: attempts.append(a),
    )
    async with rw:
        with pytest.raises(errors.TransportError) as info:
            await rw.get_workspace("x")
        # Nothing was sent: even a POST is retried, and ends as a transport error.
        with pytest.raises(errors.TransportError):
            await rw.create_workspace({"name": "x"})
    assert info.value.retryable is True
    assert info.value.status_code is None
    assert attempts == [1, 2, 3, 1, 2, 3]


# --- 429 storms ----------------------------------------------------------------------------------


async def test_429_storm_backs_off_and_every_request_succeeds(emulator: Any) -> None:
    emulator.set_faults(rateLimitPerSecond=10)
    retries: list[tuple[str, str]] = []
    async with token_client(
        emulator,
        requests_per_second=50,  # deliberately above the server's limit
        burst=50,
        max_attempts=10,
        on_retry=lambda m, t, r: retries.append((t, r)),
    ) as rw:
        started = time.monotonic()
        results = await asyncio.gather(
            *(rw.get_workspace_status("x") for _ in range(25)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
    assert all(isinstance(r, errors.NotFoundError) for r in results)  # every request got a real answer
    assert retries
    assert {reason for _, reason in retries} == {"429"}
    assert elapsed >= 1.0  # Retry-After (whole seconds) was honoured
    state = emulator.state()
    assert state["responses"].get("GET /api/v3/workspaces/{workspace_name}/status 404") == 25


async def test_client_limiter_keeps_under_the_server_limit(emulator: Any) -> None:
    emulator.set_faults(rateLimitPerSecond=10)
    retries: list[str] = []
    async with token_client(
        emulator, requests_per_second=8, burst=1, on_retry=lambda m, t, r: retries.append(r)
    ) as rw:
        started = time.monotonic()
        await asyncio.gather(*(rw.get_workspace_status("x") for _ in range(12)), return_exceptions=True)
        elapsed = time.monotonic() - started
    assert retries == []  # no 429 at all
    assert elapsed >= 11 / 8 - 0.1


# --- writes lost after commit --------------------------------------------------------------------


async def test_create_lost_after_commit_is_outcome_unknown_and_not_duplicated(emulator: Any) -> None:
    async with token_client(emulator) as rw:
        await rw.create_workspace({"name": "base"})
        emulator.set_faults(failAfterCommitRate=1.0, seed=11)
        outcomes = []
        for i in range(4):  # the emulator answers 500 or drops the connection, about half each
            with pytest.raises(errors.WriteOutcomeUnknownError) as info:
                await rw.create_workflow("base", {**WORKFLOW_BODY, "name": f"wf-{i}"})
            outcomes.append(info.value.status_code)
            assert "observe" in str(info.value)
        with pytest.raises(errors.WriteOutcomeUnknownError):
            await rw.create_workspace({"name": "lost"})
        emulator.clear_faults()
        # Observing shows the writes were applied, exactly once each.
        listed = sorted([wf.name async for wf in rw.list_workflows("base")])
    assert listed == [f"wf-{i}" for i in range(4)]
    assert None in outcomes  # at least one dropped connection (no status) ...
    assert 500 in outcomes  # ... and at least one 500 after commit
    state = emulator.state()
    assert sorted(w["name"] for w in state["workspaces"]) == ["base", "lost"]
    assert len(state["workflows"]) == 4
    assert hits(emulator, "POST", "/api/v3/workspaces/{workspace_name}/workflows/") == 4
    assert hits(emulator, "POST", "/api/v3/workspaces/") == 2


async def test_put_lost_after_commit_is_retried_safely(emulator: Any) -> None:
    async with token_client(emulator, max_attempts=6, backoff_base=0.01) as rw:
        await rw.create_workspace({"name": "idem"})
        emulator.set_faults(failAfterCommitRate=0.5, seed=1)
        for i in range(6):
            ws = await rw.replace_workspace("idem", {"name": "idem", "displayName": f"v{i}"})
            assert ws.display_name == f"v{i}"
        emulator.clear_faults()
    assert hits(emulator, "PUT", "/api/v3/workspaces/{workspace_name}") > 6  # some were sent twice
    assert [w["displayName"] for w in emulator.state()["workspaces"]] == ["v5"]
