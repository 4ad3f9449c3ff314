"""Pagination on a scripted transport: following next links, and refusing foreign ones."""

from __future__ import annotations

import httpx
import pytest

from runwhen_operator.runwhen import errors
from tests.client.mockapi import BASE, json_response, make_client, workspace


def paged(total: int, *, next_base: str = BASE):
    def handler(request: httpx.Request) -> httpx.Response:
        size = int(request.url.params.get("page-size", "50"))
        page = int(request.url.params.get("page", "1"))
        items = [workspace(f"ws{i}") for i in range(total)][(page - 1) * size : page * size]
        more = page * size < total
        nxt = f"{next_base}/api/v3/workspaces/?page={page + 1}&page-size={size}" if more else None
        return json_response(200, {"count": total, "next": nxt, "previous": None, "results": items})

    return handler


async def test_follows_next_links_with_the_configured_page_size() -> None:
    rw, rec = make_client(paged(12), page_size=5)
    async with rw:
        names = [w.name async for w in rw.list_workspaces()]
    assert names == [f"ws{i}" for i in range(12)]
    assert [r.url.params["page-size"] for r in rec.requests] == ["5", "5", "5"]
    assert [r.url.params.get("page") for r in rec.requests] == [None, "2", "3"]


async def test_filters_are_sent_on_the_first_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(200, {"count": 0, "next": None, "previous": None, "results": []})

    rw, rec = make_client(handler)
    async with rw:
        assert [i async for i in rw.list_workspace_issues("ws1", severity_lte=2)] == []
        assert [s async for s in rw.list_run_sessions("ws1", source="workflow", workflowId=3, x=None)] == []
    issues, sessions = rec.requests
    assert issues.url.path == "/api/v3/workspaces/ws1/issues"
    assert dict(issues.url.params) == {"closed": "false", "severity__lte": "2", "page-size": "100"}
    assert sessions.url.path == "/api/v3/workspaces/ws1/runsessions"
    assert dict(sessions.url.params) == {"source": "workflow", "workflowId": "3", "page-size": "100"}


@pytest.mark.parametrize(
    "foreign",
    [
        "https://evil.example",  # another host
        "http://papi.test.runwhen.example",  # scheme downgrade
        "https://papi.test.runwhen.example:8443",  # another port
    ],
)
async def test_refuses_next_links_to_another_origin(foreign: str) -> None:
    rw, rec = make_client(paged(12, next_base=foreign), page_size=5)
    seen: list[str] = []

    async def consume() -> None:
        async for w in rw.list_workspaces():
            seen.append(w.name)

    async with rw:
        with pytest.raises(errors.UnexpectedResponseError) as info:
            await consume()
    assert len(seen) == 5
    assert len(rec.requests) == 1
    assert "refusing" in str(info.value)


async def test_refuses_next_links_outside_the_api() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(200, {"count": 9, "next": f"{BASE}/admin/export?page=2", "results": []})

    rw, rec = make_client(handler)
    async with rw:
        with pytest.raises(errors.UnexpectedResponseError):
            [w async for w in rw.list_workspaces()]
    assert len(rec.requests) == 1


async def test_explicit_default_port_is_the_same_origin() -> None:
    rw, rec = make_client(paged(7, next_base="https://papi.test.runwhen.example:443"), page_size=5)
    async with rw:
        assert len([w async for w in rw.list_workspaces()]) == 7
    assert len(rec.requests) == 2


async def test_a_next_link_pointing_back_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        link = f"{BASE}/api/v3/workspaces/?page=2"
        return json_response(200, {"count": 99, "next": link, "results": [workspace()]})

    rw, rec = make_client(handler)
    async with rw:
        with pytest.raises(errors.UnexpectedResponseError):
            [w async for w in rw.list_workspaces()]
    assert len(rec.requests) == 2


async def test_errors_inside_pagination_propagate() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(404, {"detail": "Not found."})

    rw, _ = make_client(handler)
    async with rw:
        with pytest.raises(errors.NotFoundError):
            [w async for w in rw.list_workflows("missing")]
