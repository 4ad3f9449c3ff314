"""Kopf wiring: watches feed the controller runtime; nothing else here talks to Kopf.

Only raw event handlers are used. Kopf's change-detection handlers would store their state in
annotations on every object (writes that change nothing RunWhen cares about); the runtime keeps its
own state instead, and Kopf's persistence settings are pointed at the operator's own prefix anyway,
so no `kopf.zalando.org` key ever appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf

from runwhen_operator.api import common
from runwhen_operator.handlers import (
    connections,
    context,
    kube,
    leader,
    managed,
    monitor,
    runtime,
    workflowrun,
)
from runwhen_operator.reconcile import connections as registry_mod
from runwhen_operator.reconcile import listing

log = logging.getLogger("runwhen_operator")

WATCHED: dict[str, str] = {
    context.KIND_CLUSTER_CONNECTION: "clusterrunwhenconnections",
    context.KIND_CONNECTION: "runwhenconnections",
    context.KIND_WORKSPACE: "workspaces",
    context.KIND_WORKFLOW: "workflows",
    context.KIND_PERSONA: "personas",
    context.KIND_WORKFLOW_RUN: "workflowruns",
}


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


def _interesting(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether an event asks for a reconcile: anything but our own status writes does."""
    if old is None:
        return True
    om, nm = old.get("metadata", {}), new.get("metadata", {})
    if om.get("uid") != nm.get("uid"):
        return True
    keys = ("generation", "annotations", "labels", "deletionTimestamp", "finalizers")
    return any(om.get(k) != nm.get(k) for k in keys)


def build(config: Config) -> tuple[kopf.OperatorRegistry, kopf.OperatorSettings, dict[str, Any]]:
    registry = kopf.OperatorRegistry()
    settings = kopf.OperatorSettings()
    # Kopf's own finalizer must differ from the operator's: Kopf removes its finalizer from objects
    # that have no deletion handlers, and only watch handlers are used here, so it never adds it.
    settings.persistence.finalizer = f"{common.GROUP}/kopf-finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=common.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=common.GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False  # events are written by the reconcilers, on transitions only
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.reconnect_backoff = 1.0
    # Kopf runs one short-lived task per object only to hand its events to the runtime: no limit on
    # them (a limit stalls the whole watch of a kind once that many objects had events in the last
    # idle_timeout), and they exit soon after their last event.
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = 5.0
    # High availability uses a Lease (handlers/leader.py), not Kopf's peering: Kopf's peering pauses
    # only Kopf's own handlers, while reconciles here run from the runtime's queue and timers.
    settings.peering.standalone = True
    settings.networking.request_timeout = 60

    state: dict[str, Any] = {}

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as the operator's own client, whether in-cluster or a kubeconfig.
        cfg = kube.load_configuration(config.kubeconfig)
        token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        if token and token.lower().startswith("bearer "):
            token = token[7:]
        return kopf.ConnectionInfo(
            server=cfg.host,
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            token=token or None,
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
            expiration=None,
        )

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        configuration = kube.load_configuration(config.kubeconfig)
        ctx = context.Context(
            controller=runtime.Controller(workers=config.workers),
            kube=kube.Kube(configuration),
            registry=registry_mod.Registry(**config.client_options),
            listings=listing.ListingCache(),
            options=config.options,
            metrics=config.metrics or context.Metrics(),
        )
        controller = ctx.controller
        for kind in (context.KIND_CLUSTER_CONNECTION, context.KIND_CONNECTION):
            controller.register(kind, connections.ConnectionReconciler(ctx, kind))
        controller.register(context.KIND_WORKSPACE, managed.WorkspaceReconciler(ctx))
        controller.register(context.KIND_WORKSPACE, monitor.WorkspaceMonitor(ctx), job="monitor")
        controller.register(context.KIND_WORKFLOW, managed.WorkflowReconciler(ctx))
        controller.register(context.KIND_PERSONA, managed.PersonaReconciler(ctx))
        controller.register(context.KIND_WORKFLOW_RUN, workflowrun.WorkflowRunReconciler(ctx))
        controller.on_result = lambda key, result, seconds: ctx.metrics.reconciled(
            key.kind if key.job == "reconcile" else f"{key.kind}/{key.job}",
            "error" if result.error else "ok",
            seconds,
        )
        controller.start()
        state["ctx"] = ctx
        if config.peering:
            controller.pause()
            jobs: dict[str, tuple[str, ...]] = dict.fromkeys(WATCHED, ("reconcile",))
            jobs[context.KIND_WORKSPACE] = ("reconcile", "monitor")

            def started() -> None:
                controller.resume()
                controller.enqueue_all(jobs)

            elector = leader.LeaderElector(
                ctx.kube,
                namespace=config.leader_namespace,
                name=config.peering,
                identity=f"{socket.gethostname()}-{os.getpid()}",
                on_started_leading=started,
                on_stopped_leading=controller.pause,
            )
            state["elector"] = asyncio.create_task(elector.run(), name="leader-election")
        if config.on_context is not None:
            config.on_context(ctx)
        log.info("runwhen-operator started with %d workers", config.workers)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        ctx: context.Context | None = state.pop("ctx", None)
        if ctx is not None:
            await ctx.controller.stop()
        # Only once no reconcile runs here any more is the Lease handed over to a standby.
        elector: asyncio.Task[None] | None = state.pop("elector", None)
        if elector is not None:
            elector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await elector
        if ctx is None:
            return
        await ctx.registry.close()
        ctx.kube.close()

    for kind, plural in WATCHED.items():
        _register_watch(registry, state, kind, plural)

    return registry, settings, state


def _register_watch(registry: kopf.OperatorRegistry, state: dict[str, Any], kind: str, plural: str) -> None:
    @kopf.on.event(common.GROUP, common.VERSION, plural, registry=registry, id=f"watch-{plural}")
    async def on_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        ctx: context.Context | None = state.get("ctx")
        if ctx is None:
            return
        raw = copy.deepcopy(dict(body))
        meta = raw.get("metadata", {})
        meta.pop("managedFields", None)  # half of a stored body, and nothing here reads it
        if event.get("type") == "DELETED":
            ctx.controller.observe(kind, raw, deleted=True, jobs=("reconcile", "monitor"))
            if kind == context.KIND_WORKSPACE:  # its health timer is gone: so are its series
                ctx.metrics.forget_workspace(meta.get("namespace") or "", meta["name"])
            if kind in (context.KIND_CLUSTER_CONNECTION, context.KIND_CONNECTION):
                ctx.controller.enqueue(runtime.Key(kind, meta.get("namespace") or "", meta["name"]))
            return
        old = ctx.controller.store.get(kind, meta.get("namespace") or "", meta["name"])
        if _interesting(old, raw):
            ctx.controller.observe(kind, raw)
        else:
            ctx.controller.store.put(kind, raw)


async def run(config: Config, *, stop_flag: asyncio.Event | None = None) -> None:
    registry, settings, _ = build(config)
    await kopf.operator(
        registry=registry,
        settings=settings,
        standalone=True,
        namespaces=config.namespaces or (),
        clusterwide=config.clusterwide and not config.namespaces,
        liveness_endpoint=config.liveness_endpoint,
        stop_flag=stop_flag,
    )
