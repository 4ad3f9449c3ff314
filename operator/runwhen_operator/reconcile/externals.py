"""Per-kind external clients: how a Workspace, Workflow or Persona is observed and written.

Workspaces are addressed by name and support PATCH, so only drifted fields are sent. Workflows and
personas have integer ids and only full replace (PUT), so the whole desired body is sent when any
field drifted. All observation goes through the coalesced listing cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runwhen_operator.reconcile import diff, engine, listing
from runwhen_operator.runwhen import client, errors

Item = dict[str, Any]


class Blocked(Exception):
    """The object cannot be reconciled yet (no connection, parent not ready): reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class BlockedExternal:
    """Stands in when no client can be had: any remote call raises `Blocked`.

    The engine finishes deletions that need no remote call (Orphan, nothing owned) without one, so
    those still complete while the connection is down.
    """

    def __init__(self, what: str, reason: str, message: str) -> None:
        self._what, self._reason, self._message = what, reason, message

    def describe(self, desired: Any) -> str:
        return self._what

    async def observe(self, desired: Any, external_id: Any, *, lookup_by_name: bool) -> engine.Observation:
        raise Blocked(self._reason, self._message)

    async def create(self, desired: Any) -> engine.Observation:
        raise Blocked(self._reason, self._message)

    async def update(self, desired: Any, observation: engine.Observation) -> engine.Observation:
        raise Blocked(self._reason, self._message)

    async def delete(self, desired: Any, observation: engine.Observation) -> None:
        raise Blocked(self._reason, self._message)


@dataclass(frozen=True)
class WorkspaceDesired:
    name: str
    body: Item = field(default_factory=dict)  # the fields the spec sets, camelCase, without `name`


WORKSPACE_SET_KEYS = frozenset({"enabledLocations"})
WORKSPACE_EXACT_KEYS = frozenset({"configProvided", "slxGroups"})


async def _collect(items: AsyncIterator[Any]) -> list[Item]:
    return [item.wire() async for item in items]


class WorkspaceExternal:
    def __init__(
        self, rw: client.RunWhenClient, cache: listing.ListingCache, scope: Hashable, max_age: float
    ):
        self._rw, self._cache, self._max_age = rw, cache, max_age
        self._scope = (scope, "workspaces")

    def describe(self, desired: WorkspaceDesired) -> str:
        return f'workspace "{desired.name}"'

    async def observe(
        self, desired: WorkspaceDesired, external_id: Any, *, lookup_by_name: bool
    ) -> engine.Observation:
        found = await self._cache.get(
            self._scope, lambda: _collect(self._rw.list_workspaces()), id_field="name", max_age=self._max_age
        )
        remote = found.find(external_id or desired.name)
        if remote is None:
            return engine.Observation(exists=False)
        drift = diff.drifted_fields(desired.body, remote, WORKSPACE_SET_KEYS, WORKSPACE_EXACT_KEYS)
        return engine.Observation(
            exists=True, remote=remote, up_to_date=not drift, diff=drift, external_id=remote["name"]
        )

    async def create(self, desired: WorkspaceDesired) -> engine.Observation:
        try:
            created = (await self._rw.create_workspace({"name": desired.name, **desired.body})).wire()
        except errors.WriteOutcomeUnknownError:
            self._cache.invalidate(self._scope)
            raise
        self._cache.upsert(self._scope, created)
        return engine.Observation(exists=True, remote=created, external_id=created["name"])

    async def update(self, desired: WorkspaceDesired, observation: engine.Observation) -> engine.Observation:
        name = observation.external_id
        updated = (await self._rw.patch_workspace(name, dict(observation.diff))).wire()
        self._cache.upsert(self._scope, updated)
        return engine.Observation(exists=True, remote=updated, external_id=updated["name"])

    async def delete(self, desired: WorkspaceDesired, observation: engine.Observation) -> None:
        try:
            await self._rw.delete_workspace(observation.external_id)
        finally:
            self._cache.remove(self._scope, observation.external_id)


