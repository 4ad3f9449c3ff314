"""Workspace, Workflow and Persona: body -> model -> engine -> status.

One reconciler class serves the three kinds; each kind says how to build its desired object and
which external client to use. The flow of a pass:

1. the newest body (Kopf's, or what the operator's last write returned); nothing to do when it is
   gone or paused (Kopf added the finalizer before the first pass);
2. the connection's client and, for workflows and personas, the parent workspace, or a condition
   saying what is awaited;
3. the engine's verdict, the status patched only where it changed (inside a Kopf change handler
   this joins Kopf's own patch), events for what happened; a failure of a later step (the webhook
   Secret) becomes a condition beside the remote identity, which is never lost;
4. when to look again.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from runwhen_operator.api import common, kinds, persona, workflow, workspace
from runwhen_operator.handlers import context, kube, runtime
from runwhen_operator.reconcile import engine, externals
from runwhen_operator.runwhen import dialect, errors

log = logging.getLogger("runwhen_operator.managed")

Body = dict[str, Any]


class StepFailed(Exception):
    """A step after the sync failed (the webhook Secret): a condition with `reason`, not a crash."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


REASON_WEBHOOK_SECRET_CONFLICT = "WebhookSecretConflict"
REASON_KUBERNETES_ERROR = "KubernetesError"
REASON_WEBHOOK_TOKEN_FAILED = "WebhookTokenFailed"


class NotYet(Exception):
    """Nothing to say yet (a connection is being checked): look again shortly, write nothing."""


@dataclass
class Prepared:
    desired: Any
    external: Any
    extra_status: Body


