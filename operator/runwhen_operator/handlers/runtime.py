"""What Kopf's handlers and daemons share about one object: its slot.

Kopf runs the passes: its change handlers (``on.create``/``on.update``/``on.delete``) for what the
user changed, and one daemon per object and job for everything that comes by itself (the drift check
at the object's own poll interval, the retry after a transient error, the wait for a parent or a
connection). Both go through the object's `Slot`:

- ``lock``: an object is never reconciled twice at once (a handler and its daemon take turns);
- ``body()``: the newest body known, the daemon's live view (Kopf keeps it current) or what the
  operator's own last status write returned, whichever has the newer resourceVersion; never used to
  decide whether an event matters (Kopf's diff base does that);
- ``wake()``: a handler, the parent Workspace or the connection asks the daemon to look again now;
- ``due``: when the daemon runs its next pass (the result of the last pass, whoever ran it).

Kopf cannot trigger another object's handlers; the slots are the smallest piece that lets a
Workspace turning Ready, or a connection being fixed, reach its dependents at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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


@dataclass
class Slot:
    """One object's shared state (see the module docstring)."""

    key: tuple[str, str, str]
    live: Any = None  # Kopf's live body of the object (a daemon's `body`)
    written: Body | None = None  # what the operator's own last write returned
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failures: dict[str, int] = field(default_factory=dict)  # per job
    due: dict[str, float | None] = field(default_factory=dict)  # per job: monotonic time, None=never
    events: dict[str, asyncio.Event] = field(default_factory=dict)  # per job: wake the daemon
    daemons: int = 0
    woken: dict[str, float] = field(default_factory=dict)  # per job: when it was last woken
    pending_rv: int | None = None  # a status patch Kopf applies after the handler, from this version
    provisional: Body | None = None  # the object as it will be once Kopf has applied that patch

    def body(self, *, provisional: bool = True) -> Body | None:
        live = dict(self.live) if self.live is not None else None
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
        if self.holds_copies() and self.live is not None:
            self.body(provisional=False)

    def event(self, job: str) -> asyncio.Event:
        ev = self.events.get(job)
        if ev is None:
            ev = self.events[job] = asyncio.Event()
        return ev

    def wake(self, job: str = "reconcile") -> None:
        now = time.monotonic()
        self.due[job] = now
        self.woken[job] = now
        self.event(job).set()

    def wake_all(self) -> None:
        for event in self.events.values():
            event.set()

    def schedule(
        self, job: str, after: float | None, *, notify: bool = True, since: float | None = None
    ) -> None:
        """The next pass of `job` in `after` seconds (None: only when woken); tells its daemon.

        ``since``: when the pass that asks began. A wake that came after that (a parent or the
        connection turned Ready while the pass ran on what it had read before) is not lost to what
        the pass asked for: the next pass is due at once."""
        if since is not None and self.woken.get(job, float("-inf")) >= since:
            after = 0.0
        self.due[job] = None if after is None else time.monotonic() + max(0.0, after)
        if notify:
            self.event(job).set()


class Slots:
    """Every object's slot, by (kind, namespace, name)."""

    def __init__(self, *, workers: int = 16, backoff: Backoff | None = None) -> None:
        self._slots: dict[tuple[str, str, str], Slot] = {}
        self.backoff = backoff or Backoff()
        self.passes = asyncio.Semaphore(workers)  # concurrent passes, all kinds together
        self.reconciles = 0

    def get(self, kind: str, namespace: str, name: str) -> Slot | None:
        return self._slots.get((kind, namespace, name))

    def open(self, kind: str, namespace: str, name: str) -> Slot:
        key = (kind, namespace, name)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = Slot(key)
        return slot

    def close(self, slot: Slot) -> None:
        if self._slots.get(slot.key) is slot and slot.daemons <= 0:
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
