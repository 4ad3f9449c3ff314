"""Drift comparison, the listing cache, status patches, the slots and the scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import kopf
import pytest

from runwhen_operator.api import common
from runwhen_operator.handlers import context, operator, runtime
from runwhen_operator.reconcile import diff, listing


@pytest.mark.parametrize(
    ("desired", "remote", "set_keys", "exact_keys", "expected"),
    [
        ({"a": 1}, {"a": 1, "createdAt": "t"}, (), (), {}),
        ({"a": 1}, {"a": 2}, (), (), {"a": 1}),
        ({"a": 0.5}, {"a": 0.5000000000001}, (), (), {}),
        ({"flag": True}, {"flag": 1}, (), (), {"flag": True}),
        ({"locs": ["x", "y"]}, {"locs": ["y", "x"]}, ("locs",), (), {}),
        ({"titles": ["x", "y"]}, {"titles": ["y", "x"]}, (), (), {"titles": ["x", "y"]}),
        ({"d": {"k": {"n": 1}}}, {"d": {"k": {"n": 1, "default": 0}}}, (), (), {}),
        ({"cfg": {"k": 1}}, {"cfg": {"k": 1, "old": 2}}, (), ("cfg",), {"cfg": {"k": 1}}),
        ({"cfg": {"k": 1}}, {"cfg": {"k": 1.0}}, (), ("cfg",), {}),
        ({"items": [{"a": 1}]}, {"items": [{"a": 1}, {"a": 2}]}, (), (), {"items": [{"a": 1}]}),
        ({"x": "v"}, {}, (), (), {"x": "v"}),
    ],
)
def test_drifted_fields(desired, remote, set_keys, exact_keys, expected) -> None:  # type: ignore[no-untyped-def]
    assert diff.drifted_fields(desired, remote, set_keys, exact_keys) == expected


async def test_listing_cache_single_flight_and_age() -> None:
    now = [0.0]
    cache = listing.ListingCache(clock=lambda: now[0])
    calls = 0
    gate = asyncio.Event()

    async def loader() -> list[dict[str, int]]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return [{"id": 1}, {"id": 2}]

    tasks = [asyncio.create_task(cache.get("s", loader, id_field="id", max_age=10)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert all(r.find(2) == {"id": 2} for r in results)
    now[0] = 5.0
    await cache.get("s", loader, id_field="id", max_age=10)
    assert calls == 1  # still fresh enough
    cache.upsert("s", {"id": 3})
    assert (await cache.get("s", loader, id_field="id", max_age=10)).find(3) == {"id": 3}
    now[0] = 11.0
    await cache.get("s", loader, id_field="id", max_age=10)
    assert calls == 2  # too old: listed again
    cache.invalidate("s")
    await cache.get("s", loader, id_field="id", max_age=1000)
    assert calls == 3


async def test_listing_cache_shares_failures_and_recovers() -> None:
    cache = listing.ListingCache()
    attempts = 0

    async def loader() -> list[dict[str, int]]:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise RuntimeError("boom")
        return [{"id": 1}]

    results = await asyncio.gather(
        *(cache.get("s", loader, id_field="id", max_age=10) for _ in range(5)), return_exceptions=True
    )
    assert attempts == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    assert (await cache.get("s", loader, id_field="id", max_age=10)).find(1) == {"id": 1}


def test_status_patch_only_sends_changes() -> None:
    cond = {
        "type": "Ready",
        "status": "True",
        "reason": "Available",
        "message": "ok",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    current = {"observedGeneration": 1, "conditions": [cond], "remoteName": "a", "createPending": True}
    same_cond = {**cond, "lastTransitionTime": "2026-06-01T00:00:00Z"}
    assert (
        context.status_patch(current, {"observedGeneration": 1, "conditions": [same_cond], "remoteName": "a"})
        == {}
    )
    patch = context.status_patch(current, {"observedGeneration": 2, "createPending": None, "remoteName": "a"})
    assert patch == {"observedGeneration": 2, "createPending": None}
    assert context.status_patch({}, {"createPending": None}) == {}


def test_set_condition_keeps_transition_time_unless_status_changes() -> None:
    conds = context.set_condition([], "Ready", "True", "Available", "ok", 1)
    first = conds[0]["lastTransitionTime"]
    conds = [{**conds[0], "lastTransitionTime": "2000-01-01T00:00:00Z"}]
    again = context.set_condition(conds, "Ready", "True", "Available", "still ok", 2)
    assert again[0]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    assert again[0]["observedGeneration"] == 2
    flipped = context.set_condition(conds, "Ready", "False", "Error", "bad", 2)
    assert flipped[0]["lastTransitionTime"] != "2000-01-01T00:00:00Z"
    assert first.endswith("Z")


def _runner(reconcile, backoff: runtime.Backoff | None = None) -> operator.Runner:  # type: ignore[no-untyped-def]
    runner = operator.Runner(operator.Config())
    runner.ctx = context.Context(
        slots=runtime.Slots(workers=4, backoff=backoff),
        kube=None,  # type: ignore[arg-type]
        registry=None,  # type: ignore[arg-type]
        listings=listing.ListingCache(),
    )
    runner.reconcilers[("K", "reconcile")] = reconcile
    runner.scheduler = runtime.Scheduler(runner.ctx.slots, runner.scheduled)
    return runner


@contextlib.asynccontextmanager
async def _scheduling(runner: operator.Runner):  # type: ignore[no-untyped-def]
    """The scheduler running, as Kopf's startup starts it; stopped at the end."""
    assert runner.scheduler is not None
    task = asyncio.create_task(runner.scheduler.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.scheduler.stop()


async def _event(runner: operator.Runner, body: dict[str, object], type_: str | None = None) -> None:
    """What Kopf's on.event gives the runner: an object's newest body."""
    await runner.observe("K", type_, body, {})  # type: ignore[arg-type]


def _body(rv: str = "1", handled: bool = True) -> dict[str, object]:
    status = {"lastHandledConfiguration": "{}"} if handled else {}
    return {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": rv}, "status": status}


async def test_a_handler_and_a_scheduled_pass_never_run_one_object_twice_at_once() -> None:
    running = 0
    overlaps = 0
    runs = 0

    async def reconcile(key: runtime.Key) -> runtime.Result:
        nonlocal running, overlaps, runs
        running += 1
        overlaps += running > 1
        runs += 1
        await asyncio.sleep(0.01)
        running -= 1
        return runtime.Result(after=0.005)

    runner = _runner(reconcile)
    async with _scheduling(runner):
        await _event(runner, _body())
        await asyncio.sleep(0.02)
        await asyncio.gather(*(runner.changed("K", _body(), {}, {}) for _ in range(5)))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        await _event(runner, _body(), "DELETED")
    assert overlaps == 0
    assert runs >= 7  # the five handled changes and the scheduled passes, one after another
    assert runner.ctx is not None
    assert runner.ctx.slots.get("K", "ns", "a") is None  # the slot goes with the object


async def test_errors_back_off_and_success_schedules_nothing_more() -> None:
    times: list[float] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: runtime.Key) -> runtime.Result:
        times.append(loop.time())
        if len(times) < 4:
            return runtime.Result(error=True)
        return runtime.Result(after=None)

    runner = _runner(reconcile, backoff=runtime.Backoff(base=0.05, cap=0.2))
    async with _scheduling(runner):
        await _event(runner, _body())
        await asyncio.sleep(1.0)
    assert len(times) == 4  # three failures retried, then success with no further pass
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.02
    assert gaps[2] >= 0.04


class _Counting:
    """A reconciler that counts its passes and asks for the next one after `after` seconds."""

    def __init__(self, after: float | None) -> None:
        self.after, self.runs = after, 0

    async def __call__(self, key: runtime.Key) -> runtime.Result:
        self.runs += 1
        return runtime.Result(after=self.after)


async def test_a_new_object_waits_for_its_change_handler_and_a_wake_runs_a_pass_at_once() -> None:
    reconcile = _Counting(after=3600)
    runner = _runner(reconcile)
    async with _scheduling(runner):
        await _event(runner, _body(handled=False))
        await asyncio.sleep(0.05)
        assert reconcile.runs == 0  # not handled yet: no pass races the create handler
        assert runner.ctx is not None
        runner.ctx.slots.wake("K", "ns", "a")  # a parent turned Ready, a connection was fixed
        await asyncio.sleep(0.05)
        assert reconcile.runs == 1
        assert runner.scheduler is not None
        assert len(runner.scheduler) == 1  # the next poll, an hour away, is all that is pending


async def test_one_scheduler_serves_many_objects_each_at_its_own_interval() -> None:
    """Each object's passes come at the interval its own pass asked for; a rescheduled object's
    old entry is dropped, not run."""
    runs: dict[str, int] = {}

    async def reconcile(key: runtime.Key) -> runtime.Result:
        runs[key.name] = runs.get(key.name, 0) + 1
        return runtime.Result(after=0.1 if key.name == "fast" else 3600)

    runner = _runner(reconcile)
    async with _scheduling(runner):
        for name in ("fast", "slow"):
            await runner.observe("K", None, {**_body(), "metadata": {"name": name, "namespace": "ns"}}, {})  # type: ignore[arg-type]
        await asyncio.sleep(0.55)
        assert runner.ctx is not None
        slow = runner.ctx.slots.get("K", "ns", "slow")
        assert slow is not None
        slow.schedule("reconcile", 0.05)
        slow.schedule("reconcile", 3600)  # rescheduled before it came up: the 0.05 s entry is dropped
        await asyncio.sleep(0.2)
    assert 4 <= runs["fast"] <= 8
    assert runs["slow"] == 1


async def test_an_object_being_deleted_is_left_to_its_delete_handler() -> None:
    reconcile = _Counting(after=0.01)
    runner = _runner(reconcile)
    async with _scheduling(runner):
        await _event(runner, _body())
        await asyncio.sleep(0.1)
        before = reconcile.runs
        deleting = _body(rv="2")
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # type: ignore[index]
        deleting["metadata"]["finalizers"] = ["platform.runwhen.com/finalizer"]  # type: ignore[index]
        await _event(runner, deleting)
        await asyncio.sleep(0.1)
        after = reconcile.runs
        await asyncio.sleep(0.1)
    assert before >= 3
    assert reconcile.runs == after  # no scheduled pass once its deletion began (at most the one in flight)


def test_slot_body_is_the_newest_and_the_provisional_until_kopf_applied_it() -> None:
    slot = runtime.Slot(("K", "ns", "a"))
    slot.live = {"metadata": {"resourceVersion": "10"}, "status": {"x": 1}}
    slot.written = {"metadata": {"resourceVersion": "9"}, "status": {"x": 0}}
    assert slot.body() == slot.live  # an older write never hides what Kopf saw since
    slot.written = {"metadata": {"resourceVersion": "11"}, "status": {"x": 2}}
    assert slot.body() == slot.written  # the operator's own write, before its watch event
    slot.pending_rv, slot.provisional = 11, {"metadata": {"resourceVersion": "11"}, "status": {"x": 3}}
    assert slot.body() == slot.provisional  # a handler's status that Kopf is about to apply
    slot.live = {"metadata": {"resourceVersion": "12"}, "status": {"x": 3}}
    assert slot.body() == slot.live


def test_a_wake_during_a_pass_is_not_lost_to_what_the_pass_asks_for() -> None:
    slot = runtime.Slot(("K", "ns", "a"))
    started = time.monotonic()
    slot.wake()  # the parent turned Ready while the pass ran on what it had read before
    slot.schedule("reconcile", None, since=started)  # the pass: "only when woken"
    due = slot.due["reconcile"]
    assert due is not None
    assert due <= time.monotonic()  # due at once
    later = time.monotonic()
    slot.schedule("reconcile", None, since=later)  # a pass begun after the wake
    assert slot.due["reconcile"] is None
    slot.schedule("reconcile", 30.0, since=later)
    assert slot.due["reconcile"] == pytest.approx(time.monotonic() + 30.0, abs=1.0)


def test_prune_drops_the_own_copies_once_kopf_shows_them() -> None:
    slot = runtime.Slot(("K", "ns", "a"))
    slot.live = {"metadata": {"resourceVersion": "10"}}
    slot.written = {"metadata": {"resourceVersion": "11"}}
    slot.pending_rv, slot.provisional = 11, {"metadata": {"resourceVersion": "12"}}
    assert slot.holds_copies()
    slot.prune()
    assert slot.written is not None  # Kopf has not shown the write yet: kept
    assert slot.provisional is not None
    slot.live = {"metadata": {"resourceVersion": "12"}}
    slot.prune()
    assert (slot.written, slot.provisional) == (None, None)
    assert not slot.holds_copies()
    assert slot.body() == slot.live


async def test_kopfs_next_event_drops_the_own_copy_of_the_body() -> None:
    """The operator's own copy of a body goes with the watch event that shows it, whenever the
    object's next pass is."""

    async def reconcile(key: runtime.Key) -> runtime.Result:
        return runtime.Result(after=3600)

    runner = _runner(reconcile)
    await _event(runner, _body(rv="10"))
    assert runner.ctx is not None
    slot = runner.ctx.slots.get("K", "ns", "a")
    assert slot is not None
    slot.written = {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "11"}}
    await _event(
        runner,
        {
            **_body(rv="11"),
            "metadata": {
                "name": "a",
                "namespace": "ns",
                "resourceVersion": "11",
                "managedFields": [{"manager": "x"}],
            },
        },
    )
    assert slot.written is None
    assert slot.live is not None
    assert "managedFields" not in slot.live["metadata"]  # the slot keeps no managedFields


