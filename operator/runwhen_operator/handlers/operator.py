"""Kopf wiring: every kind's handlers and indices; the reconcilers do the work.

Per managed kind (Workspace, Workflow, Persona, RunnerLocation) and per connection kind:

- ``on.create`` / ``on.update``: a change the user made (spec, labels, annotations: Kopf's diff
  base, kept in ``status.lastHandledConfiguration``) runs one pass at once; the status the pass
  computes joins Kopf's own patch, so a handled change is one status write;
- ``on.delete``: the deletion pass (delete or orphan the remote object); Kopf removes its finalizer
  when it succeeds and retries with ``TemporaryError`` while it cannot;
- ``on.event``: the object's newest body goes into its slot (``runtime.Slot``); the first one
  schedules what a restart needs (a handled object is checked at once);
- one scheduler for all objects (``runtime.Scheduler``) runs each object's passes when they are
  due: its own interval (the poll-interval annotation; the monitoring interval for a Workspace's
  health), the growing delay after a transient error, or at once when woken by its parent or its
  connection;
- ``index``es: the dependents of a Workspace, a Workflow and a connection.

A WorkflowRun has no change handlers: its spec is immutable and its passes follow a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.config import kube_config

from runwhen_operator.api import common, kinds
from runwhen_operator.handlers import (
    connections,
    context,
    kube,
    leader,
    managed,
    monitor,
    runnerlocation,
    runtime,
    workflowrun,
)
from runwhen_operator.reconcile import connections as registry_mod
from runwhen_operator.reconcile import listing
from runwhen_operator.reconcile import status as status_recorder

log = logging.getLogger("runwhen_operator")

MANAGED_KINDS = (
    context.KIND_WORKSPACE,
    context.KIND_WORKFLOW,
    context.KIND_PERSONA,
    context.KIND_RUNNER_LOCATION,
)
CONNECTION_KINDS = (context.KIND_CLUSTER_CONNECTION, context.KIND_CONNECTION)
#: (dependent kind, its reference field) -> found by the referenced object's (namespace, name)
DEPENDENTS = kinds.DEPENDENTS
USES_CONNECTION = kinds.USES_CONNECTION
#: The kinds whose objects name a Workspace, and the field that names it.
WORKSPACE_REFS = dict(kinds.dependents_of(context.KIND_WORKSPACE))
INDEX_IDS = frozenset(
    [context.dependents_index(k, f) for k, f in DEPENDENTS]
    + [context.connection_index(k) for k in USES_CONNECTION]
    + [context.LOCATIONS_INDEX]
)


def plural(kind: str) -> str:
    return kinds.by_kind(kind).plural


@dataclass
class Config:
    namespaces: list[str] = field(default_factory=list)
    clusterwide: bool = True
    kubeconfig: str | None = None
    workers: int = 16
    options: context.Options = field(default_factory=context.Options)
    peering: str | None = None  # the Lease name: several replicas, one active
    leader_namespace: str = field(
        default_factory=lambda: os.environ.get("RUNWHEN_OPERATOR_NAMESPACE", "default")
    )
    liveness_endpoint: str | None = None
    client_options: dict[str, Any] = field(default_factory=dict)
    metrics: context.Metrics | None = None
    on_context: Callable[[context.Context], None] | None = None
    kube_timeout: float = kube.DEFAULT_TIMEOUT
    consistency_timeout: float = 10.0


Reconciler = Callable[[runtime.Key], Any]


class Runner:
    """Runs the passes of Kopf's handlers and of the scheduler through the objects' slots."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ctx: context.Context | None = None
        self.reconcilers: dict[tuple[str, str], Any] = {}
        self.scheduler: runtime.Scheduler | None = None
        # Workspaces whose first verdict new children wait for (see `_await_parent`).
        self._verdicts: dict[tuple[str, str, str], asyncio.Event] = {}

    def jobs(self, kind: str) -> list[str]:
        """The jobs of a kind (`reconcile`; `monitor` too for a Workspace): its reconcilers'."""
        return [job for k, job in self.reconcilers if k == kind]

    def _ctx(self, kwargs: dict[str, Any]) -> context.Context:
        ctx = self.ctx
        if ctx is None:
            raise kopf.TemporaryError("the operator is starting", delay=1)
        for name in INDEX_IDS.intersection(kwargs):
            ctx.indices[name] = kwargs[name]
        return ctx

    async def run_pass(self, ctx: context.Context, slot: runtime.Slot, key: runtime.Key) -> runtime.Result:
        reconciler = self.reconcilers[(key.kind, key.job)]
        started = time.monotonic()
        async with slot.lock, ctx.slots.passes:
            try:
                async with asyncio.timeout(ctx.options.pass_deadline):
                    result: runtime.Result = await reconciler(key)
            except (asyncio.CancelledError, kopf.TemporaryError, kopf.PermanentError):
                raise
            except TimeoutError:
                # Each request has its own deadline; this bounds a pass of many (a server that
                # answers every request just in time). What was sent is safe: a lost create answer
                # is what the pending mark is for. Tried again with growing delays.
                message = (
                    f"the pass did not finish within {ctx.options.pass_deadline:g}s (--pass-deadline); "
                    "trying again later"
                )
                log.warning("reconciling %s: %s", key, message)
                latest = ctx.latest(key.kind, key.namespace, key.name)
                if latest is not None:
                    context.event(ctx, latest, "Warning", "PassDeadlineExceeded", message)
                result = runtime.Result(error=True)
            except kube.Conflict:
                result = runtime.Result(after=0.5)  # changed meanwhile: decide again on the new version
            except Exception:
                log.exception("reconciling %s failed", key)
                result = runtime.Result(error=True)
        ctx.slots.reconciles += 1
        job = key.kind if key.job == "reconcile" else f"{key.kind}/{key.job}"
        ctx.metrics.reconciled(job, "error" if result.error else "ok", time.monotonic() - started)
        return result

    # -- change handlers -----------------------------------------------------------------------
    async def changed(self, kind: str, body: kopf.Body, patch: kopf.Patch, kwargs: dict[str, Any]) -> None:
        ctx = self._ctx(kwargs)
        meta = body["metadata"]
        key = runtime.Key(kind, meta.get("namespace") or "", meta["name"])
        slot = ctx.slots.open(*key.object)
        slot.handling += 1  # the scheduler leaves this object to its change handler meanwhile
        try:
            await self._await_parent(ctx, kind, body)
            ctx.slots.remember(kind, _plain(body))
            started = time.monotonic()
            with context.in_handler(patch):
                result = await self.run_pass(ctx, slot, key)
        finally:
            slot.handling -= 1
        if meta.get("deletionTimestamp"):
            if result.finalized:
                return  # done: Kopf removes its finalizer
            # Not yet (RunWhen unreachable, paused, ...): Kopf keeps its finalizer and asks again.
            delay = ctx.slots.next_delay(slot, key.job, result)
            if delay is None:
                delay = min(60.0, ctx.options.default_poll_interval)
            raise kopf.TemporaryError("the remote object is not deleted or orphaned yet", delay=delay)
        slot.schedule(key.job, ctx.slots.next_delay(slot, key.job, result), since=started)

    async def _await_parent(self, ctx: context.Context, kind: str, body: kopf.Body) -> None:
        """A new object in a Workspace (Workflow, Persona, RunnerLocation: `WORKSPACE_REFS`) whose
        Workspace has no verdict yet (applied together, its first pass still running) waits for it,
        at most ``--parent-wait``, before its first pass: its status is then written once (Ready),
        not twice (WaitingForWorkspace, then Ready). Before this wait, 10 % of the children of the
        bench's first sync of 1,000 had that second pass and 4 % a second write. Holds neither the
        object's slot nor a place among the passes."""
        ref_field = WORKSPACE_REFS.get(kind)
        if ref_field is None or ctx.options.parent_wait <= 0:
            return
        meta = body["metadata"]
        if meta.get("deletionTimestamp") or (body.get("status") or {}).get("conditions"):
            return  # not a first pass
        ref = ((body.get("spec") or {}).get(ref_field) or {}).get("name")
        if not ref:
            return
        key = (context.KIND_WORKSPACE, meta.get("namespace") or "", str(ref))
        parent = ctx.slots.body(*key)
        if parent is None or (parent.get("status") or {}).get("conditions"):
            return  # no such Workspace (the pass says so), or it has its verdict
        event = self._verdicts.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), ctx.options.parent_wait)

    def _verdict_seen(self, kind: str, namespace: str, name: str, body: dict[str, Any] | None) -> None:
        """Children waiting for this Workspace's first verdict go on once it has one, or is gone."""
        if kind != context.KIND_WORKSPACE or not self._verdicts:
            return
        key = (kind, namespace, name)
        if key in self._verdicts and (body is None or (body.get("status") or {}).get("conditions")):
            self._verdicts.pop(key).set()

    # -- every event: the newest body ------------------------------------------------------------
    async def observe(
        self, kind: str, event_type: str | None, body: kopf.Body, kwargs: dict[str, Any]
    ) -> None:
        """Kopf's ``on.event``: the slot keeps the newest body; the first one of an object schedules
        its jobs; its deletion forgets what only lived for it; DELETED drops the slot."""
        ctx = self._ctx(kwargs)
        meta = body["metadata"]
        namespace, name = meta.get("namespace") or "", meta["name"]
        if event_type == "DELETED":
            slot = ctx.slots.get(kind, namespace, name)
            if slot is not None:
                if common.FINALIZER in (meta.get("finalizers") or []) and not meta.get("deletionTimestamp"):
                    await self._deleted_past_the_finalizer(ctx, kind, slot)
                slot.gone = True
                slot.live = slot.written = slot.provisional = None
                self._verdict_seen(kind, namespace, name, None)
                await self._forget(kind, slot)
                ctx.slots.close(slot)
            return
        slot = ctx.slots.open(kind, namespace, name)
        live = _plain(body)
        slot.live = live
        slot.prune()
        self._verdict_seen(kind, namespace, name, live)
        for job in self.jobs(kind):
            if job not in slot.due:
                slot.schedule(job, 0.0 if self._check_at_once(kind, job, live) else None)
        if meta.get("deletionTimestamp"):
            await self._forget(kind, slot)

    async def _deleted_past_the_finalizer(self, ctx: context.Context, kind: str, slot: runtime.Slot) -> None:
        """Kubernetes deleted the object at once although our finalizer was on it: a deletion that
        raced with the finalizer being added (kube-apiserver, kubernetes/kubernetes#77988; seen in a
        full suite run: a Workflow created and deleted at once vanished while its create handler
        ran, and its remote workflow stayed). The deletion pass runs now on the newest body known
        (with the identity the create just recorded), as its deletionPolicy says."""
        newest = slot.body()
        if newest is None:
            return
        meta = dict(newest["metadata"])
        meta["deletionTimestamp"] = status_recorder.now()
        slot.live = {**newest, "metadata": meta}
        slot.written = slot.provisional = None
        slot.pending_rv = None
        key = runtime.Key(kind, *slot.key[1:])
        log.warning(
            "%s was deleted without the operator's deletion pass (Kubernetes removed it with its "
            "finalizer on); running that pass now",
            key,
        )
        result = await self.run_pass(ctx, slot, key)
        if not result.finalized:
            log.warning("%s: the deletion pass after its removal did not finish: %s", key, result)

    async def _forget(self, kind: str, slot: runtime.Slot) -> None:
        """The object is being deleted: what only lived for it goes (a connection's client and its
        dependents learn it at once; a workspace's health series)."""
        if slot.forgotten:
            return
        slot.forgotten = True
        key = runtime.Key(*slot.key)
        for job in self.jobs(kind):
            forget = getattr(self.reconcilers.get((kind, job)), "forget", None)
            if forget is not None:
                await forget(key.with_job(job))

    @staticmethod
    def _check_at_once(kind: str, job: str, body: dict[str, Any]) -> bool:
        """A handled object is checked at once (after a restart: reads, no writes); a new one waits
        for its change handler, which schedules what comes next."""
        if kind == context.KIND_WORKFLOW_RUN:
            return True
        if job == "monitor":  # a Ready Workspace (after a restart) at once; others once Ready
            return managed.is_ready(body)
        return bool((body.get("status") or {}).get(common.STATUS_LAST_HANDLED))

    # -- the scheduler's passes ----------------------------------------------------------------
    async def scheduled(self, slot: runtime.Slot, job: str) -> None:
        """A pass the scheduler started: its object's own interval, a retry, or a wake."""
        ctx = self.ctx
        if ctx is None:
            return
        live = slot.live
        if slot.gone or live is None:
            return
        if live["metadata"].get("deletionTimestamp") and live["metadata"].get("finalizers"):
            return  # Kopf's delete handler owns the passes of an object being deleted
        if slot.handling and job == "reconcile":
            # Its change handler is on it (its pass, or waiting for its Workspace's verdict) and
            # schedules its next pass; one now would write the status beside Kopf's patch.
            return
        key = runtime.Key(*slot.key, job)
        await self._settle(slot)
        started = time.monotonic()
        result = await self.run_pass(ctx, slot, key)
        slot.schedule(job, ctx.slots.next_delay(slot, job, result), since=started)

    async def _settle(self, slot: runtime.Slot) -> None:
        """Kopf's write-then-wait for the status a change handler left in Kopf's patch: a scheduled
        pass waits (bounded) until the live body shows it, so it never decides on the version
        before it."""
        if slot.pending_rv is None:
            return
        deadline = time.monotonic() + self.config.consistency_timeout
        while time.monotonic() < deadline:
            body = slot.body(provisional=False)
            if runtime.resource_version(body) > slot.pending_rv:
                break
            await asyncio.sleep(0.05)
        slot.pending_rv = None
        slot.provisional = None


