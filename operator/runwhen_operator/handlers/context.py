"""What every reconciler shares, and the status bookkeeping they have in common."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from runwhen_operator.api import common, kinds
from runwhen_operator.handlers import kube, runtime
from runwhen_operator.reconcile import connections, engine, listing
from runwhen_operator.reconcile import status as status_recorder
from runwhen_operator.runwhen import models

log = logging.getLogger("runwhen_operator")

Body = dict[str, Any]

KIND_CLUSTER_CONNECTION = "ClusterRunWhenConnection"
KIND_CONNECTION = "RunWhenConnection"
KIND_WORKSPACE = "Workspace"
KIND_WORKFLOW = "Workflow"
KIND_PERSONA = "Persona"
KIND_WORKFLOW_RUN = "WorkflowRun"
KIND_RUNNER_LOCATION = "RunnerLocation"

#: Kopf index of the runner locations a Workspace resource's workspace must keep enabled: by the
#: Workspace's (namespace, name), the location names of its RunnerLocations (those being deleted
#: with deletionPolicy Delete left out).
LOCATIONS_INDEX = "runnerlocation_locations"


@dataclass
class Options:
    default_poll_interval: float = 300.0
    connection_check_interval: float = 60.0
    settle_delay: float = 2.0  # after a lost create answer: look again this soon
    startup_grace: float = 15.0  # after a start, how long a missing connection object may be unseen
    create_grace: float = 30.0  # after this process created an object, "not found" is not trusted
    pass_deadline: float = 300.0  # one reconcile pass (all its requests) ends within this
    parent_wait: float = 5.0  # a new child waits this long, quietly, for its Workspace's first verdict


class Metrics:
    """Hooks the metrics module fills in; no-ops by default so reconcilers never depend on it."""

    def reconciled(self, kind: str, result: str, seconds: float) -> None: ...

    def drift_corrected(self, kind: str) -> None: ...

    def connection_ready(self, kind: str, namespace: str, name: str, ready: bool) -> None: ...

    def workspace_health(
        self, namespace: str, name: str, state: str, open_issues: dict[str, int]
    ) -> None: ...

    def forget_workspace(self, namespace: str, name: str) -> None: ...

    def forget_connection(self, kind: str, namespace: str, name: str) -> None: ...


@dataclass
class Context:
    slots: runtime.Slots
    kube: kube.Kube
    registry: connections.Registry
    listings: listing.ListingCache
    options: Options = field(default_factory=Options)
    metrics: Metrics = field(default_factory=Metrics)
    started: float = field(default_factory=time.monotonic)
    #: Kopf's indices (by their handler ids), as handlers receive them
    indices: dict[str, Any] = field(default_factory=dict)

    def dependents(self, kind: str, ref_field: str, namespace: str, name: str) -> list[str]:
        """Names of the objects of `kind` in `namespace` whose `spec.<ref_field>.name` is `name`."""
        index = self.indices.get(dependents_index(kind, ref_field))
        if index is None:
            return []
        return [str(n) for n in index.get((namespace, name), ())]

    def using_connection(self, kind: str, cid: connections.ConnectionId) -> list[tuple[str, str]]:
        """(namespace, name) of the objects of `kind` that use the connection `cid`."""
        index = self.indices.get(connection_index(kind))
        if index is None:
            return []
        return [(str(ns), str(n)) for ns, n in index.get(cid, ())]

    def runner_locations(self, namespace: str, workspace: str) -> list[str]:
        """The location names the RunnerLocations of Workspace resource `workspace` keep enabled."""
        index = self.indices.get(LOCATIONS_INDEX)
        if index is None:
            return []
        return sorted({str(n) for n in index.get((namespace, workspace), ())})

    def connection_refused(self, cid: connections.ConnectionId) -> None:
        """RunWhen refused a request of an object using `cid` (401 after the client's renewal): the
        connection checks its credentials again, woken once however many objects ask."""
        if self.registry.request_recheck(cid):
            self.slots.wake(*cid)

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def latest(self, kind: str, namespace: str, name: str) -> Body | None:
        """The newest body of an object the operator follows (None when it is gone)."""
        return self.slots.body(kind, namespace, name)


#: Inside a Kopf change handler: the patch Kopf applies when the handler returns (its diff base
#: goes into the same status patch, so a handled change costs one write).
handler_patch: ContextVar[Any | None] = ContextVar("handler_patch", default=None)


@contextlib.contextmanager
def in_handler(patch: Any) -> Any:
    token = handler_patch.set(patch)
    try:
        yield
    finally:
        handler_patch.reset(token)


def dependents_index(kind: str, ref_field: str) -> str:
    return f"{kind.lower()}_by_{ref_field.lower()}"


def connection_index(kind: str) -> str:
    return f"{kind.lower()}_by_connection"


#: Times read from statuses and servers (the one parser); the one writer, truncation and status
#: patch are the status recorder's.
parse_time = models.parse_time
now = status_recorder.now
format_time = status_recorder.format_time
truncate = status_recorder.truncate
status_patch = status_recorder.status_patch


def condition_index(status: Body) -> dict[str, Body]:
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def set_condition(
    conditions: list[Body], type_: str, status: str, reason: str, message: str, generation: int | None
) -> list[Body]:
    """A copy of `conditions` with `type_` set; lastTransitionTime moves only when status changes.

    While a transient failure goes on (a reason of STICKY_REASONS, unchanged), its first message
    stands: a server that answers 502 and 503 by turns does not rewrite the status at every retry.
    """
    out: list[Body] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type_:
            out.append(cond)
            continue
        found = True
        if reason in STICKY_REASONS and cond.get("status") == status and cond.get("reason") == reason:
            message = str(cond.get("message") or message)
        transition = cond.get("lastTransitionTime") if cond.get("status") == status else now()
        out.append(_condition(type_, status, reason, message, generation, transition or now()))
    if not found:
        out.append(_condition(type_, status, reason, message, generation, now()))
    return out


#: Reasons of a Ready=False (or Synced=False) that need a human: the object reads Stalled (kstatus
#: Failed, Argo CD Degraded) until it heals. Any other not-Ready reason is work under way.
STALLED_REASONS = engine.TERMINAL_REASONS | {
    engine.REASON_UNAUTHORIZED,
    engine.REASON_FORBIDDEN,
    engine.REASON_IDENTITY_MISMATCH,
    "InvalidToken",
    "InvalidSecret",
    "InvalidConnection",
    "SecretNotReadable",
}


#: Reasons of transient failures whose message is not rewritten while they last (see set_condition).
STICKY_REASONS = frozenset({engine.REASON_API_ERROR})


def same_complaint(old: Body | None, reason: str, message: str) -> bool:
    """Whether the condition ``old`` already says this failure (its reason, and its message unless
    the reason is sticky): then no new Warning event is posted."""
    return (
        old is not None
        and old.get("reason") == reason
        and (reason in STICKY_REASONS or old.get("message") == truncate(message))
    )


def drop_condition(conditions: list[Body], type_: str) -> list[Body]:
    return [c for c in conditions if c.get("type") != type_]


def progress(
    conditions: list[Body],
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    *,
    stalled: bool | None = None,
) -> list[Body]:
    """``Reconciling`` and ``Stalled`` after the verdict (``status``/``reason`` of Ready, or of Synced
    when it failed): both absent when it is True; ``Stalled=True`` for a reason that needs a human
    (``stalled``, or one of STALLED_REASONS); otherwise ``Reconciling=True``. The one place that
    decides what Flux's kstatus and Argo CD read as in progress or failed."""
    if status == "True":
        return drop_condition(
            drop_condition(conditions, common.CONDITION_RECONCILING), common.CONDITION_STALLED
        )
    if stalled is None:
        stalled = reason in STALLED_REASONS
    keep, drop = (
        (common.CONDITION_STALLED, common.CONDITION_RECONCILING)
        if stalled
        else (common.CONDITION_RECONCILING, common.CONDITION_STALLED)
    )
    return set_condition(drop_condition(conditions, drop), keep, "True", reason, message, generation)


def _condition(type_: str, status: str, reason: str, message: str, generation: int | None, ltt: str) -> Body:
    cond: Body = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": truncate(message),
        "lastTransitionTime": ltt,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


async def write_status(
    ctx: Context,
    kind: str,
    plural: str,
    body: Body,
    desired: Body,
    *,
    final: bool = False,
    guard: bool = False,
) -> Body:
    """Patch the status subresource with what changed, if anything; return the newest body.

    The `final` write of a pass run by a Kopf change handler is not sent here: it joins the patch
    Kopf applies when the handler returns (one write with Kopf's diff base), and the returned body
    is the object as it will be. A `guard`ed write is sent only if the object is still at the
    resourceVersion of `body` (`kube.Conflict` otherwise).
    """
    patch = status_recorder.record(body.get("status") or {}, desired, kinds.by_kind(kind).status_model)
    kopf_patch = handler_patch.get()
    meta = body["metadata"]
    if final and kopf_patch is not None:
        if not patch:
            return body
        _merge_patches(kopf_patch.setdefault("status", {}), patch)
        merged = dict(body)
        merged["status"] = status_recorder.apply_patch(body.get("status") or {}, patch)
        slot = ctx.slots.get(kind, meta.get("namespace") or "", meta["name"])
        if slot is not None:
            slot.pending_rv = runtime.resource_version(body)
            slot.provisional = merged
        return merged
    if not patch:
        return body
    try:
        updated = await ctx.kube.patch_status(
            plural,
            meta.get("namespace") or "",
            meta["name"],
            patch,
            resource_version=meta.get("resourceVersion") if guard else None,
        )
    except kube.Gone:
        if guard:
            raise  # what it guards (a create) must not go on for an object that is gone
        return body  # the object is gone: there is nothing left to record the status on
    ctx.slots.remember(kind, updated)
    return updated


def _merge_patches(target: Body, patch: Body) -> None:
    """Fold merge patch `patch` into merge patch `target` (nulls kept: they remove keys)."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patches(target[key], value)
        else:
            target[key] = value


def event(ctx: Context, body: Body, type_: str, reason: str, message: str) -> None:
    """A Kubernetes Event about `body`, posted by Kopf in the background (outside Kopf's tasks, as
    in tests driving a reconciler directly, by the operator's own client)."""
    try:
        kopf.event(kopf.Body(cast(kopf.RawBody, body)), type=type_, reason=reason, message=truncate(message))
    except LookupError:  # not inside Kopf: no poster to hand it to
        asyncio.get_running_loop().create_task(ctx.kube.event(body, type_, reason, message))


def is_paused(body: Body) -> bool:
    value = (body.get("metadata", {}).get("annotations") or {}).get(common.ANNOTATION_PAUSED, "")
    return value in common.PAUSED_VALUES


def poll_interval(body: Body, default: float) -> tuple[float, str | None]:
    """The drift-check interval from the annotation (or the default), and a complaint if it is bad."""
    raw = (body.get("metadata", {}).get("annotations") or {}).get(common.ANNOTATION_POLL_INTERVAL)
    if not raw:
        return default, None
    try:
        seconds = common.parse_duration(str(raw))
    except ValueError as exc:
        return default, f"ignoring annotation {common.ANNOTATION_POLL_INTERVAL}={raw!r}: {exc}"
    return max(1.0, seconds), None


def connection_id(body: Body, ref: Any) -> connections.ConnectionId:
    """(kind, namespace, name) of the connection an object uses; `ref` is a model or a raw dict."""
    if isinstance(ref, dict):
        kind, name = ref.get("kind"), ref.get("name")
    else:
        kind, name = getattr(ref, "kind", None), getattr(ref, "name", None)
    kind = kind or KIND_CLUSTER_CONNECTION
    name = name or "default"
    namespace = "" if kind == KIND_CLUSTER_CONNECTION else body["metadata"].get("namespace") or ""
    return (kind, namespace, name)
