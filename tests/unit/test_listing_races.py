"""Local writes against list calls in flight, and listings that lie or lag behind.

The listing cache must not let a list answer that began before a create (or a delete) undo it, and
the externals with the engine must never create a second object, or skip a DELETE, on a miss that a
direct read, or this process's own recent create, contradicts. A scripted server stands in for
RunWhen: its listings can leave objects out, its direct reads can lag, and a list call can be held
in flight (its answer is what the server held when the call began).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any, cast

import pytest

from runwhen_operator.reconcile import engine, externals, listing
from runwhen_operator.runwhen import dialect, errors

Item = dict[str, Any]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Gate:
    """Holds list calls in flight: each one waits until released."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.waiting = 0

    async def wait(self) -> None:
        self.waiting += 1
        await self.event.wait()

    def release(self) -> None:
        self.event.set()


# --- the listing cache ---------------------------------------------------------------------------


def held_loader(snapshot: list[Item], gate: Gate) -> Any:
    calls = 0

    async def loader() -> list[Item]:
        nonlocal calls
        calls += 1
        answer = [dict(i) for i in snapshot]  # the server as it was when the call began
        await gate.wait()
        return answer

    loader.calls = lambda: calls  # type: ignore[attr-defined]
    return loader


async def until_waiting(gate: Gate, n: int = 1) -> None:
    for _ in range(100):
        if gate.waiting >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError("the list call never started")


async def test_a_create_folded_in_during_a_list_survives_its_older_answer() -> None:
    cache = listing.ListingCache(clock=Clock())
    gate = Gate()
    loader = held_loader([{"id": 1, "name": "old"}], gate)
    flight = asyncio.create_task(cache.get("s", loader, id_field="id", max_age=60))
    await until_waiting(gate)
    cache.upsert("s", {"id": 2, "name": "new"})  # created while the list call is out
    gate.release()
    answered = await flight
    assert answered.find(2) == {"id": 2, "name": "new"}
    cached = await cache.get("s", loader, id_field="id", max_age=60)
    assert cached.find(2) == {"id": 2, "name": "new"}
    assert cached.find(1) == {"id": 1, "name": "old"}
    assert loader.calls() == 1


async def test_a_create_survives_the_refresh_of_a_cached_listing() -> None:
    clock = Clock()
    cache = listing.ListingCache(clock=clock)
    first = Gate()
    first.release()
    await cache.get("s", held_loader([], first), id_field="id", max_age=60)
    clock.now += 100  # too old now: the next reader lists again
    gate = Gate()
    loader = held_loader([], gate)
    flight = asyncio.create_task(cache.get("s", loader, id_field="id", max_age=60))
    await until_waiting(gate)
    cache.upsert("s", {"id": 2, "name": "new"})
    gate.release()
    await flight
    assert (await cache.get("s", loader, id_field="id", max_age=60)).find(2) is not None


async def test_an_update_folded_in_during_a_list_wins_over_its_older_answer() -> None:
    cache = listing.ListingCache(clock=Clock())
    gate = Gate()
    loader = held_loader([{"id": 1, "v": "before"}], gate)
    flight = asyncio.create_task(cache.get("s", loader, id_field="id", max_age=60))
    await until_waiting(gate)
    cache.upsert("s", {"id": 1, "v": "after"})
    gate.release()
    await flight
    assert (await cache.get("s", loader, id_field="id", max_age=60)).find(1) == {"id": 1, "v": "after"}


async def test_a_delete_folded_in_during_a_list_does_not_come_back() -> None:
    cache = listing.ListingCache(clock=Clock())
    gate = Gate()
    loader = held_loader([{"id": 1}, {"id": 2}], gate)
    flight = asyncio.create_task(cache.get("s", loader, id_field="id", max_age=60))
    await until_waiting(gate)
    cache.remove("s", 1)
    gate.release()
    assert (await flight).find(1) is None
    cached = await cache.get("s", loader, id_field="id", max_age=60)
    assert cached.find(1) is None
    assert cached.find(2) == {"id": 2}


