"""Coalesced observation: objects of one kind in one scope share one list call.

A reconcile of a Workflow does not GET its workflow; it asks the cache for the listing of all
workflows of its workspace, no older than some age. Concurrent askers share one in-flight list call
(single flight), and the engine's own writes are folded into the cached listing, so a resync of N
objects in W workspaces costs about W list calls rather than N GETs.

A list answer describes the server as it was when the call started. Writes folded in after that
(``upsert``, ``remove``) are kept in a per-scope journal and applied again on top of the answer, so
an older answer never undoes them: a create is not forgotten (and made twice), a delete not undone.

The cache also remembers which objects this process created, by name: for ``create_grace`` seconds
after the create, until the server shows the object (in a listing that started after the create,
or a direct read), ``recently_created`` says so, and a miss of that object is not to be trusted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

Item = dict[str, Any]
Loader = Callable[[], Awaitable[Iterable[Item]]]

#: How long after this process created an object a "not found" for it is not trusted, by default.
DEFAULT_CREATE_GRACE = 30.0


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


@dataclass(frozen=True)
class _Write:
    """One write folded in: an upsert of ``item``, or (``item`` None) the removal of ``key``."""

    at: float
    item: Item | None = None
    key: Any = None

    def apply(self, listing: Listing) -> None:
        if self.item is not None:
            listing.items[self.item[listing.id_field]] = self.item
        else:
            listing.items.pop(self.key, None)


@dataclass
class _Entry:
    listing: Listing | None = None
    inflight: asyncio.Future[Listing] | None = None
    generation: int = 0  # bumped on invalidate, so a stale in-flight answer is not stored
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    journal: list[_Write] = field(default_factory=list)  # writes made while a list call was in flight
    created: dict[Hashable, float] = field(default_factory=dict)  # name -> when this process created it


class ListingCache:
    """Per-scope listings with single-flight refresh; `clock` is injectable for tests.

    ``create_grace``: seconds after this process created an object during which the server's "not
    found" for it is not trusted (a lagging or lying listing), unless the server has shown it since.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, create_grace: float = DEFAULT_CREATE_GRACE
    ) -> None:
        if create_grace < 0:
            raise ValueError("create_grace must not be negative")
        self._entries: dict[Hashable, _Entry] = {}
        self._clock = clock
        self.create_grace = create_grace
        self.list_calls = 0

    def _entry(self, scope: Hashable) -> _Entry:
        entry = self._entries.get(scope)
        if entry is None:
            entry = self._entries[scope] = _Entry()
        return entry

    async def get(self, scope: Hashable, loader: Loader, *, id_field: str, max_age: float) -> Listing:
        """A listing of `scope` read no more than `max_age` seconds ago (or now), with the writes
        folded in since that read began."""
        entry = self._entry(scope)
        now = self._clock()
        if entry.listing is not None and now - entry.listing.fetched_at <= max_age:
            return entry.listing
        if entry.inflight is not None and not entry.inflight.done():
            return await asyncio.shield(entry.inflight)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Listing] = loop.create_future()
        generation = entry.generation
        started = self._clock()
        entry.inflight = future
        entry.journal.clear()  # only writes made from now on can be missing from this answer
        try:
            self.list_calls += 1
            items = await loader()
            listing = Listing(
                items={item[id_field]: item for item in items}, fetched_at=started, id_field=id_field
            )
        except BaseException as exc:
            entry.inflight = None
            entry.journal.clear()
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        self._shown(entry, listing, started)
        for write in entry.journal:
            if write.at >= started:
                write.apply(listing)
        entry.journal.clear()
        if generation == entry.generation:
            entry.listing = listing
        entry.inflight = None
        future.set_result(listing)
        return listing

    def _shown(self, entry: _Entry, listing: Listing, started: float) -> None:
        """The server listed these objects: the ones created before the list began are visible now
        (one created at the same clock reading may not be: it keeps its mark)."""
        if not entry.created:
            return
        names = {item.get("name") for item in listing.items.values()}
        for name, at in list(entry.created.items()):
            if at < started and name in names:
                del entry.created[name]

    def _fold(self, scope: Hashable, write: _Write) -> None:
        entry = self._entries.get(scope)
        if entry is None:
            return
        if entry.listing is not None:
            write.apply(entry.listing)
        if entry.inflight is not None and not entry.inflight.done():
            entry.journal.append(write)

    def upsert(self, scope: Hashable, item: Item) -> None:
        """Fold an object the engine just wrote (or read) into the cached listing, and into the
        answer of a list call in flight."""
        self._fold(scope, _Write(self._clock(), item=item))

    def remove(self, scope: Hashable, key: Any) -> None:
        """Fold the removal of an object into the cached listing, and into the answer of a list call
        in flight."""
        self._fold(scope, _Write(self._clock(), key=key))

    def mark_created(self, scope: Hashable, name: Hashable) -> None:
        """This process just created the object called `name` in `scope`."""
        self._entry(scope).created[name] = self._clock()

    def clear_created(self, scope: Hashable, name: Hashable) -> None:
        """The object was seen by a direct read, or deleted: a miss of it is to be trusted again."""
        entry = self._entries.get(scope)
        if entry is not None:
            entry.created.pop(name, None)

    def recently_created(self, scope: Hashable, name: Hashable) -> bool:
        """Whether this process created `name` in `scope` less than `create_grace` seconds ago and
        the server has not shown it since: then "not found" may be a listing that lags behind."""
        entry = self._entries.get(scope)
        if entry is None:
            return False
        at = entry.created.get(name)
        if at is None:
            return False
        if self._clock() - at < self.create_grace:
            return True
        del entry.created[name]
        return False

    def invalidate(self, scope: Hashable) -> None:
        """Forget a scope's listing (after an ambiguous write), so the next reader lists again."""
        entry = self._entries.get(scope)
        if entry is not None:
            entry.listing = None
            entry.generation += 1

    def forget(self, scope: Hashable) -> None:
        self._entries.pop(scope, None)
