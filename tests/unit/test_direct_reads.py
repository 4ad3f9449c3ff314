"""``Api.read_workspace`` and ``Api.read_child`` of both dialects against the emulator (in this
process, on a loopback port): the object when it is there, None on a 404 (no such object, or no such
workspace), on the paths each dialect's document gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from runwhen_operator.emulator import app, core
from runwhen_operator.runwhen import auth, client, dialect, documented, platform
from tests.support.emulator import SAMPLE_DEFINITION

TOKEN = "direct-read-test-token"
DEFINITION = SAMPLE_DEFINITION


@pytest.fixture(params=["platform", "documented"])
async def api(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    config = core.EmulatorConfig(port=0, dialect=request.param, api_token=TOKEN)
    async with app.run_emulator(config) as url:
        rw = client.RunWhenClient(url, auth.TokenCredentials(TOKEN), backoff_base=0.001, max_attempts=2)
        which = platform.PlatformApi if request.param == "platform" else documented.DocumentedApi
        yield which(rw)
        await rw.aclose()


async def test_read_workspace(api: Any) -> None:
    await api.new_workspace("ops", {"displayName": "Ops"})
    found = await api.read_workspace("ops")
    assert found is not None
    assert found["name"] == "ops"
    assert found["displayName"] == "Ops"
    assert await api.read_workspace("nowhere") is None


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (dialect.WORKFLOW, {"name": "restart", "definition": DEFINITION}),
        (dialect.PERSONA, {"name": "edgar", "fullName": "Eager Edgar"}),
    ],
    ids=["workflow", "persona"],
)
async def test_read_child(api: Any, kind: dialect.ChildKind, body: dict[str, Any]) -> None:
    await api.new_workspace("ops", {})
    created = await api.new_child(kind, "ops", body)
    key = created[api.child_key]
    found = await api.read_child(kind, "ops", key)
    assert found is not None
    assert (found["name"], found["id"]) == (body["name"], created["id"])
    # The same canonical item a listing holds.
    [listed] = [i for i in await api.child_listing(kind, "ops") if i["name"] == body["name"]]
    assert {k: found[k] for k in ("name", "id")} == {k: listed[k] for k in ("name", "id")}
    await api.remove_child(kind, "ops", key)
    assert await api.read_child(kind, "ops", key) is None
    missing = "nobody" if api.child_key == "name" else 424242
    assert await api.read_child(kind, "ops", missing) is None
    assert await api.read_child(kind, "no-such-workspace", missing) is None
