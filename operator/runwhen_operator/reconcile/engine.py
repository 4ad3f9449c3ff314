"""The generic managed-resource engine, after Crossplane's managed reconciler.

Each kind supplies an `External` with four idempotent verbs (observe, create, update, delete). The
engine decides which verb to run from the request (the CR's policies and what its status proves we
own) and the observation, and returns an `Outcome`: the conditions to show, the remote identity to
record, the events to emit and when to look again. It writes nothing to Kubernetes itself; the one
exception is `mark_pending`, the caller's hook that records "a create is about to be sent" before
the create goes out, so that a lost answer or a crash never leads to a second remote object.

A miss is never taken on trust where it would make a second object or leak one: an object the
status says is ours is deleted by a DELETE whatever a listing says (a 404 is success), and a miss
of an object this process created moments ago (``Observation.recently_created``) is looked at again
soon instead of being created again, or finalized on a 404.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from runwhen_operator.runwhen import errors

Item = dict[str, Any]
D = TypeVar("D")
D_contra = TypeVar("D_contra", contravariant=True)


class Action(enum.StrEnum):
    NONE = "None"
    CREATE = "Create"
    UPDATE = "Update"
    DELETE = "Delete"
    ORPHAN = "Orphan"
    ADOPT = "Adopt"
    OBSERVE = "Observe"


class Requeue(enum.StrEnum):
    POLL = "Poll"  # the normal drift-check interval
    BACKOFF = "Backoff"  # a transient error: growing delays
    SOON = "Soon"  # something is settling; look again shortly
    NEVER = "Never"  # terminal until the object changes


# Condition reasons (CamelCase, stable: documented and used by health checks).
REASON_AVAILABLE = "Available"
REASON_OBSERVED = "Observed"
REASON_CREATING = "Creating"
REASON_DELETING = "Deleting"
REASON_NOT_FOUND = "NotFound"
REASON_ALREADY_EXISTS = "AlreadyExists"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_UNAUTHORIZED = "Unauthorized"
REASON_FORBIDDEN = "Forbidden"
REASON_IDENTITY_MISMATCH = "RemoteIdentityMismatch"
REASON_API_ERROR = "ReconcileError"
REASON_SUCCESS = "ReconcileSuccess"
REASON_PAUSED = "ReconcilePaused"
REASON_CONNECTION_NOT_READY = "ConnectionNotReady"
REASON_WAITING_FOR_WORKSPACE = "WaitingForWorkspace"
REASON_NAME_TAKEN = "NameTaken"

TERMINAL_REASONS = frozenset({REASON_INVALID_SPEC, REASON_ALREADY_EXISTS, REASON_NAME_TAKEN})


@dataclass(frozen=True)
class Observation:
    """What the remote side holds for one desired object."""

    exists: bool
    remote: Item | None = None
    up_to_date: bool = True
    diff: Item = field(default_factory=dict)
    external_id: Any = None
    created_at: datetime | None = None  # when the server created it, where it says
    #: this process created it moments ago and the server has not shown it since (what was seen is
    #: this process's own write): "not found" may be a server that lags behind, and is not trusted
    recently_created: bool = False


class External(Protocol[D_contra]):
    """Per-kind access to the remote object. Every verb is idempotent."""

    #: creating is an upsert by name, which cannot make a second object: no pending mark is needed
    idempotent_create: bool

    def describe(self, desired: D_contra) -> str:
        """A short human name for messages, e.g. `workflow "triage" in workspace "prod"`."""
        ...

    async def observe(self, desired: D_contra, external_id: Any, *, lookup_by_name: bool) -> Observation:
        """Find the remote object by `external_id`, or by name when `lookup_by_name`."""
        ...

    async def create(self, desired: D_contra) -> Observation: ...

    async def update(self, desired: D_contra, observation: Observation) -> Observation: ...

    async def delete(self, desired: D_contra, observation: Observation) -> None: ...


@dataclass(frozen=True)
class Request(Generic[D]):
    desired: D
    managed: bool = True  # managementPolicy Manage (False: ObserveOnly)
    delete_remote: bool = True  # deletionPolicy Delete (False: Orphan)
    adopt: bool = False  # adoptionPolicy Adopt (False: FailIfExists)
    deleting: bool = False
    external_id: Any = None  # set once we created or adopted the remote object
    create_pending: bool = False  # a create was sent and its answer not recorded
    spec_changed: bool = True  # generation differs from the last observed generation
    owner_since: datetime | None = None  # when the resource was created (metadata.creationTimestamp)


@dataclass(frozen=True)
class ConditionState:
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass
class Outcome:
    action: Action
    ready: ConditionState | None  # None: leave Ready as it is
    synced: ConditionState
    external_id: Any = None
    remote: Item | None = None
    create_pending: bool = False
    finalized: bool = False  # deletion finished: the finalizer may go
    requeue: Requeue = Requeue.POLL
    retry_after: float | None = None
    events: list[Event] = field(default_factory=list)


MarkPending = Callable[[], Awaitable[None]]

_SYNCED = ConditionState("True", REASON_SUCCESS)


async def reconcile(request: Request[D], external: External[D], mark_pending: MarkPending) -> Outcome:
    """One pass: observe, then create, update, delete or nothing. Errors become an Outcome."""
    what = external.describe(request.desired)
    try:
        if request.deleting:
            return await _finalize(request, external, what)
        return await _sync(request, external, mark_pending, what)
    except errors.RejectedAfterCreateError as exc:
        # Created (so ours from now on), then refused its fields: record it, wait for a new spec.
        outcome = _failure(request, REASON_INVALID_SPEC, f"RunWhen rejected {what}: {exc}", Requeue.NEVER)
        outcome.external_id, outcome.create_pending = exc.external_id, False
        return outcome
    except errors.InvalidRequestError as exc:
        return _failure(request, REASON_INVALID_SPEC, f"RunWhen rejected {what}: {exc}", Requeue.NEVER)
    except errors.WorkspaceRenamedError as exc:
        # Every try would create (and delete) another auto-suffixed workspace: wait for a new spec.
        return _failure(request, REASON_NAME_TAKEN, f"{what}: {exc}", Requeue.NEVER)
    except errors.PermissionDeniedError as exc:
        # Authenticated, not allowed on this path: this object's problem (the message has the path
        # and the server's words), not the connection's; the credentials are not renewed for it.
        return _failure(
            request, REASON_FORBIDDEN, f"RunWhen does not allow this for {what}: {exc}", Requeue.BACKOFF
        )
    except errors.AuthError as exc:
        return _failure(
            request, REASON_UNAUTHORIZED, f"RunWhen refused the credentials: {exc}", Requeue.BACKOFF
        )
    except errors.IdentityMismatchError as exc:
        # Nothing of the answer is recorded: the identity stays the spec's (and a create's pending
        # mark stays, so the next pass looks by name before creating again).
        return _failure(request, REASON_IDENTITY_MISMATCH, f"{what}: {exc}", Requeue.BACKOFF)
    except errors.RunWhenError as exc:
        outcome = _failure(request, REASON_API_ERROR, f"{what}: {exc}", Requeue.BACKOFF, ready=None)
        if isinstance(exc, errors.RateLimitedError):
            outcome.retry_after = exc.retry_after
        return outcome


def _failure(
    request: Request[Any],
    reason: str,
    message: str,
    requeue: Requeue,
    *,
    ready: ConditionState | bool | None = True,
) -> Outcome:
    ready_state = ConditionState("False", reason, message) if ready is True else None
    return Outcome(
        action=Action.NONE,
        ready=ready_state,
        synced=ConditionState("False", reason, message),
        external_id=request.external_id,
        create_pending=request.create_pending,
        requeue=requeue,
        events=[Event("Warning", reason, message)],
    )


async def _finalize(request: Request[D], external: External[D], what: str) -> Outcome:
    if not request.managed or not request.delete_remote:
        return Outcome(
            action=Action.ORPHAN,
            ready=ConditionState("False", REASON_DELETING, f"orphaning {what}"),
            synced=_SYNCED,
            external_id=request.external_id,
            finalized=True,
            requeue=Requeue.NEVER,
            events=[Event("Normal", "Orphaned", f"left {what} in RunWhen (deletionPolicy Orphan)")],
        )
    if request.external_id is None and not request.create_pending and not external.idempotent_create:
        # Never created or adopted by this object: there is nothing of ours to delete.
        return _nothing_to_delete(what)
    observation = await external.observe(
        request.desired,
        request.external_id,
        lookup_by_name=request.create_pending or request.external_id is None,
    )
    events: list[Event] = []
    foreign = request.external_id is None and not request.create_pending
    if observation.exists and foreign and not _created_by_us(request, observation):
        return _nothing_to_delete(what)
    if observation.exists or request.external_id is not None:
        # One the status says is ours is deleted whatever the listing says: a lying or lagging
        # listing must not leak it. The DELETE answering 404 is success, unless this process
        # created the object moments ago (then the server may not show it yet: try again soon).
        target = (
            observation
            if observation.exists
            else dataclasses.replace(observation, external_id=request.external_id)
        )
        try:
            await external.delete(request.desired, target)
        except errors.NotFoundError:
            if observation.recently_created:
                return _not_shown_yet(request, what, deleting=True)
            if observation.exists:
                events.append(Event("Normal", "Deleted", f"deleted {what} in RunWhen"))
        else:
            events.append(Event("Normal", "Deleted", f"deleted {what} in RunWhen"))
    return Outcome(
        action=Action.DELETE,
        ready=ConditionState("False", REASON_DELETING, f"deleted {what}"),
        synced=_SYNCED,
        finalized=True,
        requeue=Requeue.NEVER,
        events=events,
    )


async def _sync(request: Request[D], external: External[D], mark_pending: MarkPending, what: str) -> Outcome:
    observation = await external.observe(
        request.desired,
        request.external_id,
        lookup_by_name=request.external_id is None or request.create_pending,
    )
    if not request.managed:
        return _observe_only(request, observation, what)
    if not observation.exists:
        if observation.recently_created:
            return _not_shown_yet(request, what, deleting=False)
        return await _create(request, external, mark_pending, what)

    events: list[Event] = []
    action = Action.NONE
    owned = request.external_id is not None or request.create_pending
    if not owned and external.idempotent_create and _created_by_us(request, observation):
        # An upsert of ours whose answer never made it into the status (a crash, a lost status
        # write): the server made the object after this resource existed.
        owned = True
    if not owned:
        if not request.adopt:
            message = (
                f"{what} already exists in RunWhen and adoptionPolicy is FailIfExists; "
                "set adoptionPolicy: Adopt to take it over, or choose another name"
            )
            return Outcome(
                action=Action.NONE,
                ready=ConditionState("False", REASON_ALREADY_EXISTS, message),
                synced=ConditionState("False", REASON_ALREADY_EXISTS, message),
                requeue=Requeue.POLL,
                events=[Event("Warning", REASON_ALREADY_EXISTS, message)],
            )
        action = Action.ADOPT
        events.append(Event("Normal", "Adopted", f"adopted existing {what}"))

    if not observation.up_to_date:
        fields = ", ".join(sorted(observation.diff)) or "fields"
        updated = await external.update(request.desired, observation)
        if request.spec_changed or action is Action.ADOPT:
            events.append(Event("Normal", "Updated", f"updated {what} ({fields})"))
        else:
            events.append(Event("Normal", "DriftCorrected", f"corrected remote drift of {what} ({fields})"))
        observation = updated
        action = Action.UPDATE if action is Action.NONE else action

    return Outcome(
        action=action,
        ready=ConditionState("True", REASON_AVAILABLE, f"{what} is in sync"),
        synced=_SYNCED,
        external_id=observation.external_id,
        remote=observation.remote,
        create_pending=False,
        events=events,
    )


async def _create(
    request: Request[D], external: External[D], mark_pending: MarkPending, what: str
) -> Outcome:
    recreated = request.external_id is not None and not request.create_pending
    if not request.create_pending and not external.idempotent_create:
        await mark_pending()
    try:
        created = await external.create(request.desired)
    except errors.WriteOutcomeUnknownError as exc:
        # The create may have been applied: keep the pending mark, look before creating again.
        message = f"the answer to creating {what} was lost; checking before retrying: {exc}"
        return Outcome(
            action=Action.CREATE,
            ready=ConditionState("False", REASON_CREATING, message),
            synced=ConditionState("False", REASON_API_ERROR, message),
            external_id=request.external_id,
            create_pending=True,
            requeue=Requeue.SOON,
        )
    except errors.InvalidRequestError:
        raise
    except errors.IdentityMismatchError as exc:
        # Sent, and answered about another object: whether ours exists is for the next pass to see
        # (by name, as the pending mark says), never for this answer to decide.
        outcome = _failure(request, REASON_IDENTITY_MISMATCH, f"{what}: {exc}", Requeue.BACKOFF)
        outcome.create_pending = request.create_pending or not external.idempotent_create
        return outcome
    reason, verb = ("Recreated", "recreated") if recreated else ("Created", "created")
    return Outcome(
        action=Action.CREATE,
        ready=ConditionState("True", REASON_AVAILABLE, f"{what} is in sync"),
        synced=_SYNCED,
        external_id=created.external_id,
        remote=created.remote,
        create_pending=False,
        events=[Event("Normal", reason, f"{verb} {what} in RunWhen")],
    )


def _not_shown_yet(request: Request[Any], what: str, *, deleting: bool) -> Outcome:
    """This process created the object moments ago and the server does not show it (yet): neither
    create it again nor take it for gone; look again soon. Ready is left as it is for an object
    already recorded as ours."""
    if deleting:
        reason = REASON_DELETING
        message = f"RunWhen does not show {what}, created moments ago, yet; deleting it again shortly"
    else:
        reason = REASON_CREATING
        message = f"RunWhen does not show {what}, created moments ago, yet; looking again before creating it"
    state = ConditionState("False", reason, message)
    return Outcome(
        action=Action.NONE,
        ready=state if deleting or request.external_id is None else None,
        synced=state,
        external_id=request.external_id,
        create_pending=request.create_pending,
        requeue=Requeue.SOON,
    )


def _nothing_to_delete(what: str) -> Outcome:
    return Outcome(
        action=Action.NONE,
        ready=ConditionState("False", REASON_DELETING, f"nothing to delete for {what}"),
        synced=_SYNCED,
        finalized=True,
        requeue=Requeue.NEVER,
    )


def _created_by_us(request: Request[Any], observation: Observation) -> bool:
    """Whether the upsert that made the object was this resource's (an idempotent create leaves no
    pending mark): the server created it after the resource was created. The resource's creation
    time has whole seconds, so within its second only an object that already matches the spec is
    taken for ours; an object of another shape made then is someone else's."""
    if request.owner_since is None or observation.created_at is None:
        return False
    if observation.created_at < request.owner_since:
        return False
    return observation.created_at >= request.owner_since + timedelta(seconds=1) or observation.up_to_date


def _observe_only(request: Request[Any], observation: Observation, what: str) -> Outcome:
    if not observation.exists:
        message = f"{what} does not exist in RunWhen (managementPolicy ObserveOnly: not creating it)"
        return Outcome(
            action=Action.OBSERVE,
            ready=ConditionState("False", REASON_NOT_FOUND, message),
            synced=ConditionState("True", REASON_SUCCESS, message),
            requeue=Requeue.POLL,
        )
    message = f"observing {what}" + ("" if observation.up_to_date else " (differs from spec; not written)")
    return Outcome(
        action=Action.OBSERVE,
        ready=ConditionState("True", REASON_OBSERVED, message),
        synced=_SYNCED,
        external_id=observation.external_id,
        remote=observation.remote,
    )