@dataclass(frozen=True)
class ChildDesired:
    workspace: str
    name: str
    body: Item  # the full desired body, camelCase, with `name`


@dataclass(frozen=True)
class ChildApi:
    """The RunWhen calls for one child kind (workflows or personas)."""

    label: str
    list: Callable[[str], AsyncIterator[Any]]
    create: Callable[[str, Mapping[str, Any]], Awaitable[Any]]
    replace: Callable[[str, int, Mapping[str, Any]], Awaitable[Any]]
    delete: Callable[[str, int], Awaitable[None]]
    set_keys: Collection[str] = ()
    exact_keys: Collection[str] = ()


def workflow_api(rw: client.RunWhenClient) -> ChildApi:
    return ChildApi(
        label="workflow",
        list=rw.list_workflows,
        create=rw.create_workflow,
        replace=rw.replace_workflow,
        delete=rw.delete_workflow,
        set_keys=frozenset({"activityVerbs", "slxs"}),
    )


def persona_api(rw: client.RunWhenClient) -> ChildApi:
    return ChildApi(
        label="persona",
        list=rw.list_personas,
        create=rw.create_persona,
        replace=rw.replace_persona,
        delete=rw.delete_persona,
        set_keys=frozenset({"filterCodebundleTaskTags", "filterStopWords"}),
        exact_keys=frozenset({"filterScope", "searchFilters", "runConfig"}),
    )


class ChildExternal:
    """Workflows and personas: integer ids, full replace, one listing per workspace and kind."""

    def __init__(self, api: ChildApi, cache: listing.ListingCache, scope: Hashable, max_age: float):
        self._api, self._cache, self._scope_root, self._max_age = api, cache, scope, max_age

    def _scope(self, workspace: str) -> Hashable:
        return (self._scope_root, self._api.label, workspace)

    def describe(self, desired: ChildDesired) -> str:
        return f'{self._api.label} "{desired.name}" in workspace "{desired.workspace}"'

    async def observe(
        self, desired: ChildDesired, external_id: Any, *, lookup_by_name: bool
    ) -> engine.Observation:
        try:
            found = await self._cache.get(
                self._scope(desired.workspace),
                lambda: _collect(self._api.list(desired.workspace)),
                id_field="id",
                max_age=self._max_age,
            )
        except errors.NotFoundError:
            return engine.Observation(exists=False)  # the workspace is gone, and its children with it
        remote = found.find(int(external_id)) if external_id is not None else None
        if remote is None and lookup_by_name:
            same_name = sorted(found.find_by("name", desired.name), key=lambda i: i["id"])
            remote = same_name[0] if same_name else None
        if remote is None:
            return engine.Observation(exists=False)
        drift = diff.drifted_fields(desired.body, remote, self._api.set_keys, self._api.exact_keys)
        return engine.Observation(
            exists=True, remote=remote, up_to_date=not drift, diff=drift, external_id=remote["id"]
        )

    async def create(self, desired: ChildDesired) -> engine.Observation:
        scope = self._scope(desired.workspace)
        try:
            created = (await self._api.create(desired.workspace, desired.body)).wire()
        except errors.WriteOutcomeUnknownError:
            self._cache.invalidate(scope)
            raise
        self._cache.upsert(scope, created)
        return engine.Observation(exists=True, remote=created, external_id=created["id"])

    async def update(self, desired: ChildDesired, observation: engine.Observation) -> engine.Observation:
        scope = self._scope(desired.workspace)
        try:
            updated = (
                await self._api.replace(desired.workspace, int(observation.external_id), desired.body)
            ).wire()
        except errors.NotFoundError:
            self._cache.remove(scope, observation.external_id)
            raise
        self._cache.upsert(scope, updated)
        return engine.Observation(exists=True, remote=updated, external_id=updated["id"])

    async def delete(self, desired: ChildDesired, observation: engine.Observation) -> None:
        try:
            await self._api.delete(desired.workspace, int(observation.external_id))
        finally:
            self._cache.remove(self._scope(desired.workspace), observation.external_id)