@pytest.mark.parametrize(
    ("deleting", "result", "raises", "due_in"),
    [
        # a handled change: the next scheduled pass is when the pass asked for
        (False, runtime.Result(after=5.0), None, 5.0),
        (False, runtime.Result(after=None), None, None),
        # deletion done: the handler returns and Kopf removes its finalizer
        (True, runtime.Result(finalized=True), None, None),
        # deletion not done (paused, RunWhen refused, unreachable): Kopf keeps the finalizer and asks again
        (True, runtime.Result(), kopf.TemporaryError, None),
        (True, runtime.Result(error=True), kopf.TemporaryError, None),
        (True, runtime.Result(after=2.0), kopf.TemporaryError, None),
    ],
)
async def test_change_handler_outcomes(deleting, result, raises, due_in) -> None:  # type: ignore[no-untyped-def]
    async def reconcile(key: runtime.Key) -> runtime.Result:
        return result  # type: ignore[no-any-return]

    runner = _runner(reconcile)
    assert runner.ctx is not None
    body = _body()
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # type: ignore[index]
    started = time.monotonic()
    if raises is None:
        await runner.changed("K", body, {}, {})  # type: ignore[arg-type]
    else:
        with pytest.raises(raises) as caught:
            await runner.changed("K", body, {}, {})  # type: ignore[arg-type]
        assert (caught.value.delay or 0) > 0  # type: ignore[attr-defined]
    slot = runner.ctx.slots.get("K", "ns", "a")
    assert slot is not None
    due = slot.due.get("reconcile")
    if due_in is None:
        assert due is None or deleting
    else:
        assert due is not None
        assert abs(due - started - due_in) < 0.5


