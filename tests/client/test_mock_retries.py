"""Retries, error mapping and the write-outcome contract, on a scripted transport."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import httpx
import pytest

from runwhen_operator.runwhen import client, documented, errors
from tests.client.mockapi import json_response, make_client, workspace


def scripted(*responses: httpx.Response | Exception) -> Iterator[httpx.Response | Exception]:
    return iter(responses)


def replay(script: Iterator[httpx.Response | Exception]):
    def handler(request: httpx.Request) -> httpx.Response:
        item = next(script)
        if isinstance(item, httpx.TransportError):
            item.request = request
            raise item
        if isinstance(item, Exception):
            raise item
        return item

    return handler


async def test_get_retries_500_502_503_504_then_succeeds() -> None:
    retries: list[tuple[str, str, str]] = []
    attempts: list[tuple[str, str, int | None, int]] = []
    rw, rec = make_client(
        replay(
            scripted(
                json_response(500, {"detail": "boom"}),
                json_response(502, {"detail": "bad gateway"}),
                json_response(503, {"detail": "unavailable"}),
                json_response(504, {"detail": "timeout"}),
                json_response(200, workspace("ws1")),
            )
        ),
        on_retry=lambda m, t, r: retries.append((m, t, r)),
        on_request=lambda m, t, s, d, a: attempts.append((m, t, s, a)),
    )
    async with rw:
        ws = await rw.get_workspace("ws1")
    assert ws.name == "ws1"
    assert len(rec.requests) == 5
    assert [r for _, _, r in retries] == ["500", "502", "503", "504"]
    assert {t for _, t, _ in retries} == {documented.WORKSPACE}
    assert attempts == [
        ("GET", "/api/v3/workspaces/{workspace_name}", s, i + 1)
        for i, s in enumerate([500, 502, 503, 504, 200])
    ]


async def test_get_gives_up_after_max_attempts_with_server_error() -> None:
    rw, rec = make_client(lambda r: json_response(503, {"detail": "down for maintenance"}), max_attempts=3)
    async with rw:
        with pytest.raises(errors.ServerError) as info:
            await rw.get_workspace("ws1")
    assert len(rec.requests) == 3
    assert info.value.status_code == 503
    assert info.value.retryable is True
    assert "down for maintenance" in str(info.value)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_replay_safe_writes_are_retried_on_5xx(method: str) -> None:
    ok = json_response(204) if method == "DELETE" else json_response(200, workspace("ws1"))
    rw, rec = make_client(
        replay(scripted(json_response(500, {"detail": "x"}), httpx.ReadTimeout("slow"), ok))
    )
    async with rw:
        if method == "PUT":
            await rw.replace_workspace("ws1", {"name": "ws1"})
        elif method == "PATCH":
            await rw.patch_workspace("ws1", {"displayName": "x"})
        else:
            await rw.delete_workspace("ws1")
    assert [r.method for r in rec.requests] == [method] * 3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_post_5xx_is_write_outcome_unknown_and_not_retried(status: int) -> None:
    rw, rec = make_client(lambda r: json_response(status, {"detail": "lost"}))
    async with rw:
        with pytest.raises(errors.WriteOutcomeUnknownError) as info:
            await rw.create_workspace({"name": "ws1"})
    assert len(rec.requests) == 1
    assert info.value.retryable is True
    assert info.value.status_code == status
    assert "observe" in str(info.value)


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("t"), httpx.RemoteProtocolError("gone"), httpx.WriteError("w"), httpx.ReadError("r")],
)
async def test_post_transport_error_after_sending_is_write_outcome_unknown(exc: Exception) -> None:
    rw, rec = make_client(replay(scripted(exc)))
    async with rw:
        with pytest.raises(errors.WriteOutcomeUnknownError):
            await rw.create_workflow("ws1", {"name": "wf"})
    assert len(rec.requests) == 1


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("t"), httpx.PoolTimeout("p")]
)
async def test_post_transport_error_before_sending_is_retried(exc: Exception) -> None:
    created = {"id": 7, "name": "wf", "definition": {"fromActivities": []}}
    rw, rec = make_client(replay(scripted(exc, json_response(201, created))))
    async with rw:
        wf = await rw.create_workflow("ws1", {"name": "wf"})
    assert wf.id == 7
    assert len(rec.requests) == 2


async def test_post_429_is_retried_because_it_was_not_applied() -> None:
    created = {"id": 3, "name": "p", "fullName": "P"}
    rw, rec = make_client(
        replay(
            scripted(
                json_response(429, {"detail": "slow down"}, headers={"Retry-After": "0"}),
                json_response(201, created),
            )
        )
    )
    async with rw:
        persona = await rw.create_persona("ws1", {"name": "p"})
    assert persona.id == 3
    assert len(rec.requests) == 2


async def test_retry_after_seconds_is_honoured() -> None:
    rw, rec = make_client(
        replay(
            scripted(
                json_response(429, {"detail": "x"}, headers={"Retry-After": "1"}),
                json_response(200, workspace()),
            )
        ),
        backoff_cap=5.0,
    )
    started = time.monotonic()
    async with rw:
        await rw.get_workspace("ws1")
    assert time.monotonic() - started >= 0.95
    assert len(rec.requests) == 2


async def test_retry_after_http_date_is_honoured() -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    rw, rec = make_client(
        replay(
            scripted(
                json_response(429, {"detail": "x"}, headers={"Retry-After": when}),
                json_response(200, workspace()),
            )
        ),
        backoff_cap=5.0,
    )
    started = time.monotonic()
    async with rw:
        await rw.get_workspace("ws1")
    # The date has one-second resolution: at least ~1 s must have been waited.
    assert time.monotonic() - started >= 0.9
    assert len(rec.requests) == 2


async def test_retry_after_longer_than_the_cap_is_raised_to_the_caller() -> None:
    rw, rec = make_client(lambda r: json_response(429, {"detail": "later"}, headers={"Retry-After": "120"}))
    async with rw:
        with pytest.raises(errors.RateLimitedError) as info:
            await rw.get_workspace("ws1")
    assert len(rec.requests) == 1
    assert info.value.retry_after == 120.0
    assert info.value.retryable is True


async def test_429_exhausted_is_rate_limited_error() -> None:
    rw, rec = make_client(
        lambda r: json_response(429, {"detail": "x"}, headers={"Retry-After": "0"}), max_attempts=4
    )
    async with rw:
        with pytest.raises(errors.RateLimitedError) as info:
            await rw.create_workspace({"name": "a"})
    assert len(rec.requests) == 4
    assert info.value.status_code == 429


async def test_backoff_grows_exponentially_with_full_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    bounds: list[tuple[float, float]] = []
    rw, _ = make_client(
        lambda r: json_response(502, {"detail": "x"}), max_attempts=6, backoff_base=0.01, backoff_cap=0.04
    )

    async def record(delay: float) -> None:
        sleeps.append(delay)

    def top_of_range(lo: float, hi: float) -> float:
        bounds.append((lo, hi))
        return hi

    monkeypatch.setattr(rw._random, "uniform", top_of_range)
    monkeypatch.setattr(client.asyncio, "sleep", record)
    async with rw:
        with pytest.raises(errors.ServerError):
            await rw.get_workspace("ws1")
    assert [lo for lo, _ in bounds] == [0.0] * 5
    assert sleeps == pytest.approx([0.01, 0.02, 0.04, 0.04, 0.04])


async def test_delete_answering_404_after_an_ambiguous_attempt_counts_as_deleted() -> None:
    rw, rec = make_client(
        replay(scripted(json_response(502, {"detail": "x"}), json_response(404, {"detail": "gone"})))
    )
    async with rw:
        await rw.delete_workflow("ws1", 3)
    assert len(rec.requests) == 2


async def test_delete_of_a_missing_object_is_not_found() -> None:
    rw, _ = make_client(lambda r: json_response(404, {"detail": "Not found."}))
    async with rw:
        with pytest.raises(errors.NotFoundError) as info:
            await rw.delete_workflow("ws1", 3)
    assert info.value.retryable is False
    assert "Not found." in str(info.value)


async def test_redirects_are_not_followed() -> None:
    rw, rec = make_client(lambda r: httpx.Response(302, headers={"Location": "https://elsewhere.example/x"}))
    async with rw:
        with pytest.raises(errors.UnexpectedResponseError) as info:
            await rw.create_workspace({"name": "a"})
    assert len(rec.requests) == 1
    assert info.value.status_code == 302


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, {"name": ["Enter a valid name."]}, errors.InvalidRequestError),
        (422, {"name": ["Enter a valid name."]}, errors.InvalidRequestError),
        (401, {"detail": "Invalid token."}, errors.AuthenticationError),
        (403, {"detail": "Forbidden."}, errors.PermissionDeniedError),
        (404, {"detail": "Not found."}, errors.NotFoundError),
        (409, {"detail": "Conflict."}, errors.ConflictError),
        (405, {"detail": "Method not allowed."}, errors.UnexpectedResponseError),
        (501, {"detail": "Not implemented."}, errors.ServerError),
    ],
)
async def test_status_codes_map_to_error_classes(
    status: int, body: dict, cls: type[errors.RunWhenError]
) -> None:
    rw, rec = make_client(lambda r: json_response(status, body))
    async with rw:
        with pytest.raises(cls) as info:
            await rw.replace_workspace("ws1", {"name": "ws1"})
    assert type(info.value) is cls
    assert info.value.status_code == status
    assert len(rec.requests) == 1
    assert isinstance(info.value, errors.RunWhenError)


async def test_field_errors_are_parsed_and_summarised() -> None:
    body = {
        "name": ["Enter a valid name."],
        "definition": {"fromActivities": [{}, {"name": ["This field is required."]}]},
        "non_field_errors": ["Something is off."],
    }
    rw, _ = make_client(lambda r: json_response(400, body))
    async with rw:
        with pytest.raises(errors.InvalidRequestError) as info:
            await rw.create_workflow("ws1", {"name": "Bad Name"})
    assert info.value.field_errors == {
        "name": ["Enter a valid name."],
        "definition.fromActivities[1].name": ["This field is required."],
        "non_field_errors": ["Something is off."],
    }
    assert "name: Enter a valid name." in str(info.value)
    assert "definition.fromActivities[1].name: This field is required." in str(info.value)
    assert info.value.retryable is False


async def test_non_json_error_body_is_not_quoted() -> None:
    rw, _ = make_client(lambda r: httpx.Response(500, text="<html>secret stack trace</html>"), max_attempts=1)
    async with rw:
        with pytest.raises(errors.ServerError) as info:
            await rw.get_workspace("ws1")
    assert "stack trace" not in str(info.value)
    assert "500" in str(info.value)


async def test_invalid_success_body_is_unexpected_response() -> None:
    rw, _ = make_client(lambda r: json_response(200, {"displayName": "no name"}))
    async with rw:
        with pytest.raises(errors.UnexpectedResponseError) as info:
            await rw.get_workspace("ws1")
    assert "name" in str(info.value)


async def test_fatal_transport_error_is_not_retried() -> None:
    rw, rec = make_client(replay(scripted(httpx.UnsupportedProtocol("nope"))))
    async with rw:
        with pytest.raises(errors.TransportError) as info:
            await rw.get_workspace("ws1")
    assert info.value.retryable is False
    assert len(rec.requests) == 1


async def test_get_transport_errors_retried_then_transport_error() -> None:
    rw, rec = make_client(replay(scripted(*[httpx.ConnectError("refused")] * 3)), max_attempts=3)
    async with rw:
        with pytest.raises(errors.TransportError) as info:
            await rw.get_workspace("ws1")
    assert info.value.retryable is True
    assert info.value.status_code is None
    assert len(rec.requests) == 3


async def test_hook_failures_do_not_break_requests() -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("hook bug")

    rw, _ = make_client(
        replay(scripted(json_response(503, {"detail": "x"}), json_response(200, workspace()))),
        on_request=broken,
        on_retry=broken,
    )
    async with rw:
        assert (await rw.get_workspace("ws1")).name == "ws1"


async def test_closed_client_refuses_requests() -> None:
    """A closed client (its connection rebuilt or removed) sends nothing: a transport error the
    caller's pass handles, never a crash."""
    seen: list[httpx.Request] = []
    rw, _ = make_client(lambda r: seen.append(r) or json_response(200, workspace()))
    await rw.aclose()
    await rw.aclose()
    with pytest.raises(errors.TransportError, match="not sent"):
        await rw.get_workspace("ws1")
    assert seen == []
