"""WorkflowRun: start a workflow's run once, then follow its run session like a Job.

At most one run per WorkflowRun object, even across crashes. The intent (`status.triggerRequestedAt`)
is written to the API server before the run is started, and the run carries the object's uid as a
marker the dialect can find again (the documented API: in the run's context; the platform: as the
name of the run session it creates). A pass that finds the intent recorded but no run session id
never starts the run again: it looks for the run session marked with the uid. If none appears within
`FIND_GRACE` seconds of the intent, the run is marked Failed with reason `TriggerOutcomeUnknown`: at
most once means never twice, so an unknown outcome is reported, not retried. The intent is withdrawn,
and the run started again, only after an answer proving that RunWhen did not start it (rate
limited, refused credentials, a connection that was never made).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from runwhen_operator.api import common, kinds, workflowrun
from runwhen_operator.handlers import context, kube, runtime
from runwhen_operator.reconcile import connections
from runwhen_operator.runwhen import dialect, errors

log = logging.getLogger("runwhen_operator.workflowrun")

Body = dict[str, Any]
PLURAL = kinds.by_kind(context.KIND_WORKFLOW_RUN).plural
FIND_GRACE = 60.0  # seconds after the intent to keep looking for the run session of a lost answer
PENDING_INTERVAL = 5.0  # waiting for the Workflow to be Ready
CONNECTION_INTERVAL = 10.0  # waiting for the connection
TRACK_MIN = 2.0  # following a run: every 2 s at first ...
TRACK_MAX = 30.0  # ... then a tenth of its age, at most every 30 s
SUCCEEDED = frozenset({"Completed", "CompletedWithErrors"})
FAILED = frozenset({"Failed", "Canceled"})
TERMINAL = workflowrun.TERMINAL_PHASES

REASON_TRIGGER_REJECTED = "TriggerRejected"
REASON_TRIGGER_OUTCOME_UNKNOWN = "TriggerOutcomeUnknown"
REASON_RUN_SESSION_NOT_FOUND = "RunSessionNotFound"

# Errors of the run call that prove RunWhen did not start a run: the intent may be withdrawn.
_NOT_STARTED = (
    errors.RateLimitedError,
    errors.ConflictError,
    errors.TransportError,  # for a POST the client raises it only when nothing was sent
    errors.AuthError,
    errors.InvalidRequestError,
    errors.NotFoundError,
)


_ts = context.format_time


def _age(value: Any) -> float | None:
    parsed = context.parse_time(value)
    return (datetime.now(UTC) - parsed).total_seconds() if parsed else None


def _body(result: object) -> Body:
    if not isinstance(result, dict):
        raise TypeError(f"unexpected answer from the API server: {type(result).__name__}")
    return result


def _not_started(exc: errors.RunWhenError) -> bool:
    """Whether a failed run call certainly did not start a run."""
    if isinstance(exc, _NOT_STARTED):
        return True
    code = exc.status_code
    # A redirect or another 4xx answer was not applied; a 2xx answer that could not be read was.
    return isinstance(exc, errors.UnexpectedResponseError) and code is not None and 300 <= code < 500


class WorkflowRunReconciler:
    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx

    async def __call__(self, key: runtime.Key) -> runtime.Result:
        ctx = self.ctx
        body = ctx.latest(context.KIND_WORKFLOW_RUN, key.namespace, key.name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return runtime.Result()
        if context.is_paused(body):
            return runtime.Result()
        status: Body = body.get("status") or {}
        if status.get("phase") in TERMINAL:
            return await self._ttl(body, status)

        spec: Body = body.get("spec") or {}
        triggered = bool(status.get("triggerRequestedAt"))
        target = self._target(body, spec, status)
        if isinstance(target, str):
            await self._write(body, {"phase": "Pending", "message": target})
            return runtime.Result(after=PENDING_INTERVAL)
        wanted, conn_ref = target
        cid = context.connection_id(body, conn_ref)
        conn = ctx.registry.get(cid)
        if conn is None or not conn.ready or conn.api is None:
            where = f"{cid[0]} {cid[1] + '/' if cid[1] else ''}{cid[2]}"
            why = f"{where} is not available" if conn is None else f"{where} is not ready: {conn.message}"
            # Once triggered the run goes on in RunWhen: keep its phase, only say why it is not followed.
            update: Body = {"message": why} if triggered else {"phase": "Pending", "message": why}
            await self._write(body, update)
            return runtime.Result(after=CONNECTION_INTERVAL)
        api = conn.api

        try:
            if status.get("runSessionId") is None:
                if not triggered:
                    return await self._trigger(body, api, cid, wanted, spec)
                return await self._recover(body, api, wanted, status)
            return await self._track(body, api, wanted, status)
        except errors.NotFoundError as exc:
            # Looking for or following a run that RunWhen no longer knows (the workspace or the run
            # session was deleted): it will never finish.
            await self._finish(
                body, "Failed", REASON_RUN_SESSION_NOT_FOUND, f"RunWhen no longer knows the run: {exc}"
            )
            return await self._ttl_latest(body)
        except errors.RunWhenError as exc:
            # The run's state is unknown, not failed: keep looking, with growing delays.
            if isinstance(exc, errors.AuthenticationError):
                self.ctx.connection_refused(cid)
            await self._write(body, {"message": f"cannot follow the run: {exc}"})
            return runtime.Result(error=True)

    def _target(self, body: Body, spec: Body, status: Body) -> tuple[dialect.WorkflowTarget, Body] | str:
        """(the workflow, connectionRef), or why it is not known yet."""
        if (status.get("workflowId") or status.get("workflowName")) and status.get("workspace"):
            # Recorded with the intent: a run already asked for is followed where it was started.
            conn_ref = spec.get("connectionRef") or {}
            if not conn_ref and spec.get("workflowRef"):
                wf = self.ctx.latest(
                    context.KIND_WORKFLOW, body["metadata"]["namespace"], str(spec["workflowRef"]["name"])
                )
                conn_ref = ((wf or {}).get("spec") or {}).get("connectionRef") or {}
            recorded = dialect.WorkflowTarget(
                str(status["workspace"]),
                int(status["workflowId"]) if status.get("workflowId") else None,
                status.get("workflowName") or None,
            )
            return recorded, conn_ref
        if spec.get("workspaceName"):
            given = dialect.WorkflowTarget(
                str(spec["workspaceName"]),
                int(spec["workflowId"]) if spec.get("workflowId") is not None else None,
                spec.get("workflowName") or None,
            )
            return given, spec.get("connectionRef") or {}
        ref = str((spec.get("workflowRef") or {}).get("name"))
        namespace = body["metadata"]["namespace"]
        wf = self.ctx.latest(context.KIND_WORKFLOW, namespace, ref)
        if wf is None:
            return f'waiting for Workflow "{ref}"'
        wf_status = wf.get("status") or {}
        ready = context.condition_index(wf_status).get(common.CONDITION_READY) or {}
        if ready.get("status") != "True" or wf_status.get("id") is None or not wf_status.get("workspace"):
            return f'waiting for Workflow "{ref}" to be Ready'
        wf_spec = wf.get("spec") or {}
        conn_ref = spec.get("connectionRef") or wf_spec.get("connectionRef") or {}
        name = str(wf_spec.get("name") or wf["metadata"]["name"])
        return dialect.WorkflowTarget(str(wf_status["workspace"]), int(wf_status["id"]), name), conn_ref

    async def _trigger(
        self,
        body: Body,
        api: dialect.Api,
        cid: connections.ConnectionId,
        wanted: dialect.WorkflowTarget,
        spec: Body,
    ) -> runtime.Result:
        uid = body["metadata"]["uid"]
        try:
            target = await api.resolve_workflow(wanted)
        except errors.NotFoundError as exc:
            await self._finish(body, "Failed", REASON_TRIGGER_REJECTED, f"cannot start the run: {exc}")
            return await self._ttl_latest(body)
        # The intent first: from here on this object never starts the run again by itself.
        claimed = await self._claim(
            body,
            {
                "phase": "Pending",
                "triggerRequestedAt": context.now(),
                "workspace": target.workspace,
                "workflowId": target.id,
                "workflowName": target.name,
                "message": "triggering the run",
            },
        )
        if claimed is None:
            return runtime.Result(after=0.0)  # decided on an outdated object: decide again
        body = claimed
        try:
            run = await api.start_run(target, uid, spec.get("context"))
        except errors.RunWhenError as exc:
            return await self._trigger_failed(body, cid, exc)
        body = await self._write(
            body,
            {
                "phase": run.phase,
                "runId": run.run_id,
                "runSessionId": run.session_id,
                "queuedAt": _ts(run.queued_at) or context.now(),
                "startedAt": _ts(run.started_at),
                "message": run.message,
            },
        )
        session = f"run session {run.session_id}" if run.session_id is not None else "a run session"
        context.event(
            self.ctx,
            body,
            "Normal",
            "Triggered",
            f"triggered workflow {target.name or target.id} in workspace {target.workspace}: {session}",
        )
        # Without a run session id in the answer, the next pass finds it by the uid in its context.
        return runtime.Result(after=TRACK_MIN)

    async def _trigger_failed(
        self, body: Body, cid: connections.ConnectionId, exc: errors.RunWhenError
    ) -> runtime.Result:
        if not _not_started(exc):
            # The call may have started a run: never send it again, look for the run session.
            await self._write(
                body, {"message": f"the answer to the run call was lost ({exc}); looking for the run"}
            )
            return runtime.Result(after=TRACK_MIN)
        if isinstance(exc, errors.InvalidRequestError | errors.NotFoundError):
            await self._finish(
                body, "Failed", REASON_TRIGGER_REJECTED, f"RunWhen refused to start the run: {exc}"
            )
            return await self._ttl_latest(body)
        # Known not to have started (rate limited, credentials refused, never sent): try again later.
        if isinstance(exc, errors.AuthenticationError):
            self.ctx.connection_refused(cid)
        await self._write(
            body,
            {
                "triggerRequestedAt": None,
                "workspace": None,
                "workflowId": None,
                "workflowName": None,
                "message": f"the run was not started, trying again: {exc}",
            },
        )
        retry_after = exc.retry_after if isinstance(exc, errors.RateLimitedError) else None
        return runtime.Result(after=retry_after, error=True)

    async def _recover(
        self, body: Body, api: dialect.Api, target: dialect.WorkflowTarget, status: Body
    ) -> runtime.Result:
        """The run was started, but the answer never made it into the status: find its run session."""
        uid = body["metadata"]["uid"]
        since = context.parse_time(status.get("triggerRequestedAt")) or datetime.now(UTC)
        found = await api.find_run(target, uid, since)
        if found is not None and found.session_id is not None:
            body = await self._write(
                body,
                {
                    "runSessionId": found.session_id,
                    "queuedAt": status.get("queuedAt") or _ts(found.queued_at) or context.now(),
                    "message": f"found run session {found.session_id} of the interrupted trigger",
                },
            )
            context.event(
                self.ctx,
                body,
                "Normal",
                "Triggered",
                f"triggered workflow {target.name or target.id} in workspace {target.workspace}: run "
                f"session {found.session_id} (found after the answer to the run call was lost)",
            )
            return await self._track(body, api, target, body.get("status") or {})
        waited = _age(status.get("triggerRequestedAt"))
        if waited is not None and waited < FIND_GRACE:
            return runtime.Result(after=TRACK_MIN)
        await self._finish(
            body,
            "Failed",
            REASON_TRIGGER_OUTCOME_UNKNOWN,
            "the run was asked for, but no run session carries this object's uid; "
            "not triggering again (create a new WorkflowRun to run the workflow)",
        )
        return await self._ttl_latest(body)

    async def _track(
        self, body: Body, api: dialect.Api, target: dialect.WorkflowTarget, status: Body
    ) -> runtime.Result:
        run = await api.get_run(target, int(status["runSessionId"]))
        phase = run.phase
        message = run.message
        update: Body = {"phase": phase}
        if not status.get("queuedAt"):
            update["queuedAt"] = _ts(run.queued_at) or context.now()
        if phase != "Queued" and not status.get("startedAt"):
            update["startedAt"] = _ts(run.started_at) or context.now()
        if phase in TERMINAL:
            update["completedAt"] = _ts(run.completed_at) or context.now()
            await self._finish(body, phase, phase, message, extra=update)
            return await self._ttl_latest(body)
        await self._write(body, {**update, "message": message})
        since = _age(status.get("queuedAt") or status.get("triggerRequestedAt")) or 0.0
        return runtime.Result(after=min(TRACK_MAX, max(TRACK_MIN, since / 10)))

    async def _finish(
        self, body: Body, phase: str, reason: str, message: str, extra: Body | None = None
    ) -> None:
        body = self._latest(body)
        generation = body["metadata"].get("generation")
        status: Body = body.get("status") or {}
        conditions = list(status.get("conditions") or [])
        complete = "True" if phase in SUCCEEDED else "False"
        failed = "True" if phase in FAILED else "False"
        conditions = context.set_condition(conditions, "Complete", complete, reason, message, generation)
        conditions = context.set_condition(conditions, "Failed", failed, reason, message, generation)
        conditions = context.set_condition(
            conditions, common.CONDITION_READY, complete, reason, message, generation
        )
        conditions = context.progress(
            conditions, complete, reason, message, generation, stalled=failed == "True"
        )
        update: Body = {
            "phase": phase,
            "conditions": conditions,
            "completedAt": status.get("completedAt") or context.now(),
            **(extra or {}),
            "message": message,
        }
        body = await self._write(body, update)
        if phase in SUCCEEDED:
            context.event(self.ctx, body, "Normal", "Completed", message)
        else:
            context.event(self.ctx, body, "Warning", "Failed", f"{reason}: {message}")

    async def _ttl_latest(self, body: Body) -> runtime.Result:
        latest = self._latest(body)
        return await self._ttl(latest, latest.get("status") or {})

    async def _ttl(self, body: Body, status: Body) -> runtime.Result:
        ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return runtime.Result()
        remaining = float(ttl) - (_age(status.get("completedAt")) or 0.0)
        if remaining > 0:
            return runtime.Result(after=remaining)
        meta = body["metadata"]
        with contextlib.suppress(kube.Gone):
            await self.ctx.kube.delete_object(PLURAL, meta["namespace"], meta["name"])
        return runtime.Result()

    async def _claim(self, body: Body, status: Body) -> Body | None:
        """Write `status` only if the object is still at the version this pass decided on.

        Guarded by the resourceVersion, of two passes that both saw no intent (a cache that lags
        behind the API server, the pass of a former leader still running), only one writes it; the
        other gets None, after the store got the object as it is now.
        """
        latest = self._latest(body)
        meta = latest["metadata"]
        desired = {"observedGeneration": meta.get("generation"), **status}
        patch = context.status_patch(latest.get("status") or {}, desired)
        kube_api = self.ctx.kube
        args = (common.GROUP, common.VERSION, meta["namespace"], PLURAL, meta["name"])
        kube_api.writes += 1
        try:
            result = await kube_api.call(
                kube_api.custom.patch_namespaced_custom_object_status,
                *args,
                {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch},
            )
        except kube.Conflict:
            fresh = await kube_api.call(kube_api.custom.get_namespaced_custom_object, *args)
            self.ctx.slots.remember(context.KIND_WORKFLOW_RUN, _body(fresh))
            log.info("%s/%s changed since it was read; deciding again", meta["namespace"], meta["name"])
            return None
        updated = _body(result)
        self.ctx.slots.remember(context.KIND_WORKFLOW_RUN, updated)
        return updated

    def _latest(self, body: Body) -> Body:
        meta = body["metadata"]
        return self.ctx.latest(context.KIND_WORKFLOW_RUN, meta["namespace"], meta["name"]) or body

    async def _write(self, body: Body, status: Body) -> Body:
        """Patch ``status``; while the run is not finished, ``Ready=False`` with its phase as the reason
        and ``Reconciling=True`` (Flux and Argo CD read it as in progress)."""
        latest = self._latest(body)
        generation = latest["metadata"].get("generation")
        desired = {"observedGeneration": generation, **status}
        if desired.get("message") is not None:
            desired["message"] = context.truncate(str(desired["message"]))
        current: Body = latest.get("status") or {}
        phase = str(desired.get("phase") or current.get("phase") or "Pending")
        if phase not in TERMINAL and "conditions" not in desired:
            message = str(desired.get("message") or current.get("message") or f"the run is {phase}")
            conditions = context.set_condition(
                list(current.get("conditions") or []),
                common.CONDITION_READY,
                "False",
                phase,
                message,
                generation,
            )
            desired["conditions"] = context.progress(
                conditions, "False", phase, message, generation, stalled=False
            )
        return await context.write_status(
            self.ctx, context.KIND_WORKFLOW_RUN, PLURAL, self._latest(body), desired
        )
