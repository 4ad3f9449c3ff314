"""What Kopf's handlers and the scheduler share about one object: its slot.

Kopf runs the change handlers (``on.create``/``on.update``/``on.delete``) for what the user changed,
and its ``on.event`` keeps each object's newest body in its slot. Everything that comes by itself (the
drift check at the object's own poll interval, the retry after a transient error, the wait for a
parent or a connection, a Workspace's health) is a pass the `Scheduler` starts when it is due. Both
go through the object's `Slot`:

- ``lock``: an object is never reconciled twice at once (a handler and a scheduled pass take turns);
- ``body()``: the newest body known, Kopf's (from its events) or what the operator's own last status
  write returned, whichever has the newer resourceVersion; never used to decide whether an event
  matters (Kopf's diff base does that);
- ``wake()``: a handler, the parent Workspace or the connection asks for a pass now;
- ``due``: when the next pass of each job runs (the result of the last pass, whoever ran it).

Kopf cannot trigger another object's handlers, and a Kopf daemon per object and job costs more
memory than the whole budget (docs/architecture.md, measured with bench/kopf_floor.py): one
scheduler and the slots are the smallest piece that holds per-object intervals and lets a Workspace
turning Ready, or a connection being fixed, reach its dependents at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple

log = logging.getLogger("runwhen_operator")

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

    @property
    def object(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class Result:
    """When to run this key again: `after` seconds, `None` for not by itself."""

    after: float | None = None
    error: bool = False  # a transient failure: use growing delays, ignore `after` unless longer
    finalized: bool = False  # a deletion pass finished: the finalizer may go


def resource_version(body: Body | None) -> int:
    try:
        return int(((body or {}).get("metadata") or {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


@dataclass
class Backoff:
    """The one backoff: doubling from `base` to `cap` seconds, jittered to half of that."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        raw = min(self.cap, self.base * (2 ** max(0, failures - 1)))
        return random.uniform(raw / 2, raw)  # jitter: no thundering herd after an outage


def jitter(interval: float, fraction: float = 0.1) -> float:
    return interval * random.uniform(1 - fraction, 1 + fraction)


def pack(body: Body) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Slot:
    """One object's shared state (see the module docstring)."""

    key: tuple[str, str, str]
    packed: bytes | None = None  # `live`, as compact JSON
    written: Body | None = None  # what the operator's own last write returned
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failures: dict[str, int] = field(default_factory=dict)  # per job
    due: dict[str, float | None] = field(default_factory=dict)  # per job: monotonic time, None=never
    woken: dict[str, float] = field(default_factory=dict)  # per job: when it was last woken
    running: set[str] = field(default_factory=set)  # jobs whose scheduled pass runs now
    handling: int = 0  # Kopf's change handlers of the object under way
    pending_rv: int | None = None  # a status patch Kopf applies after the handler, from this version
    provisional: Body | None = None  # the object as it will be once Kopf has applied that patch
    gone: bool = False  # deleted from Kubernetes: the slot goes once no pass of it runs
    forgotten: bool = False  # its deletion began: what only lived for it is gone
    on_due: Callable[[Slot, str, float], None] | None = None  # tells the scheduler

    @property
    def live(self) -> Body | None:
        """The newest body Kopf's events brought (without managedFields), a fresh copy each time.

        Kept as compact JSON: a body parsed into Python objects took 8.6 kB on average in an
        N = 1,000 sync (a `gc` census), about three times its JSON; the slots of 5,000 objects are
        the largest thing the operator holds of its own."""
        return None if self.packed is None else json.loads(self.packed)

    @live.setter
    def live(self, body: Body | None) -> None:
        self.packed = None if body is None else pack(body)

    def body(self, *, provisional: bool = True) -> Body | None:
        live = self.live
        newest = live
        if self.written is not None:
            if live is None or resource_version(self.written) > resource_version(live):
                newest = self.written
            else:
                self.written = None  # Kopf's live view has caught up: no second copy is kept
        if self.provisional is not None and self.pending_rv is not None:
            if resource_version(newest) <= self.pending_rv:
                if provisional:
                    return self.provisional
            elif live is not None:
                self.provisional = None  # Kopf applied it and the live view shows it
        return newest

    def holds_copies(self) -> bool:
        """Whether the slot keeps a body of its own beside Kopf's live view."""
        return self.written is not None or self.provisional is not None

    def prune(self) -> None:
        """Drop the operator's own copies that Kopf's live view has caught up with."""
        if self.holds_copies() and self.packed is not None:
            self.body(provisional=False)

    def _set_due(self, job: str, due: float | None) -> None:
        self.due[job] = due
        if due is not None and self.on_due is not None:
            self.on_due(self, job, due)

    def wake(self, job: str = "reconcile") -> None:
        now = time.monotonic()
        self.woken[job] = now
        self._set_due(job, now)

    def schedule(self, job: str, after: float | None, *, since: float | None = None) -> None:
        """The next pass of `job` in `after` seconds (None: only when woken).

        ``since``: when the pass that asks began. A wake that came after that (a parent or the
        connection turned Ready while the pass ran on what it had read before) is not lost to what
        the pass asked for: the next pass is due at once."""
        if since is not None and self.woken.get(job, float("-inf")) >= since:
            after = 0.0
        self._set_due(job, None if after is None else time.monotonic() + max(0.0, after))


