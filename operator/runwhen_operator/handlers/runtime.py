"""The controller runtime: an object cache, a work queue and timers (after controller-runtime).

Kopf watches the kinds and hands every event to `Controller.observe`, which stores the newest body
and queues the object's key. Workers take keys off the queue one at a time per key (an object is
never reconciled twice at once), run the kind's reconciler, and schedule the next pass: the drift
check at the poll interval (jittered), growing delays after transient errors, nothing after a
terminal error (a change to the object queues it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

log = logging.getLogger("runwhen_operator.runtime")

Body = dict[str, Any]


class Key(NamedTuple):
    """An object of a kind (`namespace` is "" for cluster-scoped kinds), and which job to run."""

    kind: str
    namespace: str
    name: str
    job: str = "reconcile"

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}" + ("" if self.job == "reconcile" else f" [{self.job}]")

    def with_job(self, job: str) -> Key:
        return Key(self.kind, self.namespace, self.name, job)


@dataclass(frozen=True)
class Result:
    """When to run this key again: `after` seconds, `None` for not by itself."""

    after: float | None = None
    error: bool = False  # a transient failure: use growing delays, ignore `after` unless longer


def _rv(body: Body) -> int:
    try:
        return int(body.get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class Store:
    """The newest body of every watched object, keyed by (kind, namespace, name)."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], Body] = {}

    @staticmethod
    def _key(kind: str, namespace: str, name: str) -> tuple[str, str, str]:
        return (kind, namespace, name)

    def put(self, kind: str, body: Body) -> bool:
        """Keep `body` unless an object with a newer resourceVersion is already stored."""
        meta = body.get("metadata", {})
        key = self._key(kind, meta.get("namespace") or "", meta["name"])
        old = self._objects.get(key)
        if old is not None and old.get("metadata", {}).get("uid") == meta.get("uid") and _rv(old) > _rv(body):
            return False
        self._objects[key] = body
        return True

    def get(self, kind: str, namespace: str, name: str) -> Body | None:
        return self._objects.get(self._key(kind, namespace, name))

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self._objects.pop(self._key(kind, namespace, name), None)

    def items(self, kind: str, namespace: str | None = None) -> Iterator[Body]:
        for (k, ns, _), body in list(self._objects.items()):
            if k == kind and (namespace is None or ns == namespace):
                yield body

    def __len__(self) -> int:
        return len(self._objects)


class WorkQueue:
    """Keys to process: deduplicated while waiting, never handed out twice at once."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._waiting: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()  # added while processing: re-queue when done
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._due: dict[Key, float] = {}

    def add(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._waiting:
            return
        self._waiting.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Queue `key` in `delay` seconds, replacing any later timer for it (an earlier one stays)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + max(0.0, delay)
        existing = self._timers.get(key)
        if existing is not None and not existing.cancelled() and self._due.get(key, due) <= due:
            return
        if existing is not None:
            existing.cancel()
        self._due[key] = due
        self._timers[key] = loop.call_at(due, self._fire, key)

    def reschedule(self, key: Key, delay: float) -> None:
        """Queue `key` in exactly `delay` seconds, replacing any timer for it."""
        self.cancel(key)
        self.add_after(key, delay)

    def cancel(self, key: Key) -> None:
        handle = self._timers.pop(key, None)
        self._due.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self._due.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._waiting.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def scheduled(self, key: Key) -> bool:
        return key in self._timers or key in self._waiting or key in self._processing

    def forget(self, kind: str, namespace: str, name: str) -> None:
        for key in [k for k in self._timers if (k.kind, k.namespace, k.name) == (kind, namespace, name)]:
            self.cancel(key)

    def __len__(self) -> int:
        return self._queue.qsize()

    @property
    def timers(self) -> int:
        return len(self._timers)


Reconciler = Callable[[Key], Awaitable[Result]]


@dataclass
class Backoff:
    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        raw = min(self.cap, self.base * (2 ** max(0, failures - 1)))
        return random.uniform(raw / 2, raw)  # jitter: no thundering herd after an outage


def jitter(interval: float, fraction: float = 0.1) -> float:
    return interval * random.uniform(1 - fraction, 1 + fraction)


class Controller:
    """Runs reconcilers for queued keys with `workers` concurrent workers."""

    def __init__(self, *, workers: int = 16, backoff: Backoff | None = None) -> None:
        self.store = Store()
        self.queue = WorkQueue()
        self.reconcilers: dict[tuple[str, str], Reconciler] = {}
        self.workers = workers
        self.backoff = backoff or Backoff()
        self._failures: dict[Key, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._active = asyncio.Event()
        self._active.set()
        self.reconciles = 0
        self.on_result: Callable[[Key, Result, float], None] | None = None

    def register(self, kind: str, reconciler: Reconciler, job: str = "reconcile") -> None:
        self.reconcilers[(kind, job)] = reconciler

    def observe(
        self, kind: str, body: Body, *, deleted: bool = False, jobs: tuple[str, ...] = ("reconcile",)
    ) -> None:
        """A watch event: keep the body, queue the object's jobs (or forget a deleted object)."""
        meta = body.get("metadata", {})
        namespace, name = meta.get("namespace") or "", meta["name"]
        if deleted:
            self.store.delete(kind, namespace, name)
            self.queue.forget(kind, namespace, name)
            for job in jobs:
                self._failures.pop(Key(kind, namespace, name, job), None)
            return
        if self.store.put(kind, body):
            for job in jobs:
                self.queue.add(Key(kind, namespace, name, job))

    def enqueue(self, key: Key, delay: float = 0.0) -> None:
        if delay <= 0:
            self.queue.add(key)
        else:
            self.queue.add_after(key, delay)

    def enqueue_all(self, jobs: dict[str, tuple[str, ...]]) -> int:
        """Queue every cached object's jobs (after becoming the leader): `jobs` maps kind -> jobs."""
        count = 0
        for kind, kind_jobs in jobs.items():
            for body in self.store.items(kind):
                meta = body["metadata"]
                for job in kind_jobs:
                    self.queue.add(Key(kind, meta.get("namespace") or "", meta["name"], job))
                    count += 1
        return count

    # -- activity (leadership) ---------------------------------------------------------------
    def pause(self) -> None:
        self._active.clear()

    def resume(self) -> None:
        self._active.set()

    @property
    def active(self) -> bool:
        return self._active.is_set()

    # -- workers -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._worker(i), name=f"reconcile-worker-{i}") for i in range(self.workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _worker(self, index: int) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._active.wait()
                await self.process(key)
            finally:
                self.queue.done(key)

    async def process(self, key: Key) -> None:
        reconciler = self.reconcilers.get((key.kind, key.job))
        if reconciler is None:
            return
        started = time.monotonic()
        try:
            result = await reconciler(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconciling %s failed", key)
            result = Result(error=True)
        self.reconciles += 1
        if self.on_result is not None:
            self.on_result(key, result, time.monotonic() - started)
        self._schedule(key, result)

    def _schedule(self, key: Key, result: Result) -> None:
        if result.error:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = self.backoff.delay(failures)
            if result.after is not None:
                delay = max(delay, result.after)
            self.queue.reschedule(key, delay)
            return
        self._failures.pop(key, None)
        if result.after is None:
            self.queue.cancel(key)
        else:
            self.queue.reschedule(key, result.after)