class ManagedReconciler:
    kind: str = ""
    spec_model: type[BaseModel] = BaseModel

    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        self.plural = kinds.by_kind(self.kind).plural

    # -- per-kind hooks ----------------------------------------------------------------------
    def remote_name(self, body: Body, spec: Any) -> str:
        return str(getattr(spec, "name", None) or body["metadata"]["name"])

    def external_id(self, status: Body) -> Any:
        return status.get("id")

    async def prepare(self, body: Body, spec: Any, client: Any, max_age: float) -> Prepared:
        raise NotImplementedError

    def describe(self, body: Body, spec: Any) -> str:
        return f'{self.kind.lower()} "{self.remote_name(body, spec)}"'

    def identity_status(self, outcome: engine.Outcome, prepared: Prepared) -> Body:
        return {"id": outcome.external_id}

    async def after_sync(
        self, body: Body, spec: Any, outcome: engine.Outcome, client: Any, prepared: Prepared
    ) -> Body:
        """Kind-specific work once the remote object is in sync; returns extra status."""
        return {}

    #: kinds whose objects point at this kind by `spec.<field>.name` and wait for it to be Ready
    dependents: tuple[tuple[str, str], ...] = ()

    # -- the pass ----------------------------------------------------------------------------
    async def __call__(self, key: runtime.Key) -> runtime.Result:
        was_ready = is_ready(self.ctx.latest(self.kind, key.namespace, key.name))
        result = await self._pass(key)
        after = self.ctx.latest(self.kind, key.namespace, key.name)
        if after is None or is_ready(after) != was_ready:
            self._queue_dependents(key.namespace, key.name)
        return result

    def _queue_dependents(self, namespace: str, name: str) -> None:
        """Queue the objects waiting on this one, the moment its readiness changes."""
        for kind, ref_field in self.dependents:
            for dependent in self.ctx.dependents(kind, ref_field, namespace, name):
                self.ctx.slots.wake(kind, namespace, dependent)

    async def _begin(self, key: runtime.Key) -> tuple[Body, Any, float, str | None] | None:
        """What every pass starts with: the newest body and its spec, or None when there is nothing
        to do (gone, deleted without our finalizer, an invalid spec reported, paused); and the poll
        interval with a complaint about its annotation, if any. `NotYet` before Kopf's finalizer."""
        body = self.ctx.latest(self.kind, key.namespace, key.name)
        if body is None:
            return None
        meta = body["metadata"]
        if common.FINALIZER not in (meta.get("finalizers") or []):
            if meta.get("deletionTimestamp"):
                return None  # deleted without our finalizer: nothing of ours to undo
            # Kopf spawns the daemon before it adds its finalizer, and runs the create handler only
            # after: a pass in between (the daemon woken by its parent or its connection) would
            # create a remote object that a deletion before the finalizer lands leaves behind.
            raise NotYet("Kopf has not added its finalizer yet")
        try:
            spec: Any = self.spec_model.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            message = f"invalid spec: {exc.errors()[0].get('msg', exc)}"
            await self._conditions_only(body, "False", engine.REASON_INVALID_SPEC, message)
            return None
        if context.is_paused(body):
            await self._paused(body)
            return None
        poll, poll_complaint = context.poll_interval(body, self.ctx.options.default_poll_interval)
        return body, spec, poll, poll_complaint

    async def _pass(self, key: runtime.Key) -> runtime.Result:
        ctx = self.ctx
        try:
            begun = await self._begin(key)
        except NotYet:
            return runtime.Result(after=1.0)
        if begun is None:
            return runtime.Result()
        body, spec, poll, poll_complaint = begun
        meta = body["metadata"]
        status: Body = body.get("status") or {}
        generation = meta.get("generation")
        deleting = bool(meta.get("deletionTimestamp"))
        requested = (meta.get("annotations") or {}).get(common.ANNOTATION_RECONCILE_REQUESTED_AT)
        fresh = bool(requested) and requested != status.get("lastHandledReconcileAt")
        max_age = 0.0 if fresh or status.get("createPending") else poll / 2

        prepared: Prepared | None = None
        external: Any
        try:
            client = self._client(body, spec)
            prepared = await self.prepare(body, spec, client, max_age=max_age)
            external = prepared.external
            desired = prepared.desired
        except NotYet:
            return runtime.Result(after=1.0)
        except externals.Blocked as blocked:
            client = None
            external = externals.BlockedExternal(self.describe(body, spec), blocked.reason, blocked.message)
            desired = None

        request = engine.Request(
            desired=desired,
            managed=spec.management_policy == "Manage",
            delete_remote=spec.deletion_policy == "Delete",
            adopt=spec.adoption_policy == "Adopt",
            deleting=deleting,
            external_id=self.external_id(status),
            create_pending=bool(status.get("createPending")),
            spec_changed=status.get("observedGeneration") != generation,
            owner_since=context.parse_time(meta.get("creationTimestamp")),
        )

        async def mark_pending() -> None:
            # Guarded by the resourceVersion the decision to create was made on: of two passes that
            # both saw no remote object (a former leader's pass still running), one writes the mark.
            nonlocal body
            body = await context.write_status(
                ctx, self.kind, self.plural, body, {"createPending": True}, guard=True
            )

        try:
            outcome = await engine.reconcile(request, external, mark_pending)
        except externals.Blocked as blocked:
            outcome = engine.Outcome(
                action=engine.Action.NONE,
                ready=engine.ConditionState("False", blocked.reason, blocked.message),
                synced=engine.ConditionState("False", blocked.reason, blocked.message),
                external_id=request.external_id,
                create_pending=request.create_pending,
                requeue=engine.Requeue.NEVER
                if blocked.reason == engine.REASON_WAITING_FOR_WORKSPACE
                else engine.Requeue.BACKOFF,
            )
        except kube.Conflict:
            return runtime.Result(after=0.5)

        if outcome.synced.reason == engine.REASON_UNAUTHORIZED:
            self.ctx.connection_refused(context.connection_id(body, spec.connection_ref))

        extra: Body = {}
        if prepared is not None and not deleting and outcome.external_id is not None:
            # The remote identity as soon as it is known, even with a failure to report beside it.
            extra.update(self.identity_status(outcome, prepared))
            if outcome.synced.status == "True":
                extra.update(prepared.extra_status)
                if request.managed:
                    try:
                        extra.update(await self.after_sync(body, spec, outcome, client, prepared))
                    except StepFailed as failed:
                        # The remote object is in sync and its identity is recorded below; what
                        # failed is said by Synced, and the step is tried again with growing delays.
                        outcome = dataclasses.replace(
                            outcome,
                            synced=engine.ConditionState("False", failed.reason, failed.message),
                            requeue=engine.Requeue.BACKOFF,
                            events=[*outcome.events, engine.Event("Warning", failed.reason, failed.message)],
                        )
        if poll_complaint:
            log.warning("%s: %s", key, poll_complaint)
        if fresh and outcome.synced.status == "True":
            extra["lastHandledReconcileAt"] = requested

        body = await self._record(body, outcome, extra, generation)
        if outcome.finalized:
            return runtime.Result(finalized=True)  # Kopf removes its finalizer
        for event in outcome.events:
            if event.reason == "DriftCorrected":
                ctx.metrics.drift_corrected(self.kind)
        return self._next(outcome, poll)

    # -- steps -------------------------------------------------------------------------------
    def _client(self, body: Body, spec: Any) -> Any:
        """The connection's client; `Blocked` with the reason; `NotYet` while its verdict is pending.

        After a restart the connections are checked again before anything uses them; until a
        connection has a verdict, its objects wait quietly instead of reporting it not ready, so a
        restart flips no condition and writes nothing.
        """
        cid = context.connection_id(body, spec.connection_ref)
        conn = self.ctx.registry.get(cid)
        where = f"{cid[0]} {cid[1] + '/' if cid[1] else ''}{cid[2]}"
        if conn is not None and conn.verified:
            if conn.ready and conn.api is not None:
                return conn.api
            if conn.retained and conn.api is not None and body["metadata"].get("deletionTimestamp"):
                # Its Secret is gone (a namespace being deleted with everything in it): the
                # credentials read before still finish this object's deletion.
                return conn.api
            raise externals.Blocked(
                engine.REASON_CONNECTION_NOT_READY, f"{where} is not ready: {conn.message}"
            )
        conn_body = self.ctx.latest(cid[0], cid[1], cid[2])
        if conn_body is None:
            if self.ctx.uptime() < self.ctx.options.startup_grace:
                raise NotYet(f"{where} not seen yet")
            raise externals.Blocked(engine.REASON_CONNECTION_NOT_READY, f"{where} does not exist")
        verdict = context.condition_index(conn_body.get("status") or {}).get(common.CONDITION_READY) or {}
        if conn is None and verdict.get("status") == "False":
            message = verdict.get("message") or verdict.get("reason") or "not ready"
            raise externals.Blocked(engine.REASON_CONNECTION_NOT_READY, f"{where} is not ready: {message}")
        raise NotYet(f"{where} is being checked")

    async def _record(self, body: Body, outcome: engine.Outcome, extra: Body, generation: int | None) -> Body:
        status: Body = body.get("status") or {}
        conditions = list(status.get("conditions") or [])
        if outcome.ready is not None:
            r = outcome.ready
            conditions = context.set_condition(
                conditions, common.CONDITION_READY, r.status, r.reason, r.message, generation
            )
        s = outcome.synced
        conditions = context.set_condition(
            conditions, common.CONDITION_SYNCED, s.status, s.reason, s.message, generation
        )
        conditions = progress_conditions(conditions, generation)
        desired: Body = {
            "observedGeneration": generation,
            "conditions": conditions,
            "createPending": True if outcome.create_pending else None,
            **extra,
        }
        old_conditions = context.condition_index(status)
        patch = context.status_patch(status, desired)
        if patch and (outcome.action is not engine.Action.NONE or "conditions" in patch):
            desired["lastSyncTime"] = context.now()
        updated = await context.write_status(self.ctx, self.kind, self.plural, body, desired, final=True)
        for event in outcome.events:
            old = old_conditions.get(common.CONDITION_SYNCED)
            if event.type == "Warning" and context.same_complaint(old, event.reason, event.message):
                continue  # the same complaint again: no new event
            context.event(self.ctx, updated, event.type, event.reason, event.message)
        return updated

    async def _paused(self, body: Body) -> None:
        message = f"reconciliation paused by annotation {common.ANNOTATION_PAUSED}"
        await self._conditions_only(body, "False", engine.REASON_PAUSED, message, ready=None)

    async def _conditions_only(
        self, body: Body, synced: str, reason: str, message: str, *, ready: str | None = "False"
    ) -> None:
        status: Body = body.get("status") or {}
        generation = body["metadata"].get("generation")
        conditions = list(status.get("conditions") or [])
        if ready is not None:
            conditions = context.set_condition(
                conditions, common.CONDITION_READY, ready, reason, message, generation
            )
        conditions = context.set_condition(
            conditions, common.CONDITION_SYNCED, synced, reason, message, generation
        )
        conditions = progress_conditions(conditions, generation)
        await context.write_status(
            self.ctx, self.kind, self.plural, body, {"conditions": conditions}, final=True
        )

    def _next(self, outcome: engine.Outcome, poll: float) -> runtime.Result:
        if outcome.requeue is engine.Requeue.POLL:
            return runtime.Result(after=runtime.jitter(poll))
        if outcome.requeue is engine.Requeue.SOON:
            return runtime.Result(after=self.ctx.options.settle_delay)
        if outcome.requeue is engine.Requeue.BACKOFF:
            return runtime.Result(after=outcome.retry_after, error=True)
        return runtime.Result()