async def test_single_flight_holds_and_every_waiter_sees_the_write() -> None:
    cache = listing.ListingCache(clock=Clock())
    gate = Gate()
    loader = held_loader([], gate)
    first = asyncio.create_task(cache.get("s", loader, id_field="id", max_age=60))
    await until_waiting(gate)
    cache.upsert("s", {"id": 5})
    others = [asyncio.create_task(cache.get("s", loader, id_field="id", max_age=0)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.release()
    results = await asyncio.gather(first, *others)
    assert loader.calls() == 1
    assert all(r.find(5) == {"id": 5} for r in results)


async def test_writes_before_a_list_began_do_not_override_its_answer() -> None:
    clock = Clock()
    cache = listing.ListingCache(clock=clock)
    done = Gate()
    done.release()
    await cache.get("s", held_loader([{"id": 1, "v": "a"}, {"id": 2}], done), id_field="id", max_age=60)
    cache.upsert("s", {"id": 1, "v": "ours"})
    cache.remove("s", 2)
    clock.now += 100
    # Listed after those writes: the server's answer is the truth (someone changed 1, made 2 again).
    fresh = held_loader([{"id": 1, "v": "theirs"}, {"id": 2}], done)
    got = await cache.get("s", fresh, id_field="id", max_age=60)
    assert got.find(1) == {"id": 1, "v": "theirs"}
    assert got.find(2) == {"id": 2}


async def test_an_invalidated_answer_carries_the_writes_but_is_not_kept() -> None:
    cache = listing.ListingCache(clock=Clock())
    gate = Gate()
    loader = held_loader([], gate)
    flight = asyncio.create_task(cache.get("s", loader, id_field="id", max_age=60))
    await until_waiting(gate)
    cache.upsert("s", {"id": 3})
    cache.invalidate("s")
    gate.release()
    assert (await flight).find(3) == {"id": 3}
    done = Gate()
    done.release()
    again = held_loader([{"id": 3}, {"id": 4}], done)
    assert (await cache.get("s", again, id_field="id", max_age=60)).find(4) == {"id": 4}
    assert again.calls() == 1  # listed again: the invalidated answer was not stored


async def test_a_failed_list_leaves_no_write_to_replay() -> None:
    clock = Clock()
    cache = listing.ListingCache(clock=clock)
    gate = Gate()

    async def failing() -> list[Item]:
        await gate.wait()
        raise RuntimeError("boom")

    flight = asyncio.create_task(cache.get("s", failing, id_field="id", max_age=60))
    await until_waiting(gate)
    cache.upsert("s", {"id": 9})
    gate.release()
    with pytest.raises(RuntimeError):
        await flight
    clock.now += 1
    done = Gate()
    done.release()
    # The next list began after the write: what it answers is the truth (9 is gone since).
    assert (await cache.get("s", held_loader([], done), id_field="id", max_age=60)).find(9) is None


async def test_recently_created_lasts_the_grace_or_until_the_server_shows_it() -> None:
    clock = Clock()
    cache = listing.ListingCache(clock=clock, create_grace=10.0)
    assert cache.create_grace == 10.0
    assert listing.ListingCache().create_grace == 30.0
    cache.mark_created("s", "a")
    cache.mark_created("s", "b")
    cache.mark_created("s", "c")
    assert cache.recently_created("s", "a")
    assert not cache.recently_created("s", "x")
    assert not cache.recently_created("other", "a")
    clock.now += 1
    done = Gate()
    done.release()
    # A listing that began after the creates and shows "b": the server has caught up with "b".
    await cache.get("s", held_loader([{"id": 1, "name": "b"}], done), id_field="id", max_age=0)
    assert not cache.recently_created("s", "b")
    assert cache.recently_created("s", "a")
    cache.clear_created("s", "c")  # seen by a direct read, or deleted
    assert not cache.recently_created("s", "c")
    clock.now += 8.5  # 9.5 s after the create
    assert cache.recently_created("s", "a")
    clock.now += 1
    assert not cache.recently_created("s", "a")  # the grace is over: a miss is believed again


async def test_a_listing_begun_before_the_create_does_not_end_the_grace() -> None:
    cache = listing.ListingCache(clock=Clock())
    gate = Gate()
    # Began before "a" was created (or at the same clock reading), and shows an older object of
    # that name, since deleted: that says nothing of ours.
    loader = held_loader([{"id": 1, "name": "a"}], gate)
    flight = asyncio.create_task(cache.get("s", loader, id_field="id", max_age=0))
    await until_waiting(gate)
    cache.mark_created("s", "a")
    gate.release()
    await flight
    assert cache.recently_created("s", "a")


def test_create_grace_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        listing.ListingCache(create_grace=-1.0)


# --- a scripted server behind the externals --------------------------------------------------------


class Server:
    """A RunWhen server in one dialect's canonical shapes: workspaces, and the workflows of each
    workspace. ``unlisted``: names its listings leave out; ``unreadable``: names its direct reads
    answer 404 for; ``gate``: holds listing calls in flight (answering what was there at their start)."""

    def __init__(self, *, child_key: str = "id") -> None:
        self.child_key = child_key
        self.idempotent_child_create = child_key == "name"
        self.api_dialect = dialect.Dialect.PLATFORM if child_key == "name" else dialect.Dialect.DOCUMENTED
        self.workspaces: list[Item] = []
        self.workflows: dict[str, list[Item]] = {}
        self.unlisted: set[str] = set()
        self.unreadable: set[str] = set()
        self.gate: Gate | None = None
        self.calls: list[str] = []
        self._ids = itertools.count(1)

    def posts(self, what: str) -> int:
        return self.calls.count(f"POST {what}")

    async def _listed(self, items: list[Item]) -> list[Item]:
        answer = [dict(i) for i in items if i["name"] not in self.unlisted]
        if self.gate is not None:
            await self.gate.wait()
        return answer

    # workspaces
    @staticmethod
    def workspace_body(body: Mapping[str, Any]) -> Item:
        return dict(body)

    async def workspace_listing(self) -> list[Item]:
        self.calls.append("LIST workspaces")
        return await self._listed(self.workspaces)

    async def read_workspace(self, name: str) -> Item | None:
        self.calls.append(f"GET workspace {name}")
        if name in self.unreadable:
            return None
        return next((dict(w) for w in self.workspaces if w["name"] == name), None)

    async def new_workspace(self, name: str, body: Mapping[str, Any]) -> Item:
        self.calls.append("POST workspace")
        item = {"name": name, **body}
        self.workspaces.append(item)
        self.workflows.setdefault(name, [])
        return dict(item)

    async def change_workspace(self, name: str, changes: Mapping[str, Any]) -> Item:
        self.calls.append(f"PATCH workspace {name}")
        for w in self.workspaces:
            if w["name"] == name:
                w.update(changes)
                return dict(w)
        raise errors.NotFoundError(name)

    async def remove_workspace(self, name: str) -> None:
        self.calls.append(f"DELETE workspace {name}")
        before = len(self.workspaces)
        self.workspaces = [w for w in self.workspaces if w["name"] != name]
        if len(self.workspaces) == before:
            raise errors.NotFoundError(name)

    # workflows
    def _find(self, workspace: str, key: Any) -> Item | None:
        field = self.child_key
        return next((w for w in self.workflows.get(workspace, []) if w[field] == key), None)

    async def child_listing(self, kind: dialect.ChildKind, workspace: str) -> list[Item]:
        self.calls.append(f"LIST {kind.label}s")
        if workspace not in self.workflows:
            raise errors.NotFoundError(workspace)
        return await self._listed(self.workflows[workspace])

    async def read_child(self, kind: dialect.ChildKind, workspace: str, key: Any) -> Item | None:
        self.calls.append(f"GET {kind.label} {key}")
        found = self._find(workspace, key)
        if found is None or found["name"] in self.unreadable:
            return None
        return dict(found)

    async def new_child(self, kind: dialect.ChildKind, workspace: str, body: Mapping[str, Any]) -> Item:
        self.calls.append(f"POST {kind.label}")
        if self.idempotent_child_create:
            existing = self._find(workspace, body["name"])
            if existing is not None:
                existing.update(body)
                return dict(existing)
        item = {"id": next(self._ids), **body}
        self.workflows[workspace].append(item)
        return dict(item)

    async def change_child(
        self, kind: dialect.ChildKind, workspace: str, key: Any, body: Mapping[str, Any]
    ) -> Item:
        self.calls.append(f"PUT {kind.label} {key}")
        found = self._find(workspace, key)
        if found is None:
            raise errors.NotFoundError(str(key))
        found.update(body)
        return dict(found)

    async def remove_child(self, kind: dialect.ChildKind, workspace: str, key: Any) -> None:
        self.calls.append(f"DELETE {kind.label} {key}")
        found = self._find(workspace, key)
        if found is None:
            raise errors.NotFoundError(str(key))
        self.workflows[workspace].remove(found)

    # what a third party does behind the operator's back
    def delete_behind(self, workspace: str, name: str) -> None:
        self.workflows[workspace] = [w for w in self.workflows[workspace] if w["name"] != name]


WS = "prod"
SCOPE = ("ClusterRunWhenConnection", "", "default")


def world(
    *, child_key: str = "id", max_age: float = 60.0, grace: float = 30.0
) -> tuple[Server, Clock, listing.ListingCache, externals.ChildExternal, externals.WorkspaceExternal]:
    server = Server(child_key=child_key)
    server.workflows[WS] = []
    server.workspaces.append({"name": WS})
    clock = Clock()
    cache = listing.ListingCache(clock=clock, create_grace=grace)
    api = cast(dialect.Api, server)
    child = externals.ChildExternal(api, dialect.WORKFLOW, cache, SCOPE, max_age)
    ws = externals.WorkspaceExternal(api, cache, SCOPE, max_age)
    return server, clock, cache, child, ws


def wf(name: str) -> externals.ChildDesired:
    return externals.ChildDesired(workspace=WS, name=name, body={"name": name, "definition": {"n": name}})


async def run(external: Any, desired: Any, **request: Any) -> engine.Outcome:
    async def mark_pending() -> None: ...

    return await engine.reconcile(engine.Request(desired=desired, **request), external, mark_pending)


# --- writes racing list calls, through the externals -------------------------------------------------


def child_scope() -> Any:
    return (SCOPE, "workflow", WS)


@pytest.mark.parametrize("recorded", [True, False], ids=["id recorded, reads lag", "pending, status lost"])
async def test_a_pass_joining_a_list_begun_before_our_create_does_not_create_again(recorded: bool) -> None:
    # No grace here: the journal alone must keep the create (a direct read cannot help, it lags).
    server, _, cache, child, _ = world(child_key="id", max_age=0.0, grace=0.0)
    server.gate = Gate()
    # Another object's pass lists the workspace's workflows; the call is still out.
    other = asyncio.create_task(
        cache.get(child_scope(), lambda: server.child_listing(dialect.WORKFLOW, WS), id_field="id", max_age=0)
    )
    await until_waiting(server.gate)
    created = await child.create(wf("triage"))  # a pass that had looked earlier creates it meanwhile
    server.unreadable.add("triage")
    # The next pass looks fresh (a requested reconcile, or a pending create) and joins that call.
    request = {"external_id": created.external_id} if recorded else {"create_pending": True}
    again = asyncio.create_task(run(child, wf("triage"), **request))
    await asyncio.sleep(0)
    assert not again.done()
    server.gate.release()
    outcome = await again
    await other
    assert server.posts("workflow") == 1, server.calls
    assert outcome.action is engine.Action.NONE
    assert outcome.ready is not None
    assert outcome.ready.reason == engine.REASON_AVAILABLE
    assert outcome.external_id == created.external_id


async def test_a_deleted_workspace_does_not_come_back_from_an_older_listing() -> None:
    server, _, cache, _, ws = world(max_age=60.0)
    server.workspaces.append({"name": "old"})
    server.gate = Gate()
    other = asyncio.create_task(
        cache.get((SCOPE, "workspaces"), server.workspace_listing, id_field="name", max_age=0)
    )
    await until_waiting(server.gate)
    desired = externals.WorkspaceDesired(name="old")
    await ws.delete(desired, engine.Observation(exists=True, external_id="old"))  # deleted meanwhile
    server.gate.release()
    await other
    # A new Workspace of that name: the cached listing must not show the deleted one.
    outcome = await run(ws, desired)
    assert outcome.action is engine.Action.CREATE, outcome
    assert server.posts("workspace") == 1


# --- listings that lie or lag behind ----------------------------------------------------------------


def desired_of(kind: str, name: str) -> Any:
    return externals.WorkspaceDesired(name=name) if kind == "workspace" else wf(name)


KINDS = [("workspace", "id"), ("workflow", "id"), ("workflow", "name")]
KIND_IDS = ["workspace", "workflow by id", "workflow by short name"]


def pick(kind: str, child: Any, ws: Any) -> Any:
    return ws if kind == "workspace" else child


@pytest.mark.parametrize(("kind", "child_key"), KINDS, ids=KIND_IDS)
async def test_ours_left_out_of_listings_is_read_directly_not_created_again(
    kind: str, child_key: str
) -> None:
    server, clock, _, child, ws = world(child_key=child_key)
    external = pick(kind, child, ws)
    created = await run(external, desired_of(kind, "triage"))
    assert created.action is engine.Action.CREATE
    clock.now += 100  # the cached listing is old, and the grace is over: only the read can tell
    server.unlisted.add("triage")
    outcome = await run(external, desired_of(kind, "triage"), external_id=created.external_id)
    assert server.posts(kind) == 1, server.calls
    assert outcome.action is engine.Action.NONE
    assert outcome.ready is not None
    assert outcome.ready.reason == engine.REASON_AVAILABLE
    assert outcome.external_id == created.external_id
    assert any(c.startswith(f"GET {kind}") for c in server.calls), server.calls


@pytest.mark.parametrize(("kind", "child_key"), KINDS, ids=KIND_IDS)
async def test_a_lagging_server_after_our_create_is_asked_again_not_written_again(
    kind: str, child_key: str
) -> None:
    server, clock, _, child, ws = world(child_key=child_key, max_age=1.0)
    external = pick(kind, child, ws)
    created = await run(external, desired_of(kind, "triage"))
    # The server does not show what it just made, in listings nor in reads, for a while.
    server.unlisted.add("triage")
    server.unreadable.add("triage")
    for _ in range(3):
        clock.now += 5
        outcome = await run(external, desired_of(kind, "triage"), external_id=created.external_id)
        assert outcome.requeue is engine.Requeue.SOON
        assert outcome.action is engine.Action.NONE
        assert outcome.synced.reason == engine.REASON_CREATING
        assert outcome.ready is None  # recorded as ours: Ready stays as it was
        assert outcome.external_id == created.external_id
        assert server.posts(kind) == 1, server.calls
    clock.now += 30  # past the grace: "not found" is believed, it is made again
    outcome = await run(external, desired_of(kind, "triage"), external_id=created.external_id)
    assert outcome.action is engine.Action.CREATE
    assert [e.reason for e in outcome.events] == ["Recreated"]
    assert server.posts(kind) == 2


async def test_a_pending_create_not_shown_yet_waits_with_creating() -> None:
    server, clock, _, child, _ = world(child_key="id")
    await child.create(wf("triage"))  # its answer made it, the status write did not
    server.unlisted.add("triage")
    clock.now += 1
    outcome = await run(child, wf("triage"), create_pending=True)
    assert (outcome.requeue, outcome.action) == (engine.Requeue.SOON, engine.Action.NONE)
    assert outcome.ready is not None
    assert outcome.ready.reason == engine.REASON_CREATING
    assert outcome.create_pending is True
    assert server.posts("workflow") == 1


async def test_the_grace_ends_once_the_server_has_shown_the_object() -> None:
    server, clock, _, child, _ = world(child_key="id", max_age=0.0)
    created = await run(child, wf("triage"))
    clock.now += 1
    seen = await run(child, wf("triage"), external_id=created.external_id)
    assert seen.action is engine.Action.NONE  # listed: the server has caught up
    server.delete_behind(WS, "triage")
    clock.now += 1
    outcome = await run(child, wf("triage"), external_id=created.external_id)
    assert outcome.action is engine.Action.CREATE  # a real remote delete: recreated at once
    assert [e.reason for e in outcome.events] == ["Recreated"]


async def test_a_delete_ends_the_grace_for_a_new_object_of_that_name() -> None:
    server, clock, _, child, _ = world(child_key="id", max_age=0.0)
    created = await run(child, wf("triage"))
    gone = await run(child, wf("triage"), external_id=created.external_id, deleting=True)
    assert gone.finalized
    clock.now += 1
    outcome = await run(child, wf("triage"))
    assert outcome.action is engine.Action.CREATE
    assert server.posts("workflow") == 2


@pytest.mark.parametrize(("kind", "child_key"), KINDS, ids=KIND_IDS)
async def test_a_delete_is_sent_whatever_the_listing_and_the_read_say(kind: str, child_key: str) -> None:
    server, clock, _, child, ws = world(child_key=child_key)
    external = pick(kind, child, ws)
    created = await run(external, desired_of(kind, "triage"))
    clock.now += 100
    server.unlisted.add("triage")
    server.unreadable.add("triage")
    outcome = await run(external, desired_of(kind, "triage"), external_id=created.external_id, deleting=True)
    assert outcome.finalized
    assert any(c.startswith(f"DELETE {kind}") for c in server.calls), server.calls
    names = [w["name"] for w in (server.workspaces if kind == "workspace" else server.workflows[WS])]
    assert "triage" not in names  # nothing leaked


async def test_a_404_on_delete_moments_after_our_create_is_not_trusted() -> None:
    server, clock, _, child, _ = world(child_key="id")
    created = await run(child, wf("triage"))
    server.delete_behind(WS, "triage")  # or a server that does not show it yet: the same answers
    clock.now += 1
    outcome = await run(child, wf("triage"), external_id=created.external_id, deleting=True)
    assert not outcome.finalized
    assert outcome.requeue is engine.Requeue.SOON
    assert outcome.synced.reason == engine.REASON_DELETING
    clock.now += 30
    outcome = await run(child, wf("triage"), external_id=created.external_id, deleting=True)
    assert outcome.finalized


# --- answers about another object ----------------------------------------------------------------


class Renaming(Server):
    """A server whose answers to writes name another object than the one asked for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lie = True

    async def new_workspace(self, name: str, body: Mapping[str, Any]) -> Item:
        item = await super().new_workspace(name, body)
        return {**item, "name": "someone-else"} if self.lie else item

    async def change_workspace(self, name: str, changes: Mapping[str, Any]) -> Item:
        item = await super().change_workspace(name, changes)
        return {**item, "name": "someone-else"} if self.lie else item

    async def new_child(self, kind: dialect.ChildKind, workspace: str, body: Mapping[str, Any]) -> Item:
        item = await super().new_child(kind, workspace, body)
        return {**item, "name": "someone-else"} if self.lie else item

    async def change_child(
        self, kind: dialect.ChildKind, workspace: str, key: Any, body: Mapping[str, Any]
    ) -> Item:
        item = await super().change_child(kind, workspace, key, body)
        return {**item, "id": 9999} if self.lie else item


def lying_world(child_key: str = "id") -> tuple[Renaming, Clock, Any, Any]:
    server = Renaming(child_key=child_key)
    server.workflows[WS] = []
    server.workspaces.append({"name": WS})
    clock = Clock()
    cache = listing.ListingCache(clock=clock)
    api = cast(dialect.Api, server)
    child = externals.ChildExternal(api, dialect.WORKFLOW, cache, SCOPE, 0.0)
    ws = externals.WorkspaceExternal(api, cache, SCOPE, 0.0)
    return server, clock, child, ws


@pytest.mark.parametrize("kind", ["workspace", "workflow"])
async def test_a_create_answered_with_another_name_records_nothing_of_it(kind: str) -> None:
    server, clock, child, ws = lying_world()
    external = pick(kind, child, ws)
    outcome = await run(external, desired_of(kind, "triage"))
    assert outcome.synced.reason == engine.REASON_IDENTITY_MISMATCH
    assert "someone-else" in outcome.synced.message
    assert outcome.external_id is None  # not the name of the answer
    assert outcome.create_pending is True  # the next pass looks by name before creating again
    assert outcome.requeue is engine.Requeue.BACKOFF
    # The next pass (the server honest again) finds the object that was made, by the spec's name.
    server.lie = False
    clock.now += 100
    again = await run(external, desired_of(kind, "triage"), create_pending=True)
    assert again.ready is not None
    assert again.ready.reason == engine.REASON_AVAILABLE
    assert server.posts(kind) == 1, server.calls
    if kind == "workspace":
        assert again.external_id == "triage"


async def test_an_update_answered_about_another_object_keeps_the_identity() -> None:
    server, _, child, ws = lying_world()
    server.lie = False
    made = await run(child, wf("triage"))
    await run(ws, externals.WorkspaceDesired(name=WS))
    server.lie = True
    drifted = externals.ChildDesired(
        workspace=WS, name="triage", body={"name": "triage", "definition": {"n": "other"}}
    )
    outcome = await run(child, drifted, external_id=made.external_id)
    assert outcome.synced.reason == engine.REASON_IDENTITY_MISMATCH
    assert outcome.external_id == made.external_id
    assert "9999" in outcome.synced.message
    ws_outcome = await run(
        ws, externals.WorkspaceDesired(name=WS, body={"displayName": "new"}), external_id=WS
    )
    assert ws_outcome.synced.reason == engine.REASON_IDENTITY_MISMATCH
    assert ws_outcome.external_id == WS
