"""The engine's decisions, from tables of (request, remote state, failure) -> outcome, without I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runwhen_operator.reconcile import diff, engine
from runwhen_operator.runwhen import errors


@dataclass
class FakeExternal:
    """A remote side holding at most one object; records the verbs called. ``listed=False``: the
    object is there but observation misses it (a listing that lies or lags behind);
    ``recently_created``: what a miss reports (this process created it moments ago)."""

    remote: dict[str, Any] | None = None
    desired_body: dict[str, Any] = field(default_factory=lambda: {"displayName": "want"})
    idempotent_create: bool = False
    fail_on: dict[str, Exception] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    listed: bool = True
    recently_created: bool = False

    def _miss(self) -> engine.Observation:
        if self.recently_created:
            return engine.Observation(exists=False, recently_created=True)
        return engine.Observation(exists=False)

    def describe(self, desired: Any) -> str:
        return 'thing "x"'

    async def observe(self, desired: Any, external_id: Any, *, lookup_by_name: bool) -> engine.Observation:
        self.calls.append(f"observe(by_name={lookup_by_name})")
        self._maybe_fail("observe")
        if self.remote is None or not self.listed:
            return self._miss()
        if external_id is None and not lookup_by_name:
            return self._miss()
        drift = diff.drifted_fields(self.desired_body, self.remote)
        return engine.Observation(
            True, dict(self.remote), not drift, drift, self.remote["id"], self.remote.get("createdAt")
        )

    async def create(self, desired: Any) -> engine.Observation:
        self.calls.append("create")
        self._maybe_fail("create")
        self.remote = {"id": 7, **self.desired_body}
        return engine.Observation(True, dict(self.remote), True, {}, 7)

    async def update(self, desired: Any, observation: engine.Observation) -> engine.Observation:
        self.calls.append("update")
        self._maybe_fail("update")
        assert self.remote is not None
        self.remote.update(self.desired_body)
        return engine.Observation(True, dict(self.remote), True, {}, self.remote["id"])

    async def delete(self, desired: Any, observation: engine.Observation) -> None:
        self.calls.append("delete")
        self._maybe_fail("delete")
        if self.remote is None:
            raise errors.NotFoundError("no such thing")
        self.remote = None

    def _maybe_fail(self, verb: str) -> None:
        if verb in self.fail_on:
            raise self.fail_on[verb]


MINE = {"id": 7, "displayName": "want"}
DRIFTED = {"id": 7, "displayName": "other", "extra": "server default"}


@dataclass
class Case:
    name: str
    request: dict[str, Any]
    remote: dict[str, Any] | None
    verbs: list[str]
    action: engine.Action
    ready: tuple[str, str] | None
    synced: tuple[str, str]
    requeue: engine.Requeue = engine.Requeue.POLL
    finalized: bool = False
    pending_marked: bool = False
    pending_after: bool = False
    events: tuple[str, ...] = ()
    fail_on: dict[str, Exception] = field(default_factory=dict)
    idempotent: bool = False  # the API creates by an upsert by name
    listed: bool = True  # False: the object is there, observation misses it
    recently_created: bool = False  # a miss says this process created the object moments ago
    gone_after: bool | None = None  # whether the remote object is gone at the end (None: not checked)


T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=2)
EARLIER = T0 - timedelta(hours=1)


CASES = [
    Case(
        "upsert API: create without a pending mark",
        {"owner_since": T0},
        None,
        ["observe(by_name=True)", "create"],
        engine.Action.CREATE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
        events=("Created",),
        idempotent=True,
    ),
    Case(
        "upsert API: made after the resource, status lost: ours",
        {"owner_since": T0},
        {**MINE, "createdAt": LATER},
        ["observe(by_name=True)"],
        engine.Action.NONE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
        idempotent=True,
    ),
    Case(
        "upsert API: older object of that name, FailIfExists",
        {"owner_since": T0},
        {**MINE, "createdAt": EARLIER},
        ["observe(by_name=True)"],
        engine.Action.NONE,
        ("False", "AlreadyExists"),
        ("False", "AlreadyExists"),
        events=("AlreadyExists",),
        idempotent=True,
    ),
    Case(
        "upsert API: made in the resource's second, other shape: not ours",
        {"owner_since": T0},
        {**DRIFTED, "createdAt": T0 + timedelta(milliseconds=300)},
        ["observe(by_name=True)"],
        engine.Action.NONE,
        ("False", "AlreadyExists"),
        ("False", "AlreadyExists"),
        events=("AlreadyExists",),
        idempotent=True,
    ),
    Case(
        "upsert API: made in the resource's second, matching the spec: ours",
        {"owner_since": T0},
        {**MINE, "createdAt": T0 + timedelta(milliseconds=300)},
        ["observe(by_name=True)"],
        engine.Action.NONE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
        idempotent=True,
    ),
    Case(
        "upsert API: no creation time: not taken for ours",
        {"owner_since": T0},
        MINE,
        ["observe(by_name=True)"],
        engine.Action.NONE,
        ("False", "AlreadyExists"),
        ("False", "AlreadyExists"),
        events=("AlreadyExists",),
        idempotent=True,
    ),
    Case(
        "upsert API: delete, made after the resource, status lost: deleted",
        {"owner_since": T0, "deleting": True},
        {**MINE, "createdAt": LATER},
        ["observe(by_name=True)", "delete"],
        engine.Action.DELETE,
        ("False", "Deleting"),
        ("True", "ReconcileSuccess"),
        requeue=engine.Requeue.NEVER,
        finalized=True,
        events=("Deleted",),
        idempotent=True,
    ),
    Case(
        "upsert API: delete, older foreign object: left alone",
        {"owner_since": T0, "deleting": True},
        {**MINE, "createdAt": EARLIER},
        ["observe(by_name=True)"],
        engine.Action.NONE,
        ("False", "Deleting"),
        ("True", "ReconcileSuccess"),
        requeue=engine.Requeue.NEVER,
        finalized=True,
        idempotent=True,
    ),
    Case(
        "created, then its fields refused: ours, InvalidSpec, no retry",
        {},
        None,
        ["observe(by_name=True)", "create"],
        engine.Action.NONE,
        ("False", "InvalidSpec"),
        ("False", "InvalidSpec"),
        requeue=engine.Requeue.NEVER,
        pending_marked=True,
        events=("InvalidSpec",),
        fail_on={"create": errors.RejectedAfterCreateError("slxGroups[0]: not an object", external_id="x")},
    ),
    Case(
        "create renamed by the server: NameTaken, no retry",
        {},
        None,
        ["observe(by_name=True)", "create"],
        engine.Action.NONE,
        ("False", "NameTaken"),
        ("False", "NameTaken"),
        requeue=engine.Requeue.NEVER,
        pending_marked=True,
        events=("NameTaken",),
        fail_on={"create": errors.WorkspaceRenamedError("renamed to x-2", requested="x", given="x-2")},
    ),
    Case(
        "create when missing",
        {},
        None,
        ["observe(by_name=True)", "create"],
        engine.Action.CREATE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
        pending_marked=True,
        events=("Created",),
    ),
    Case(
        "in sync: nothing",
        {"external_id": 7},
        MINE,
        ["observe(by_name=False)"],
        engine.Action.NONE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
    ),
    Case(
        "server-only fields are not drift",
        {"external_id": 7},
        {**MINE, "createdAt": "t"},
        ["observe(by_name=False)"],
        engine.Action.NONE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
    ),
    Case(
        "spec change: update",
        {"external_id": 7},
        DRIFTED,
        ["observe(by_name=False)", "update"],
        engine.Action.UPDATE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
        events=("Updated",),
    ),
    Case(
        "remote drift: corrected",
        {"external_id": 7, "spec_changed": False},
        DRIFTED,
        ["observe(by_name=False)", "update"],
        engine.Action.UPDATE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
        events=("DriftCorrected",),
    ),
    Case(
        "deleted remotely: recreated",
        {"external_id": 7},
        None,
        ["observe(by_name=False)", "create"],
        engine.Action.CREATE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
        pending_marked=True,
        events=("Recreated",),
    ),
    Case(
        "exists, FailIfExists",
        {},
        MINE,
        ["observe(by_name=True)"],
        engine.Action.NONE,
        ("False", "AlreadyExists"),
        ("False", "AlreadyExists"),
        events=("AlreadyExists",),
    ),
    Case(
        "exists, Adopt, drifted",
        {"adopt": True},
        DRIFTED,
        ["observe(by_name=True)", "update"],
        engine.Action.ADOPT,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
        events=("Adopted", "Updated"),
    ),
    Case(
        "pending create found by name: ours, not AlreadyExists",
        {"create_pending": True},
        MINE,
        ["observe(by_name=True)"],
        engine.Action.NONE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
    ),
    Case(
        "pending create not found: create without marking again",
        {"create_pending": True},
        None,
        ["observe(by_name=True)", "create"],
        engine.Action.CREATE,
        ("True", "Available"),
        ("True", "ReconcileSuccess"),
        events=("Created",),
    ),
    Case(
        "lost create answer keeps the mark",
        {},
        None,
        ["observe(by_name=True)", "create"],
        engine.Action.CREATE,
        ("False", "Creating"),
        ("False", "ReconcileError"),
        requeue=engine.Requeue.SOON,
        pending_marked=True,
        pending_after=True,
        fail_on={"create": errors.WriteOutcomeUnknownError("dropped")},
    ),
    Case(
        "400 on create: terminal, mark cleared",
        {},
        None,
        ["observe(by_name=True)", "create"],
        engine.Action.NONE,
        ("False", "InvalidSpec"),
        ("False", "InvalidSpec"),
        requeue=engine.Requeue.NEVER,
        pending_marked=True,
        events=("InvalidSpec",),
        fail_on={"create": errors.InvalidRequestError("name: bad", field_errors={"name": ["bad"]})},
    ),
    Case(
        "401: backoff",
        {"external_id": 7},
        MINE,
        ["observe(by_name=False)"],
        engine.Action.NONE,
        ("False", "Unauthorized"),
        ("False", "Unauthorized"),
        requeue=engine.Requeue.BACKOFF,
        events=("Unauthorized",),
        fail_on={"observe": errors.AuthenticationError("no")},
    ),
    Case(
        "403 on one path: Forbidden on this object, backoff",
        {"external_id": 7},
        MINE,
        ["observe(by_name=False)"],
        engine.Action.NONE,
        ("False", "Forbidden"),
        ("False", "Forbidden"),
        requeue=engine.Requeue.BACKOFF,
        events=("Forbidden",),
        fail_on={"observe": errors.PermissionDeniedError("GET /api/v3/x -> 403: not allowed")},
    ),
    Case(
        "create answered about another object: nothing recorded, mark kept, backoff",
        {},
        None,
        ["observe(by_name=True)", "create"],
        engine.Action.NONE,
        ("False", "RemoteIdentityMismatch"),
        ("False", "RemoteIdentityMismatch"),
        requeue=engine.Requeue.BACKOFF,
        pending_marked=True,
        pending_after=True,
        events=("RemoteIdentityMismatch",),
        fail_on={"create": errors.IdentityMismatchError("answered b", expected="a", given="b")},
    ),
    Case(
        "update answered about another object: identity kept, backoff",
        {"external_id": 7},
        DRIFTED,
        ["observe(by_name=False)", "update"],
        engine.Action.NONE,
        ("False", "RemoteIdentityMismatch"),
        ("False", "RemoteIdentityMismatch"),
        requeue=engine.Requeue.BACKOFF,
        events=("RemoteIdentityMismatch",),
        fail_on={"update": errors.IdentityMismatchError("answered b", expected="a", given="b")},
    ),
    Case(
        "503: backoff, Ready untouched",
        {"external_id": 7},
        MINE,
        ["observe(by_name=False)"],
        engine.Action.NONE,
        None,
        ("False", "ReconcileError"),
        requeue=engine.Requeue.BACKOFF,
        events=("ReconcileError",),
        fail_on={"observe": errors.ServerError("503", status_code=503)},
    ),
    Case(
        "ObserveOnly never writes",
        {"managed": False, "external_id": 7},
        DRIFTED,
        ["observe(by_name=False)"],
        engine.Action.OBSERVE,
        ("True", "Observed"),
        ("True", "ReconcileSuccess"),
    ),
    Case(
        "ObserveOnly, missing",
        {"managed": False},
        None,
        ["observe(by_name=True)"],
        engine.Action.OBSERVE,
        ("False", "NotFound"),
        ("True", "ReconcileSuccess"),
    ),
    Case(
        "delete, policy Delete",
        {"deleting": True, "external_id": 7},
        MINE,
        ["observe(by_name=False)", "delete"],
        engine.Action.DELETE,
        ("False", "Deleting"),
        ("True", "ReconcileSuccess"),
        requeue=engine.Requeue.NEVER,
        finalized=True,
        events=("Deleted",),
    ),
    Case(
        "delete, already gone remotely: the DELETE is sent anyway, its 404 is success",
        {"deleting": True, "external_id": 7},
        None,
        ["observe(by_name=False)", "delete"],
        engine.Action.DELETE,
        ("False", "Deleting"),
        ("True", "ReconcileSuccess"),
        requeue=engine.Requeue.NEVER,
        finalized=True,
    ),
    Case(
        "delete, ours but not listed (a lying listing): the DELETE is sent, nothing leaks",
        {"deleting": True, "external_id": 7},
        MINE,
        ["observe(by_name=False)", "delete"],
        engine.Action.DELETE,
        ("False", "Deleting"),
        ("True", "ReconcileSuccess"),
        requeue=engine.Requeue.NEVER,
        finalized=True,
        events=("Deleted",),
        listed=False,
        gone_after=True,
    ),
    Case(
        "delete, created moments ago and not listed: the DELETE finds it",
        {"deleting": True, "external_id": 7},
        MINE,
        ["observe(by_name=False)", "delete"],
        engine.Action.DELETE,
        ("False", "Deleting"),
        ("True", "ReconcileSuccess"),
        requeue=engine.Requeue.NEVER,
        finalized=True,
        events=("Deleted",),
        listed=False,
        recently_created=True,
        gone_after=True,
    ),
    Case(
        "delete, created moments ago, the DELETE says 404: not trusted, again soon",
        {"deleting": True, "external_id": 7},
        None,
        ["observe(by_name=False)", "delete"],
        engine.Action.NONE,
        ("False", "Deleting"),
        ("False", "Deleting"),
        requeue=engine.Requeue.SOON,
        recently_created=True,
    ),
    Case(
        "delete, pending create not found, no id recorded: nothing to address",
        {"deleting": True, "create_pending": True},
        None,
        ["observe(by_name=True)"],
        engine.Action.DELETE,
        ("False", "Deleting"),
        ("True", "ReconcileSuccess"),
        requeue=engine.Requeue.NEVER,
        finalized=True,
    ),
    Case(
        "ours, created moments ago, not listed yet: no second create, again soon, Ready kept",
        {"external_id": 7},
        MINE,
        ["observe(by_name=False)"],
        engine.Action.NONE,
        None,
        ("False", "Creating"),
        requeue=engine.Requeue.SOON,
        listed=False,
        recently_created=True,
        gone_after=False,
    ),
    Case(
        "pending create made moments ago, not listed yet: no second create, Creating",
        {"create_pending": True},
        None,
        ["observe(by_name=True)"],
        engine.Action.NONE,
        ("False", "Creating"),
        ("False", "Creating"),
        requeue=engine.Requeue.SOON,
        pending_after=True,
        recently_created=True,
    ),
    Case(
        "upsert API: made moments ago, status lost, not listed yet: again soon",
        {"owner_since": T0},
        MINE,
        ["observe(by_name=True)"],
        engine.Action.NONE,
        ("False", "Creating"),
        ("False", "Creating"),
        requeue=engine.Requeue.SOON,
        idempotent=True,
        listed=False,
        recently_created=True,
    ),
    Case(
        "delete, policy Orphan: no remote call",
        {"deleting": True, "delete_remote": False, "external_id": 7},
        MINE,
        [],
        engine.Action.ORPHAN,
        ("False", "Deleting"),
        ("True", "ReconcileSuccess"),
        requeue=engine.Requeue.NEVER,
        finalized=True,
        events=("Orphaned",),
    ),
    Case(
        "delete, never owned: no remote call",
        {"deleting": True},
        MINE,
        [],
        engine.Action.NONE,
        ("False", "Deleting"),
        ("True", "ReconcileSuccess"),
        requeue=engine.Requeue.NEVER,
        finalized=True,
    ),
    Case(
        "delete fails transiently: finalizer stays",
        {"deleting": True, "external_id": 7},
        MINE,
        ["observe(by_name=False)", "delete"],
        engine.Action.NONE,
        None,
        ("False", "ReconcileError"),
        requeue=engine.Requeue.BACKOFF,
        events=("ReconcileError",),
        fail_on={"delete": errors.TransportError("reset")},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_engine_table(case: Case) -> None:
    ext = FakeExternal(
        remote=dict(case.remote) if case.remote else None,
        fail_on=case.fail_on,
        idempotent_create=case.idempotent,
        listed=case.listed,
        recently_created=case.recently_created,
    )
    marked: list[bool] = []

    async def mark_pending() -> None:
        marked.append(True)

    request = engine.Request(desired=object(), **case.request)
    outcome = await engine.reconcile(request, ext, mark_pending)
    assert ext.calls == case.verbs
    assert outcome.action is case.action
    ready = (outcome.ready.status, outcome.ready.reason) if outcome.ready else None
    assert ready == case.ready
    assert (outcome.synced.status, outcome.synced.reason) == case.synced
    assert outcome.requeue is case.requeue
    assert outcome.finalized is case.finalized
    assert bool(marked) is case.pending_marked
    assert outcome.create_pending is case.pending_after
    assert tuple(e.reason for e in outcome.events) == case.events
    if case.gone_after is not None:
        assert (ext.remote is None) is case.gone_after
    if isinstance(case.fail_on.get("create"), errors.RejectedAfterCreateError):
        assert outcome.external_id == "x"  # recorded: the object exists and is this resource's


async def test_mark_pending_happens_before_the_create() -> None:
    order: list[str] = []
    ext = FakeExternal()

    async def mark_pending() -> None:
        order.append("mark")
        assert ext.calls == ["observe(by_name=True)"]

    await engine.reconcile(engine.Request(desired=object()), ext, mark_pending)
    order.extend(c for c in ext.calls if c == "create")
    assert order == ["mark", "create"]


async def test_a_failed_mark_prevents_the_create() -> None:
    ext = FakeExternal()

    async def mark_pending() -> None:
        raise RuntimeError("status write refused")

    with pytest.raises(RuntimeError):
        await engine.reconcile(engine.Request(desired=object()), ext, mark_pending)
    assert "create" not in ext.calls


async def test_rate_limit_carries_retry_after() -> None:
    ext = FakeExternal(
        remote=MINE, fail_on={"observe": errors.RateLimitedError("slow down", retry_after=7.0)}
    )

    async def mark_pending() -> None: ...

    outcome = await engine.reconcile(engine.Request(desired=object(), external_id=7), ext, mark_pending)
    assert outcome.requeue is engine.Requeue.BACKOFF
    assert outcome.retry_after == 7.0