async def test_an_object_kubernetes_deleted_past_its_finalizer_still_gets_its_deletion_pass() -> None:
    """kube-apiserver can delete an object at once although a finalizer was being added
    (kubernetes/kubernetes#77988): its DELETED event carries the finalizer and no deletionTimestamp.
    The deletion pass runs on the newest body known, the status its create just left included; an
    ordinary deletion (deletionTimestamp set) gets no second pass."""
    seen: list[dict[str, object]] = []

    async def reconcile(key: runtime.Key) -> runtime.Result:
        assert runner.ctx is not None
        body = runner.ctx.latest("K", "ns", "a")
        assert body is not None
        seen.append(body)
        return runtime.Result(finalized=bool(body["metadata"].get("deletionTimestamp")))

    runner = _runner(reconcile)
    finalized = {"name": "a", "namespace": "ns", "resourceVersion": "2", "finalizers": [common.FINALIZER]}
    await _event(runner, {"metadata": finalized, "status": {}})
    assert runner.ctx is not None
    slot = runner.ctx.slots.get("K", "ns", "a")
    assert slot is not None
    slot.pending_rv, slot.provisional = 2, {"metadata": finalized, "status": {"id": 7}}  # the create's
    await _event(runner, {"metadata": finalized, "status": {}}, "DELETED")
    assert len(seen) == 1
    assert seen[0]["metadata"]["deletionTimestamp"]  # type: ignore[index]
    assert seen[0]["status"] == {"id": 7}
    assert runner.ctx.slots.get("K", "ns", "a") is None

    seen.clear()
    deleting = {**finalized, "deletionTimestamp": "2026-01-01T00:00:00Z"}
    await _event(runner, {"metadata": finalized, "status": {}})
    await _event(runner, {"metadata": deleting, "status": {}}, "DELETED")
    assert seen == []  # its delete handler ran the pass before Kopf removed the finalizer


def test_a_slot_keeps_the_live_body_as_compact_json_and_hands_out_copies() -> None:
    slot = runtime.Slot(("K", "ns", "a"))
    body = {
        "metadata": {"name": "a", "resourceVersion": "10", "annotations": {"note": "ünïcode ✓"}},
        "spec": {"items": [1, 2.5, None, True], "empty": {}},
    }
    slot.live = body
    assert isinstance(slot.packed, bytes)
    assert b", " not in slot.packed
    assert b": " not in slot.packed
    assert slot.live == body  # the same JSON back, unicode included
    copy = slot.live
    assert copy is not None
    copy["spec"]["items"].append("changed")
    assert slot.live == body  # a caller's change to its copy never reaches the slot
    slot.live = None
    assert (slot.packed, slot.live, slot.body()) == (None, None, None)