def _plain(body: kopf.Body) -> dict[str, Any]:
    raw = dict(body)
    meta = dict(raw.get("metadata") or {})
    meta.pop("managedFields", None)
    raw["metadata"] = meta
    return raw


def settings_for(config: Config) -> kopf.OperatorSettings:
    """Kopf's settings of the operator (also what bench/kopf_floor.py measures Kopf alone with)."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = common.FINALIZER
    # Progress (only while a handler retries, e.g. a deletion RunWhen refuses for now) lives under a
    # prefix of its own: a prefix not starting with "kopf." makes Kopf brand it with a
    # `<prefix>/kopf-managed` annotation (one more write per object) and then ignore every
    # annotation under it, which would hide the operator's own paused/poll-interval annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=f"kopf.{common.GROUP}")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field=f"status.{common.STATUS_LAST_HANDLED}"
    )
    settings.persistence.consistency_timeout = config.consistency_timeout
    settings.posting.enabled = True  # kopf.event() from the reconcilers, on transitions only ...
    settings.posting.loggers = False  # ... never the log lines
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.reconnect_backoff = 1.0
    # No limit on Kopf's workers: with indices, Kopf's worker of every object of the first listing
    # waits (holding its place) until all of them are indexed, so a limit below the number of
    # objects deadlocks every start after the first (measured: 110 objects and a limit of 64, no
    # handler ran in 50 s; tests/chaos/test_restart.py). A worker leaves soon after its last event.
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = 0.5
    settings.peering.standalone = True  # one active replica: the Lease (handlers/leader.py)
    settings.networking.request_timeout = 60

    return settings


def build(config: Config) -> tuple[kopf.OperatorRegistry, kopf.OperatorSettings, dict[str, Any]]:
    registry = kopf.OperatorRegistry()
    settings = settings_for(config)

    runner = Runner(config)
    state: dict[str, Any] = {"runner": runner}

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # Kopf's own login with the kubernetes client library (in-cluster first, then a kubeconfig:
        # the one given to the operator, the same the operator's own client uses).
        if config.kubeconfig:
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = config.kubeconfig
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        configuration = kube.load_configuration(config.kubeconfig)
        ctx = context.Context(
            slots=runtime.Slots(workers=config.workers),
            kube=kube.Kube(configuration, timeout=config.kube_timeout),
            registry=registry_mod.Registry(**config.client_options),
            listings=listing.ListingCache(create_grace=config.options.create_grace),
            options=config.options,
            metrics=config.metrics or context.Metrics(),
        )
        recs = runner.reconcilers
        for kind in CONNECTION_KINDS:
            recs[(kind, "reconcile")] = connections.ConnectionReconciler(ctx, kind)
        recs[(context.KIND_WORKSPACE, "reconcile")] = managed.WorkspaceReconciler(ctx)
        recs[(context.KIND_WORKSPACE, "monitor")] = monitor.WorkspaceMonitor(ctx)
        recs[(context.KIND_WORKFLOW, "reconcile")] = managed.WorkflowReconciler(ctx)
        recs[(context.KIND_PERSONA, "reconcile")] = managed.PersonaReconciler(ctx)
        recs[(context.KIND_WORKFLOW_RUN, "reconcile")] = workflowrun.WorkflowRunReconciler(ctx)
        recs[(context.KIND_RUNNER_LOCATION, "reconcile")] = runnerlocation.RunnerLocationReconciler(ctx)
        runner.ctx = ctx
        runner.scheduler = runtime.Scheduler(ctx.slots, runner.scheduled)
        state["scheduler"] = asyncio.create_task(runner.scheduler.run(), name="scheduler")
        state["ctx"] = ctx
        if config.on_context is not None:
            config.on_context(ctx)
        log.info("runwhen-operator started (at most %d passes at once)", config.workers)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        scheduling: asyncio.Task[None] | None = state.pop("scheduler", None)
        if scheduling is not None:
            scheduling.cancel()
            await asyncio.gather(scheduling, return_exceptions=True)
        if runner.scheduler is not None:
            await runner.scheduler.stop()
            runner.scheduler = None
        ctx: context.Context | None = state.pop("ctx", None)
        runner.ctx = None
        if ctx is None:
            return
        await ctx.registry.close()
        ctx.kube.close()

    for kind in (*CONNECTION_KINDS, *MANAGED_KINDS):
        _register_changes(registry, runner, kind)
    for kind in (*CONNECTION_KINDS, *MANAGED_KINDS, context.KIND_WORKFLOW_RUN):
        _register_observer(registry, runner, kind)
    _register_indices(registry)
    return registry, settings, state


def _register_changes(registry: kopf.OperatorRegistry, runner: Runner, kind: str) -> None:
    res = (common.GROUP, common.VERSION, plural(kind))

    async def changed(body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        await runner.changed(kind, body, patch, kwargs)

    kopf.on.create(*res, registry=registry, id="create")(changed)
    kopf.on.update(*res, registry=registry, id="update")(changed)
    kopf.on.delete(*res, registry=registry, id="delete")(changed)


def _register_observer(registry: kopf.OperatorRegistry, runner: Runner, kind: str) -> None:
    res = (common.GROUP, common.VERSION, plural(kind))

    async def observe(body: kopf.Body, **kwargs: Any) -> None:
        await runner.observe(kind, kwargs.get("type"), body, kwargs)

    kopf.on.event(*res, registry=registry, id="observe")(observe)


def _register_indices(registry: kopf.OperatorRegistry) -> None:
    for kind, ref_field in DEPENDENTS:
        _dependents_index(registry, kind, ref_field)
    for kind in USES_CONNECTION:
        _connection_index(registry, kind)
    _locations_index(registry)


def _dependents_index(registry: kopf.OperatorRegistry, kind: str, ref_field: str) -> None:
    def index(namespace: str | None, name: str | None, spec: kopf.Spec, **_: Any) -> Any:
        ref = (spec.get(ref_field) or {}).get("name")
        return {(namespace or "", str(ref)): name} if ref else None

    kopf.index(
        common.GROUP,
        common.VERSION,
        plural(kind),
        registry=registry,
        id=context.dependents_index(kind, ref_field),
    )(index)


def _connection_index(registry: kopf.OperatorRegistry, kind: str) -> None:
    def index(body: kopf.Body, namespace: str | None, name: str | None, spec: kopf.Spec, **_: Any) -> Any:
        cid = context.connection_id(dict(body), dict(spec.get("connectionRef") or {}))
        return {cid: (namespace or "", name)}

    kopf.index(
        common.GROUP, common.VERSION, plural(kind), registry=registry, id=context.connection_index(kind)
    )(index)


def _locations_index(registry: kopf.OperatorRegistry) -> None:
    """The locations each Workspace resource's workspace keeps enabled (see context.LOCATIONS_INDEX):
    ready before the first pass, so a Workspace never drops a location whose RunnerLocation it has not
    seen yet."""

    def index(namespace: str | None, name: str | None, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> Any:
        ref = (spec.get("workspaceRef") or {}).get("name")
        if not ref:
            return None
        if meta.get("deletionTimestamp") and (spec.get("deletionPolicy") or "Delete") == "Delete":
            return None  # being deleted with its location
        return {(namespace or "", str(ref)): str(spec.get("name") or name)}

    kopf.index(
        common.GROUP,
        common.VERSION,
        plural(context.KIND_RUNNER_LOCATION),
        registry=registry,
        id=context.LOCATIONS_INDEX,
    )(index)


class LeadershipLost(SystemExit):
    """The Lease went to another replica: this process exits at once (as controller-runtime's
    managers do) and its restart makes it a standby."""


async def run(config: Config, *, stop_flag: asyncio.Event | None = None) -> None:
    registry, settings, _ = build(config)
    if config.peering:
        await _run_leading(config, registry, settings, stop_flag)
        return
    await _operator(config, registry, settings, stop_flag)


async def _operator(
    config: Config,
    registry: kopf.OperatorRegistry,
    settings: kopf.OperatorSettings,
    stop_flag: asyncio.Event | None,
) -> None:
    await kopf.operator(
        registry=registry,
        settings=settings,
        standalone=True,
        namespaces=config.namespaces or (),
        clusterwide=config.clusterwide and not config.namespaces,
        liveness_endpoint=config.liveness_endpoint,
        stop_flag=stop_flag,
    )


async def _run_leading(
    config: Config,
    registry: kopf.OperatorRegistry,
    settings: kopf.OperatorSettings,
    stop_flag: asyncio.Event | None,
) -> None:
    """Kopf runs only while this replica holds the Lease; losing it ends the process."""
    lease_kube = kube.Kube(kube.load_configuration(config.kubeconfig), threads=2, timeout=config.kube_timeout)
    leading = asyncio.Event()

    def lost() -> None:
        log.critical("lost the leadership: exiting so that no pass of this replica runs any more")
        logging.shutdown()
        os._exit(1)

    elector = leader.LeaderElector(
        lease_kube,
        namespace=config.leader_namespace,
        name=str(config.peering),
        identity=f"{socket.gethostname()}-{os.getpid()}",
        on_started_leading=leading.set,
        on_stopped_leading=lost,
    )
    election = asyncio.create_task(elector.run(), name="leader-election")
    standby = await leader.serve_standby_liveness(config.liveness_endpoint)
    try:
        waiter = asyncio.ensure_future(leading.wait())
        stopper = asyncio.ensure_future(stop_flag.wait()) if stop_flag is not None else None
        await asyncio.wait([w for w in (waiter, stopper, election) if w], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if stopper is not None:
            stopper.cancel()
        if standby is not None:
            await standby.cleanup()
            standby = None
        if leading.is_set():
            await _operator(config, registry, settings, stop_flag)
    finally:
        if standby is not None:
            await standby.cleanup()
        election.cancel()
        await asyncio.gather(election, return_exceptions=True)
        lease_kube.close()
