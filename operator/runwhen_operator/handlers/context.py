"""What every reconciler shares, and the status bookkeeping they have in common."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runwhen_operator.api import common
from runwhen_operator.handlers import kube, runtime
from runwhen_operator.reconcile import connections, engine, listing
from runwhen_operator.runwhen import models

log = logging.getLogger("runwhen_operator")

Body = dict[str, Any]

KIND_CLUSTER_CONNECTION = "ClusterRunWhenConnection"
KIND_CONNECTION = "RunWhenConnection"
KIND_WORKSPACE = "Workspace"
KIND_WORKFLOW = "Workflow"
KIND_PERSONA = "Persona"
KIND_WORKFLOW_RUN = "WorkflowRun"


@dataclass
class Options:
    default_poll_interval: float = 300.0
    connection_check_interval: float = 60.0
    settle_delay: float = 2.0  # after a lost create answer: look again this soon
    startup_grace: float = 15.0  # after a start, how long a missing connection object may be unseen
    max_message_length: int = 1024


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
    controller: runtime.Controller
    kube: kube.Kube
    registry: connections.Registry
    listings: listing.ListingCache
    options: Options = field(default_factory=Options)
    metrics: Metrics = field(default_factory=Metrics)
    started: float = field(default_factory=time.monotonic)

    def uptime(self) -> float:
        return time.monotonic() - self.started


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Times read from statuses and servers (the one parser).
parse_time = models.parse_time


def format_time(value: Any) -> str | None:
    """A timestamp (datetime or RFC 3339 text) as the status writes it, or None."""
    parsed = parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if parsed else None


def truncate(message: str, limit: int = 1024) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def condition_index(status: Body) -> dict[str, Body]:
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def set_condition(
    conditions: list[Body], type_: str, status: str, reason: str, message: str, generation: int | None
) -> list[Body]:
    """A copy of `conditions` with `type_` set; lastTransitionTime moves only when status changes."""
    out: list[Body] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type_:
            out.append(cond)
            continue
        found = True
        transition = cond.get("lastTransitionTime") if cond.get("status") == status else now()
        out.append(_condition(type_, status, reason, message, generation, transition or now()))
    if not found:
        out.append(_condition(type_, status, reason, message, generation, now()))
    return out


#: Reasons of a Ready=False (or Synced=False) that need a human: the object reads Stalled (kstatus
#: Failed, Argo CD Degraded) until it heals. Any other not-Ready reason is work under way.
STALLED_REASONS = engine.TERMINAL_REASONS | {
    engine.REASON_UNAUTHORIZED,
    "InvalidSecret",
    "InvalidConnection",
    "SecretNotReadable",
}


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


def _same_condition(a: Body | None, b: Body | None) -> bool:
    if a is None or b is None:
        return a is b
    keys = ("type", "status", "reason", "message", "observedGeneration")
    return all(a.get(k) == b.get(k) for k in keys)


def status_patch(current: Body, desired: Body) -> Body:
    """The merge patch that turns `current` into `desired` on the keys `desired` names.

    A key whose desired value is None is removed. Conditions compare without lastTransitionTime, so
    re-stating an unchanged condition is no change.
    """
    patch: Body = {}
    for key, value in desired.items():
        old = current.get(key)
        if key == "conditions":
            old_by_type = {c.get("type"): c for c in old or []}
            new_by_type = {c.get("type"): c for c in value or []}
            if old_by_type.keys() != new_by_type.keys() or not all(
                _same_condition(old_by_type[t], new_by_type[t]) for t in new_by_type
            ):
                patch[key] = value
            continue
        if value is None:
            if key in current:
                patch[key] = None
            continue
        if old != value:
            patch[key] = value
    return patch


async def write_status(ctx: Context, kind: str, plural: str, body: Body, desired: Body) -> Body:
    """Patch the status subresource with what changed, if anything; return the newest body."""
    patch = status_patch(body.get("status") or {}, desired)
    if not patch:
        return body
    meta = body["metadata"]
    updated = await ctx.kube.patch_status(plural, meta.get("namespace") or "", meta["name"], patch)
    ctx.controller.store.put(kind, updated)
    return updated


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
