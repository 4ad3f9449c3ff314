"""The connection registry's verdicts: a refused request asks for a re-check without flipping the
connection (one object's 401 must not re-queue every dependent), and a connection whose Secret is
gone keeps its client for the deletions of its objects."""

from __future__ import annotations

from typing import Any

import pytest

from runwhen_operator.reconcile import connections
from runwhen_operator.runwhen import apis, errors

CID: connections.ConnectionId = ("RunWhenConnection", "ns", "local")
SETTINGS = connections.Settings(url="https://papi.example.com", secret_data={"token": "t0k3n-value"})


class FakeClient:
    def __init__(self, url: str, credentials: Any, **_: Any) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def verdicts(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    """What the next verifications answer (None: verified), in order."""
    answers: list[BaseException | None] = []

    async def verify(client: Any, pinned: Any) -> Any:
        answer = answers.pop(0) if answers else None
        if answer is not None:
            raise answer
        return object()

    monkeypatch.setattr(apis, "verify", verify)
    return answers


async def test_a_refused_request_asks_for_one_recheck_and_leaves_the_verdict(verdicts: list[Any]) -> None:
    registry = connections.Registry(client_factory=FakeClient)
    await registry.ensure(CID, SETTINGS)
    conn = await registry.verify(CID)
    assert conn.ready
    assert registry.request_recheck(CID) is True
    assert registry.request_recheck(CID) is False  # asked already: the connection is not woken again
    assert conn.ready, "one object's refusal does not make the connection unusable for the others"
    conn = await registry.verify(CID)
    assert (conn.ready, conn.recheck) == (True, False)
    assert registry.request_recheck(CID) is True
    verdicts.append(errors.AuthenticationError("RunWhen login as 'x' failed: 401"))
    conn = await registry.verify(CID)
    assert (conn.ready, conn.reason) == (False, "Unauthorized")
    assert registry.request_recheck(("RunWhenConnection", "ns", "unknown")) is False


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (errors.InvalidTokenError("the token is already expired"), "InvalidToken"),
        (errors.PermissionDeniedError("GET /api/v3/workspaces -> 403: no"), "Forbidden"),
        (errors.AuthenticationError("401"), "Unauthorized"),
        (errors.ServerError("503", status_code=503), "Unreachable"),
    ],
)
async def test_verify_names_what_went_wrong(verdicts: list[Any], error: Exception, reason: str) -> None:
    registry = connections.Registry(client_factory=FakeClient)
    await registry.ensure(CID, SETTINGS)
    verdicts.append(error)
    conn = await registry.verify(CID)
    assert (conn.ready, conn.reason) == (False, reason)


async def test_a_gone_secret_keeps_the_client_for_deletions(verdicts: list[Any]) -> None:
    registry = connections.Registry(client_factory=FakeClient)
    conn, _ = await registry.ensure(CID, SETTINGS)
    await registry.verify(CID)
    registry.retain_for_deletions(CID, "SecretNotFound", "Secret ns/creds not found")
    kept = registry.get(CID)
    assert kept is conn
    assert (kept.ready, kept.retained, kept.reason) == (False, True, "SecretNotFound")
    assert not conn.client.closed  # type: ignore[attr-defined]
    assert kept.api is not None
    # The Secret is back: verified again, nothing retained any more.
    again, rebuilt = await registry.ensure(CID, SETTINGS)
    assert not rebuilt
    await registry.verify(CID)
    assert (again.ready, again.retained) == (True, False)
    await registry.remove(CID)
    assert conn.client.closed  # type: ignore[attr-defined]
