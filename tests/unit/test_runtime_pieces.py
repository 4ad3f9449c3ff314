"""Drift comparison, the listing cache, status patches and the work queue."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from runwhen_operator.handlers import context, runtime
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


async def test_work_queue_dedupes_and_never_runs_a_key_twice_at_once() -> None:
    controller = runtime.Controller(workers=4)
    running: set[runtime.Key] = set()
    overlaps = 0
    runs = 0

    async def reconcile(key: runtime.Key) -> runtime.Result:
        nonlocal overlaps, runs
        if key in running:
            overlaps += 1
        running.add(key)
        runs += 1
        await asyncio.sleep(0.02)
        running.discard(key)
        return runtime.Result()

    controller.register("K", reconcile)
    controller.start()
    key = runtime.Key("K", "ns", "a")
    for _ in range(10):
        controller.enqueue(key)
    await asyncio.sleep(0.005)
    for _ in range(10):
        controller.enqueue(key)  # while it runs: one more pass afterwards, not ten
    await asyncio.sleep(0.2)
    await controller.stop()
    assert overlaps == 0
    assert runs == 2


async def test_errors_back_off_and_success_schedules_the_poll() -> None:
    controller = runtime.Controller(workers=1, backoff=runtime.Backoff(base=0.05, cap=0.2))
    times: list[float] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: runtime.Key) -> runtime.Result:
        times.append(loop.time())
        if len(times) < 4:
            return runtime.Result(error=True)
        return runtime.Result(after=None)

    controller.register("K", reconcile)
    controller.start()
    controller.enqueue(runtime.Key("K", "", "x"))
    await asyncio.sleep(1.0)
    await controller.stop()
    assert len(times) == 4  # three failures retried, then success with no further schedule
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.02
    assert gaps[2] >= 0.04


def test_store_keeps_the_newest_resource_version() -> None:
    store = runtime.Store()
    new = {"metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": "10"}}
    old = {"metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": "9"}}
    assert store.put("K", new)
    assert not store.put("K", old)
    assert store.get("K", "n", "a") is new
    recreated = {"metadata": {"name": "a", "namespace": "n", "uid": "other", "resourceVersion": "3"}}
    assert store.put("K", recreated)