class Slots:
    """Every object's slot, by (kind, namespace, name)."""

    def __init__(self, *, workers: int = 16, backoff: Backoff | None = None) -> None:
        self._slots: dict[tuple[str, str, str], Slot] = {}
        self.backoff = backoff or Backoff()
        self.passes = asyncio.Semaphore(workers)  # concurrent passes, all kinds together
        self.reconciles = 0
        self.on_due: Callable[[Slot, str, float], None] | None = None  # the scheduler, once running

    def get(self, kind: str, namespace: str, name: str) -> Slot | None:
        return self._slots.get((kind, namespace, name))

    def open(self, kind: str, namespace: str, name: str) -> Slot:
        key = (kind, namespace, name)
        slot = self._slots.get(key)
        if slot is None or slot.gone:  # (a pass of an object deleted and created again may still run)
            slot = self._slots[key] = Slot(key, on_due=self._due)
        return slot

    def _due(self, slot: Slot, job: str, due: float) -> None:
        if self.on_due is not None:
            self.on_due(slot, job, due)

    def close(self, slot: Slot) -> None:
        """Drop the slot of an object that is gone, once no pass of it runs."""
        if self._slots.get(slot.key) is slot and slot.gone and not slot.running and not slot.lock.locked():
            del self._slots[slot.key]

    def body(self, kind: str, namespace: str, name: str) -> Body | None:
        slot = self._slots.get((kind, namespace, name))
        return slot.body() if slot is not None else None

    def remember(self, kind: str, body: Body) -> None:
        """The operator's own write returned `body`: newer than the live view until its event."""
        meta = body.get("metadata") or {}
        slot = self._slots.get((kind, meta.get("namespace") or "", meta.get("name", "")))
        if slot is not None and resource_version(body) >= resource_version(slot.body()):
            slot.written = body

    def wake(self, kind: str, namespace: str, name: str, job: str = "reconcile") -> None:
        slot = self._slots.get((kind, namespace, name))
        if slot is not None:
            slot.wake(job)

    def __len__(self) -> int:
        return len(self._slots)

    def next_delay(self, slot: Slot, job: str, result: Result) -> float | None:
        """When to run `job` again after `result`: growing delays after errors, else as asked."""
        if result.error:
            failures = slot.failures.get(job, 0) + 1
            slot.failures[job] = failures
            delay = self.backoff.delay(failures)
            return max(delay, result.after) if result.after is not None else delay
        slot.failures.pop(job, None)
        return result.after


#: At exit, how long the cancelled passes may take to finish.
STOP_TIMEOUT = 5.0

PassStarter = Callable[[Slot, str], Coroutine[Any, Any, None]]


class Scheduler:
    """Starts each object's passes when they are due: one task for every object, in place of a Kopf
    daemon per object and job (see the module docstring).

    `Slot.schedule` and `Slot.wake` push (due, object, job) on a heap; the scheduler sleeps until the
    earliest is due or something earlier is pushed, and starts the pass in a task of its own (at
    most one per object and job; a wake during a pass makes the pass's own schedule due at once).
    Entries whose slot was rescheduled since, or is gone, are dropped when they come up."""

    def __init__(self, slots: Slots, start: PassStarter) -> None:
        self.slots = slots
        self._start = start
        self._heap: list[tuple[float, int, tuple[str, str, str], str]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        slots.on_due = self.push

    def push(self, slot: Slot, job: str, due: float) -> None:
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (due, next(self._seq), slot.key, job))
        if earliest is None or due < earliest:
            self._changed.set()

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                due, _, key, job = heapq.heappop(self._heap)
                slot = self.slots.get(*key)
                if slot is None or slot.due.get(job) != due or job in slot.running:
                    continue  # rescheduled since, gone, or running (it schedules itself again)
                slot.running.add(job)
                task = asyncio.create_task(self._pass(slot, job), name=f"pass {key} {job}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._changed.clear()
            timeout = self._heap[0][0] - time.monotonic() if self._heap else None
            timer = loop.call_later(max(0.0, timeout), self._changed.set) if timeout is not None else None
            try:
                await self._changed.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    async def _pass(self, slot: Slot, job: str) -> None:
        try:
            await self._start(slot, job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the pass of %s [%s] failed", slot.key, job)
        finally:
            slot.running.discard(job)
            self.slots.close(slot)

    async def stop(self) -> None:
        """Cancel the passes still running (at exit), and wait for them (bounded)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
