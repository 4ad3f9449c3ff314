"""Coalesced observation: objects of one kind in one scope share one list call.

A reconcile of a Workflow does not GET its workflow; it asks the cache for the listing of all
workflows of its workspace, no older than some age. Concurrent askers share one in-flight list call
(single flight), and the engine's own writes are folded into the cached listing, so a resync of N
objects in W workspaces costs about W list calls rather than N GETs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

Item = dict[str, Any]
Loader = Callable[[], Awaitable[Iterable[Item]]]


@dataclass
class Listing:
    """One scope's remote objects, keyed by their identity field, and when they were read."""

    items: dict[Any, Item]
    fetched_at: float
    id_field: str

    def find(self, key: Any) -> Item | None:
        return self.items.get(key)

    def find_by(self, field_name: str, value: Any) -> list[Item]:
        return [i for i in self.items.values() if i.get(field_name) == value]


@dataclass
class _Entry:
    listing: Listing | None = None
    inflight: asyncio.Future[Listing] | None = None
    generation: int = 0  # bumped on invalidate, so a stale in-flight answer is not stored
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ListingCache:
    """Per-scope listings with single-flight refresh; `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._clock = clock
        self.list_calls = 0

    def _entry(self, scope: Hashable) -> _Entry:
        entry = self._entries.get(scope)
        if entry is None:
            entry = self._entries[scope] = _Entry()
        return entry

    async def get(self, scope: Hashable, loader: Loader, *, id_field: str, max_age: float) -> Listing:
        """A listing of `scope` read no more than `max_age` seconds ago (or now)."""
        entry = self._entry(scope)
        now = self._clock()
        if entry.listing is not None and now - entry.listing.fetched_at <= max_age:
            return entry.listing
        if entry.inflight is not None and not entry.inflight.done():
            return await asyncio.shield(entry.inflight)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Listing] = loop.create_future()
        entry.inflight = future
        generation = entry.generation
        try:
            started = self._clock()
            self.list_calls += 1
            items = await loader()
            listing = Listing(
                items={item[id_field]: item for item in items}, fetched_at=started, id_field=id_field
            )
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            entry.inflight = None
            raise
        if generation == entry.generation:
            entry.listing = listing
        entry.inflight = None
        future.set_result(listing)
        return listing

    def upsert(self, scope: Hashable, item: Item) -> None:
        """Fold an object the engine just wrote (or read) into the cached listing."""
        entry = self._entries.get(scope)
        if entry is not None and entry.listing is not None:
            entry.listing.items[item[entry.listing.id_field]] = item

    def remove(self, scope: Hashable, key: Any) -> None:
        entry = self._entries.get(scope)
        if entry is not None and entry.listing is not None:
            entry.listing.items.pop(key, None)

    def invalidate(self, scope: Hashable) -> None:
        """Forget a scope's listing (after an ambiguous write), so the next reader lists again."""
        entry = self._entries.get(scope)
        if entry is not None:
            entry.listing = None
            entry.generation += 1

    def forget(self, scope: Hashable) -> None:
        self._entries.pop(scope, None)