# -- Workspace ---------------------------------------------------------------------------------


class WorkspaceReconciler(ManagedReconciler):
    kind = context.KIND_WORKSPACE
    spec_model = workspace.WorkspaceSpec
    dependents = kinds.dependents_of(context.KIND_WORKSPACE)

    def external_id(self, status: Body) -> Any:
        return status.get("remoteName")

    def identity_status(self, outcome: engine.Outcome, prepared: Prepared) -> Body:
        return {"remoteName": outcome.external_id}

    async def prepare(self, body: Body, spec: Any, client: Any, max_age: float) -> Prepared:
        wire = externals.spec_body(spec, externals.WORKSPACE_BODY_FIELDS)
        if "enabledLocations" in wire:
            # The spec owns the list; the locations of this Workspace's RunnerLocations stay in it.
            listed = list(wire["enabledLocations"])
            kept = self.ctx.runner_locations(body["metadata"]["namespace"], body["metadata"]["name"])
            wire["enabledLocations"] = [*listed, *(loc for loc in kept if loc not in listed)]
        desired = externals.WorkspaceDesired(
            name=self.remote_name(body, spec), body=client.workspace_body(wire)
        )
        cid = context.connection_id(body, spec.connection_ref)
        external = externals.WorkspaceExternal(client, self.ctx.listings, cid, max_age)
        return Prepared(desired=desired, external=external, extra_status={})

    async def __call__(self, key: runtime.Key) -> runtime.Result:
        before = self.ctx.latest(self.kind, key.namespace, key.name)
        handled_before = ((before or {}).get("status") or {}).get("lastHandledReconcileAt")
        result = await super().__call__(key)
        after = self.ctx.latest(self.kind, key.namespace, key.name)
        if (
            after is not None
            and is_ready(after)
            and not (after.get("metadata") or {}).get("deletionTimestamp")
        ):
            handled_now = (after.get("status") or {}).get("lastHandledReconcileAt")
            slot = self.ctx.slots.get(self.kind, key.namespace, key.name)
            turned_ready = not is_ready(before)
            if slot is not None and (
                turned_ready or handled_now != handled_before or slot.due.get("monitor") is None
            ):
                # A requested reconcile refreshes health and issues too, at once.
                slot.wake("monitor")
        return result


