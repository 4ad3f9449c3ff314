"""Per-kind external clients: how a Workspace, Workflow or Persona is observed and written.

They speak the canonical shapes of ``runwhen.dialect`` over whichever dialect the connection's
server speaks. Workspaces are addressed by name and patched, so only drifted fields are sent.
Workflows and personas are written whole when any field drifted (a PUT by id, or an upsert by
name); the dialect says which field identifies them. All observation goes through the coalesced
listing cache.

A miss is confirmed before it is acted on: a miss in a cached listing with a fresh one, and a miss
of an object the status says is ours (``external_id``) with a direct read by identity, so a listing
that lies or lags behind neither makes a second object nor skips a DELETE. A miss of an object this
process created moments ago is reported as such (``Observation.recently_created``, from the listing
cache), for the engine to look again soon rather than create it again.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from runwhen_operator.reconcile import diff, engine, listing
from runwhen_operator.runwhen import dialect, errors, models

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

    idempotent_create = False

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


def check_identity(what: str, verb: str, expected: Any, answer: Item, field_name: str = "name") -> None:
    """The remote identity comes from the spec (or the status): an answer about another object
    (a create of workspace ``a`` answered with workspace ``b``) raises, so nothing of it is recorded
    and no later call goes to the object it names."""
    given = answer.get(field_name)
    if given is None or expected is None or str(given) == str(expected):
        return
    raise errors.IdentityMismatchError(
        f"RunWhen answered the {verb} of {what} with {field_name} {str(given)!r}; the identity stays "
        f"{str(expected)!r} and nothing of that answer is recorded",
        expected=str(expected),
        given=str(given),
    )


@dataclass(frozen=True)
class WorkspaceDesired:
    name: str
    body: Item = field(default_factory=dict)  # the fields the spec sets, canonical, without `name`


def spec_body(spec: Any, fields: frozenset[str]) -> Item:
    """The part of a parsed spec the operator sends for a kind (its ``*_BODY_FIELDS``), as the API
    names them: the one place a desired body is built, for the reconcilers and for ``export``."""
    body: Item = spec.model_dump(by_alias=True, exclude_none=True, mode="json", include=set(fields))
    return body


#: The spec fields (model field names) a Workspace sends; the others are the operator's own settings.
WORKSPACE_BODY_FIELDS = frozenset({"display_name", "enabled_locations", "config_provided", "slx_groups"})
#: The spec fields besides the name a Workflow or Persona sends, written whole.
WORKFLOW_BODY_FIELDS = frozenset({"definition"})
PERSONA_BODY_FIELDS = frozenset(
    {
        "full_name",
        "description",
        "avatar_url",
        "filter_confidence_threshold",
        "filter_issue_selection_strategy",
        "filter_codebundle_task_tags",
        "filter_stop_words",
        "filter_scope",
        "search_filters",
        "run_confidence_threshold",
        "run_config",
    }
)

WORKSPACE_SET_KEYS = frozenset({"enabledLocations"})
WORKSPACE_EXACT_KEYS = frozenset({"configProvided", "slxGroups"})


class WorkspaceExternal:
    # Creating a workspace is a POST that a taken name turns into another workspace: never repeated
    # blindly, in either dialect.
    idempotent_create = False

    def __init__(self, api: dialect.Api, cache: listing.ListingCache, scope: Hashable, max_age: float):
        self._api, self._cache, self._max_age = api, cache, max_age
        self._scope = (scope, "workspaces")

    def describe(self, desired: WorkspaceDesired) -> str:
        return f'workspace "{desired.name}"'

    async def observe(
        self, desired: WorkspaceDesired, external_id: Any, *, lookup_by_name: bool
    ) -> engine.Observation:
        name = external_id or desired.name
        found = await self._cache.get(
            self._scope, self._api.workspace_listing, id_field="name", max_age=self._max_age
        )
        remote = found.find(name)
        if remote is None and self._max_age > 0:
            # A miss in a cached listing leads to a POST (which the platform would answer by
            # renaming a taken name): confirm it with a fresh listing first.
            found = await self._cache.get(
                self._scope, self._api.workspace_listing, id_field="name", max_age=0
            )
            remote = found.find(name)
        if remote is None and external_id is not None:
            # Ours, and not listed: a listing may lie or lag; only the object itself says it is gone.
            remote = await self._api.read_workspace(name)
            if remote is not None:
                check_identity(self.describe(desired), "read", name, remote)
                self._cache.clear_created(self._scope, name)
                self._cache.upsert(self._scope, remote)
        recent = self._cache.recently_created(self._scope, name)
        if remote is None:
            return engine.Observation(exists=False, recently_created=recent)
        drift = diff.drifted_fields(desired.body, remote, WORKSPACE_SET_KEYS, WORKSPACE_EXACT_KEYS)
        return engine.Observation(
            exists=True,
            remote=remote,
            up_to_date=not drift,
            diff=drift,
            external_id=remote["name"],
            recently_created=recent,
        )

    async def create(self, desired: WorkspaceDesired) -> engine.Observation:
        try:
            created = await self._api.new_workspace(desired.name, desired.body)
        except errors.RejectedAfterCreateError:
            self._cache.upsert(self._scope, {"name": desired.name})
            self._cache.mark_created(self._scope, desired.name)
            raise
        except errors.WriteOutcomeUnknownError:
            self._cache.invalidate(self._scope)
            raise
        try:
            check_identity(self.describe(desired), "create", desired.name, created)
        except errors.IdentityMismatchError:
            self._cache.invalidate(self._scope)
            raise
        self._cache.upsert(self._scope, created)
        self._cache.mark_created(self._scope, desired.name)
        return engine.Observation(exists=True, remote=created, external_id=desired.name)

    async def update(self, desired: WorkspaceDesired, observation: engine.Observation) -> engine.Observation:
        name = observation.external_id
        updated = await self._api.change_workspace(name, dict(observation.diff))
        check_identity(self.describe(desired), "update", name, updated)
        self._cache.upsert(self._scope, updated)
        return engine.Observation(exists=True, remote=updated, external_id=name)

    async def delete(self, desired: WorkspaceDesired, observation: engine.Observation) -> None:
        name = observation.external_id or desired.name
        try:
            await self._api.remove_workspace(name)
        finally:
            self._cache.remove(self._scope, name)
        self._cache.clear_created(self._scope, name)


@dataclass(frozen=True)
class ChildDesired:
    workspace: str
    name: str
    body: Item  # the full desired body, camelCase, with `name`


class ChildExternal:
    """Workflows and personas: one listing per workspace and kind, keyed by the dialect's identity
    field (the integer id, or the short name); ``external_id`` is always the server's id."""

    def __init__(
        self,
        api: dialect.Api,
        kind: dialect.ChildKind,
        cache: listing.ListingCache,
        scope: Hashable,
        max_age: float,
    ):
        self._api, self._kind, self._cache, self._scope_root, self._max_age = api, kind, cache, scope, max_age
        self.idempotent_create = api.idempotent_child_create

    def _scope(self, workspace: str) -> Hashable:
        return (self._scope_root, self._kind.label, workspace)

    def describe(self, desired: ChildDesired) -> str:
        return f'{self._kind.label} "{desired.name}" in workspace "{desired.workspace}"'

    def _observation(self, desired: ChildDesired, remote: Item, recent: bool) -> engine.Observation:
        drift = diff.drifted_fields(desired.body, remote, self._kind.set_keys, self._kind.exact_keys)
        return engine.Observation(
            exists=True,
            remote=remote,
            up_to_date=not drift,
            diff=drift,
            external_id=remote.get("id"),
            created_at=models.parse_time(remote.get("createdAt")),
            recently_created=recent,
        )

    async def observe(
        self, desired: ChildDesired, external_id: Any, *, lookup_by_name: bool
    ) -> engine.Observation:
        scope = self._scope(desired.workspace)
        try:
            remote = await self._find(desired, external_id, lookup_by_name, self._max_age)
            if (
                remote is None
                and self._max_age > 0
                and (external_id is not None or not self.idempotent_create)
            ):
                # A miss in a cached listing leads to a create: confirm it with a fresh listing
                # before one of ours is taken for gone, or a POST makes a second object (an upsert
                # by name cannot, so a new object needs no confirmation there).
                remote = await self._find(desired, external_id, lookup_by_name, 0.0)
        except errors.NotFoundError:
            remote = None  # the workspace is gone, and its children with it
        if remote is None and external_id is not None:
            # Ours, and not listed: a listing may lie or lag; only the object itself says it is gone.
            key = desired.name if self._api.child_key == "name" else external_id
            remote = await self._api.read_child(self._kind, desired.workspace, key)
            if remote is not None:
                self._check(desired, "read", remote, external_id)
                self._cache.clear_created(scope, desired.name)
                self._cache.upsert(scope, remote)
        recent = self._cache.recently_created(scope, desired.name)
        if remote is None:
            return engine.Observation(exists=False, recently_created=recent)
        return self._observation(desired, remote, recent)

    async def _find(
        self, desired: ChildDesired, external_id: Any, lookup_by_name: bool, max_age: float
    ) -> Item | None:
        key = self._api.child_key
        found = await self._cache.get(
            self._scope(desired.workspace),
            lambda: self._api.child_listing(self._kind, desired.workspace),
            id_field=key,
            max_age=max_age,
        )
        if key == "name":
            return found.find(desired.name)
        remote = found.find(int(external_id)) if external_id is not None else None
        if remote is None and lookup_by_name:
            same_name = sorted(found.find_by("name", desired.name), key=lambda i: i["id"])
            remote = same_name[0] if same_name else None
        return remote

    def _key(self, desired: ChildDesired, observation: engine.Observation) -> Any:
        """The object's ``child_key`` value: from what was observed, else from the desired name (short
        names) or the recorded id (ids)."""
        remote = observation.remote or {}
        if self._api.child_key == "name":
            return remote.get("name", desired.name)
        return remote.get("id", observation.external_id)

    async def create(self, desired: ChildDesired) -> engine.Observation:
        scope = self._scope(desired.workspace)
        try:
            created = await self._api.new_child(self._kind, desired.workspace, desired.body)
        except errors.WriteOutcomeUnknownError:
            self._cache.invalidate(scope)
            raise
        try:
            self._check(desired, "create", created, None)
        except errors.IdentityMismatchError:
            self._cache.invalidate(scope)
            raise
        self._cache.upsert(scope, created)
        self._cache.mark_created(scope, desired.name)
        return engine.Observation(exists=True, remote=created, external_id=created.get("id"))

    def _check(self, desired: ChildDesired, verb: str, answer: Item, external_id: Any) -> None:
        """An answer names this object: its name, and its id where the status already has one."""
        check_identity(self.describe(desired), verb, desired.name, answer)
        if external_id is not None and self._api.child_key != "name":
            check_identity(self.describe(desired), verb, external_id, answer, "id")

    async def update(self, desired: ChildDesired, observation: engine.Observation) -> engine.Observation:
        scope = self._scope(desired.workspace)
        key = self._key(desired, observation)
        try:
            updated = await self._api.change_child(self._kind, desired.workspace, key, desired.body)
        except errors.NotFoundError:
            self._cache.remove(scope, key)
            raise
        self._check(desired, "update", updated, observation.external_id)
        self._cache.upsert(scope, updated)
        return engine.Observation(exists=True, remote=updated, external_id=updated.get("id"))

    async def delete(self, desired: ChildDesired, observation: engine.Observation) -> None:
        scope = self._scope(desired.workspace)
        key = self._key(desired, observation)
        try:
            await self._api.remove_child(self._kind, desired.workspace, key)
        finally:
            self._cache.remove(scope, key)
        self._cache.clear_created(scope, desired.name)