def progress_conditions(conditions: list[Body], generation: int | None) -> list[Body]:
    """Reconciling/Stalled from Ready and Synced: a failed Synced speaks for the object (a transient
    error behind a Ready that still holds is work under way); nothing is under way while paused."""
    index = {c.get("type"): c for c in conditions}
    synced = index.get(common.CONDITION_SYNCED) or {}
    ready = index.get(common.CONDITION_READY) or {}
    if synced.get("reason") == engine.REASON_PAUSED:
        return context.drop_condition(conditions, common.CONDITION_RECONCILING)
    verdict = synced if synced.get("status") == "False" else ready
    if not verdict:
        return conditions
    return context.progress(
        conditions,
        str(verdict.get("status")),
        str(verdict.get("reason")),
        str(verdict.get("message") or ""),
        generation,
    )


def is_ready(body: Body | None) -> bool:
    if body is None:
        return False
    cond = context.condition_index(body.get("status") or {}).get(common.CONDITION_READY)
    return bool(cond and cond.get("status") == "True")


# -- Workflow and Persona ----------------------------------------------------------------------


class ChildReconciler(ManagedReconciler):
    """Objects that live in a workspace: the parent is a Workspace CR or a remote workspace name."""

    body_fields: frozenset[str] = frozenset()
    child_kind: dialect.ChildKind = dialect.WORKFLOW

    def workspace_name(self, body: Body, spec: Any) -> str:
        if spec.workspace_name:
            return str(spec.workspace_name)
        ref = spec.workspace_ref.name
        namespace = body["metadata"]["namespace"]
        parent = self.ctx.latest(context.KIND_WORKSPACE, namespace, ref)
        deleting = bool(body["metadata"].get("deletionTimestamp"))
        recorded = (body.get("status") or {}).get("workspace")
        if parent is None:
            if deleting and recorded:
                return str(recorded)
            raise externals.Blocked(
                engine.REASON_WAITING_FOR_WORKSPACE,
                f'waiting for Workspace "{ref}" in namespace "{namespace}"',
            )
        remote = (parent.get("status") or {}).get("remoteName")
        if not is_ready(parent) or not remote:
            if deleting and recorded:
                return str(recorded)
            raise externals.Blocked(
                engine.REASON_WAITING_FOR_WORKSPACE, f'waiting for Workspace "{ref}" to be Ready'
            )
        return str(remote)

    def describe(self, body: Body, spec: Any) -> str:
        parent = spec.workspace_name or (spec.workspace_ref.name if spec.workspace_ref else "")
        return f'{self.kind.lower()} "{self.remote_name(body, spec)}" in workspace "{parent}"'

    def desired_body(self, body: Body, spec: Any) -> Body:
        wire = externals.spec_body(spec, self.body_fields)
        return {"name": self.remote_name(body, spec), **wire}

    async def prepare(self, body: Body, spec: Any, client: Any, max_age: float) -> Prepared:
        ws = self.workspace_name(body, spec)
        desired = externals.ChildDesired(
            workspace=ws, name=self.remote_name(body, spec), body=self.desired_body(body, spec)
        )
        cid = context.connection_id(body, spec.connection_ref)
        external = externals.ChildExternal(client, self.child_kind, self.ctx.listings, cid, max_age)
        return Prepared(desired=desired, external=external, extra_status={"workspace": ws})


class WorkflowReconciler(ChildReconciler):
    kind = context.KIND_WORKFLOW
    spec_model = workflow.WorkflowSpec
    dependents = kinds.dependents_of(context.KIND_WORKFLOW)
    body_fields = externals.WORKFLOW_BODY_FIELDS

    child_kind = dialect.WORKFLOW

    async def after_sync(
        self, body: Body, spec: Any, outcome: engine.Outcome, client: Any, prepared: Prepared
    ) -> Body:
        """The webhook token in its Secret. The Secret is the source of truth: the token is read
        from RunWhen only when the Secret is missing or lacks it (the platform hands a token out
        once, so a lost Secret means a rotation) or when a rotation is asked for by annotation. The
        Secret is read (a Kubernetes GET, no write) at every pass, so a deleted or emptied one is
        written again at the next pass, not after a restart."""
        ref = spec.webhook_token_secret_ref
        if ref is None:
            return {"webhookTokenSecret": None}
        meta = body["metadata"]
        status: Body = body.get("status") or {}
        rotation = (meta.get("annotations") or {}).get(common.ANNOTATION_ROTATE_WEBHOOK_TOKEN)
        rotate = bool(rotation) and rotation != status.get("webhookTokenRotation")
        done: Body = {"webhookTokenSecret": ref.name}
        if rotation and not rotate:
            done["webhookTokenRotation"] = rotation
        where = f"Secret {meta['namespace']}/{ref.name}"
        if not rotate:
            try:
                existing = await self.ctx.kube.read_secret(meta["namespace"], ref.name)
            except kube.Gone:
                existing = {}
            except kube.KubeError as exc:
                raise StepFailed(REASON_KUBERNETES_ERROR, f"cannot read {where}: {exc}") from None
            if existing.get(workflow.WEBHOOK_SECRET_KEY_TOKEN):
                return done
        key = prepared.desired.name if client.child_key == "name" else int(outcome.external_id)
        try:
            token = await client.webhook_token(prepared.desired.workspace, key, rotate=rotate)
        except errors.RunWhenError as exc:
            raise StepFailed(
                REASON_WEBHOOK_TOKEN_FAILED, f"cannot read the webhook token from RunWhen: {exc}"
            ) from None
        data = {workflow.WEBHOOK_SECRET_KEY_TOKEN: token.token.get_secret_value()}
        if token.webhook_url:
            data[workflow.WEBHOOK_SECRET_KEY_URL] = token.webhook_url
        labels = {
            "app.kubernetes.io/managed-by": "runwhen-operator",
            "platform.runwhen.com/workflow": meta["name"],
        }
        try:
            written = await self.ctx.kube.apply_owned_secret(meta["namespace"], ref.name, data, body, labels)
        except kube.Conflict as exc:
            raise StepFailed(REASON_WEBHOOK_SECRET_CONFLICT, f"cannot write {where}: {exc}") from None
        except kube.KubeError as exc:
            raise StepFailed(REASON_KUBERNETES_ERROR, f"cannot write {where}: {exc}") from None
        if written:
            what = "rotated the webhook token into" if rotate else "wrote the webhook token to"
            context.event(self.ctx, body, "Normal", "WebhookTokenWritten", f"{what} Secret {ref.name}")
        if rotation:
            done["webhookTokenRotation"] = rotation
        return done


class PersonaReconciler(ChildReconciler):
    kind = context.KIND_PERSONA
    spec_model = persona.PersonaSpec
    body_fields = externals.PERSONA_BODY_FIELDS

    child_kind = dialect.PERSONA
