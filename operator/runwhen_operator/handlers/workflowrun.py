"""WorkflowRun: trigger a workflow once, then follow its run session like a Job.

At most one run per WorkflowRun object, even across crashes. The intent (`status.triggerRequestedAt`)
is written to the API server before the run call, and the call carries the object's uid in the run
context under `RUN_MARKER`. A pass that finds the intent recorded but no run session id never
triggers again: it looks for a run session of the workflow whose context carries the uid. If none
appears within `FIND_GRACE` seconds of the intent, the run is marked Failed with reason
`TriggerOutcomeUnknown`: at most once means never twice, so an unknown outcome is reported, not
retried. The intent is withdrawn, and the call made again, only after an answer proving that RunWhen
did not start the run (rate limited, refused credentials, a connection that was never made).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from runwhen_operator.api import common
from runwhen_operator.handlers import context, kube, runtime
from runwhen_operator.reconcile import connections
from runwhen_operator.runwhen import errors

log = logging.getLogger("runwhen_operator.workflowrun")

Body = dict[str, Any]
PLURAL = "workflowruns"
RUN_MARKER = "platform.runwhen.com/workflowrun-uid"
FIND_GRACE = 60.0  # seconds after the intent to keep looking for the run session of a lost answer
PENDING_INTERVAL = 5.0  # waiting for the Workflow to be Ready
CONNECTION_INTERVAL = 10.0  # waiting for the connection
TRACK_MIN = 2.0  # following a run: every 2 s at first ...
TRACK_MAX = 30.0  # ... then a tenth of its age, at most every 30 s
PHASES = {
    "queued": "Queued",
    "started": "Started",
    "running": "Started",
    "completed": "Completed",
    "completed_with_errors": "CompletedWithErrors",
    "failed": "Failed",
    "canceled": "Canceled",
    "cancelled": "Canceled",
}
SUCCEEDED = frozenset({"Completed", "CompletedWithErrors"})
FAILED = frozenset({"Failed", "Canceled"})
TERMINAL = SUCCEEDED | FAILED

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


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ts(value: Any) -> str | None:
    """A timestamp (datetime or RFC 3339 text) as the status writes it, or None."""
    parsed = _parse(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if parsed else None


def _age(value: Any) -> float | None:
    parsed = _parse(value)
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
        body = ctx.controller.store.get(context.KIND_WORKFLOW_RUN, key.namespace, key.name)
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
        workspace_name, workflow_id, conn_ref = target
        cid = context.connection_id(body, conn_ref)
        conn = ctx.registry.get(cid)
        if conn is None or not conn.ready:
            where = f"{cid[0]} {cid[1] + '/' if cid[1] else ''}{cid[2]}"
            why = f"{where} is not available" if conn is None else f"{where} is not ready: {conn.message}"
            # Once triggered the run goes on in RunWhen: keep its phase, only say why it is not followed.
            update: Body = {"message": why} if triggered else {"phase": "Pending", "message": why}
            await self._write(body, update)
            return runtime.Result(after=CONNECTION_INTERVAL)
        rw = conn.client

        try:
            if status.get("runSessionId") is None:
                if not triggered:
                    return await self._trigger(body, rw, cid, workspace_name, workflow_id, spec)
                return await self._recover(body, rw, workspace_name, workflow_id, status)
            return await self._track(body, rw, workspace_name, status)
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
                self._refused(cid, str(exc))
            await self._write(body, {"message": f"cannot follow the run: {exc}"})
            return runtime.Result(error=True)

    def _target(self, body: Body, spec: Body, status: Body) -> tuple[str, int, Body] | str:
        """(workspace, workflow id, connectionRef), or why it is not known yet."""
        if status.get("workflowId") and status.get("workspace"):
            # Recorded with the intent: a run already asked for is followed where it was started.
            conn_ref = spec.get("connectionRef") or {}
            if not conn_ref and spec.get("workflowRef"):
                wf = self.ctx.controller.store.get(
                    context.KIND_WORKFLOW, body["metadata"]["namespace"], str(spec["workflowRef"]["name"])
                )
                conn_ref = ((wf or {}).get("spec") or {}).get("connectionRef") or {}
            return str(status["workspace"]), int(status["workflowId"]), conn_ref
        if spec.get("workflowId") is not None:
            return str(spec["workspaceName"]), int(spec["workflowId"]), spec.get("connectionRef") or {}
        ref = str((spec.get("workflowRef") or {}).get("name"))
        namespace = body["metadata"]["namespace"]
        wf = self.ctx.controller.store.get(context.KIND_WORKFLOW, namespace, ref)
        if wf is None:
            return f'waiting for Workflow "{ref}"'
        wf_status = wf.get("status") or {}
        ready = context.condition_index(wf_status).get(common.CONDITION_READY) or {}
        if ready.get("status") != "True" or wf_status.get("id") is None or not wf_status.get("workspace"):
            return f'waiting for Workflow "{ref}" to be Ready'
        conn_ref = spec.get("connectionRef") or (wf.get("spec") or {}).get("connectionRef") or {}
        return str(wf_status["workspace"]), int(wf_status["id"]), conn_ref

    async def _trigger(
        self,
        body: Body,
        rw: Any,
        cid: connections.ConnectionId,
        workspace: str,
        workflow_id: int,
        spec: Body,
    ) -> runtime.Result:
        uid = body["metadata"]["uid"]
        # The intent first: from here on this object never sends the run call again by itself.
        claimed = await self._claim(
            body,
            {
                "phase": "Pending",
                "triggerRequestedAt": context.now(),
                "workspace": workspace,
                "workflowId": workflow_id,
                "message": "triggering the run",
            },
        )
        if claimed is None:
            return runtime.Result(after=0.0)  # decided on an outdated object: decide again
        body = claimed
        run_context = {**(spec.get("context") or {}), RUN_MARKER: uid}
        try:
            run = await rw.run_workflow(workspace, workflow_id, run_context)
        except errors.RunWhenError as exc:
            return await self._trigger_failed(body, cid, exc)
        body = await self._write(
            body,
            {
                "phase": PHASES.get(str(run.status), "Queued"),
                "runId": run.id,
                "runSessionId": run.run_session_id,
                "queuedAt": _ts(run.queued_at) or context.now(),
                "startedAt": _ts(run.started_at),
                "message": run.status_message or f"run {run.status}",
            },
        )
        session = f"run session {run.run_session_id}" if run.run_session_id is not None else "a run session"
        await self.ctx.kube.event(
            body,
            "Normal",
            "Triggered",
            f"triggered workflow {workflow_id} in workspace {workspace}: {session}",
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
            self._refused(cid, str(exc))
        await self._write(
            body,
            {
                "triggerRequestedAt": None,
                "workspace": None,
                "workflowId": None,
                "message": f"the run was not started, trying again: {exc}",
            },
        )
        retry_after = exc.retry_after if isinstance(exc, errors.RateLimitedError) else None
        return runtime.Result(after=retry_after, error=True)

    async def _recover(
        self, body: Body, rw: Any, workspace: str, workflow_id: int, status: Body
    ) -> runtime.Result:
        """The run call was sent, but its answer never made it into the status: find its run session."""
        uid = body["metadata"]["uid"]
        async for session in rw.list_run_sessions(workspace, source="workflow", workflowId=workflow_id):
            if (session.context or {}).get(RUN_MARKER) != uid:
                continue
            body = await self._write(
                body,
                {
                    "runSessionId": session.id,
                    "queuedAt": status.get("queuedAt") or _ts(session.created_at) or context.now(),
                    "message": f"found run session {session.id} of the interrupted trigger",
                },
            )
            await self.ctx.kube.event(
                body,
                "Normal",
                "Triggered",
                f"triggered workflow {workflow_id} in workspace {workspace}: run session {session.id} "
                "(found after the answer to the run call was lost)",
            )
            return await self._track(body, rw, workspace, body.get("status") or {})
        waited = _age(status.get("triggerRequestedAt"))
        if waited is not None and waited < FIND_GRACE:
            return runtime.Result(after=TRACK_MIN)
        await self._finish(
            body,
            "Failed",
            REASON_TRIGGER_OUTCOME_UNKNOWN,
            "the run was asked for, but no run session of the workflow carries this object's uid; "
            "not triggering again (create a new WorkflowRun to run the workflow)",
        )
        return await self._ttl_latest(body)

    async def _track(self, body: Body, rw: Any, workspace: str, status: Body) -> runtime.Result:
        session = await rw.get_run_session(workspace, int(status["runSessionId"]))
        wire = session.wire()
        raw = str(session.status or "")
        current = status.get("phase")
        phase = PHASES.get(raw) or (current if current not in (None, "Pending") else "Queued")
        # A run session carries no start or end time of its own: a status change is dated by
        # `updatedAt`, the time of the session's last change, when first seen.
        seen_at = _ts(session.updated_at) or context.now()
        message = f"run session {session.id} {raw or 'has no status'}"
        update: Body = {"phase": phase}
        if not status.get("queuedAt"):
            update["queuedAt"] = _ts(session.created_at) or context.now()
        if phase != "Queued" and not status.get("startedAt"):
            update["startedAt"] = _ts(wire.get("startedAt")) or seen_at
        if phase in TERMINAL:
            update["completedAt"] = _ts(wire.get("completedAt")) or seen_at
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
        update: Body = {
            "phase": phase,
            "conditions": conditions,
            "completedAt": status.get("completedAt") or context.now(),
            **(extra or {}),
            "message": message,
        }
        body = await self._write(body, update)
        if phase in SUCCEEDED:
            await self.ctx.kube.event(body, "Normal", "Completed", message)
        else:
            await self.ctx.kube.event(body, "Warning", "Failed", f"{reason}: {message}")

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
            self.ctx.controller.store.put(context.KIND_WORKFLOW_RUN, _body(fresh))
            log.info("%s/%s changed since it was read; deciding again", meta["namespace"], meta["name"])
            return None
        updated = _body(result)
        self.ctx.controller.store.put(context.KIND_WORKFLOW_RUN, updated)
        return updated

    def _refused(self, cid: connections.ConnectionId, message: str) -> None:
        """RunWhen refused the connection's credentials: let the connection check them again."""
        self.ctx.registry.mark_unauthorized(cid, message)
        self.ctx.controller.enqueue(runtime.Key(cid[0], cid[1], cid[2]))

    def _latest(self, body: Body) -> Body:
        meta = body["metadata"]
        return (
            self.ctx.controller.store.get(context.KIND_WORKFLOW_RUN, meta["namespace"], meta["name"]) or body
        )

    async def _write(self, body: Body, status: Body) -> Body:
        generation = body["metadata"].get("generation")
        desired = {"observedGeneration": generation, **status}
        if desired.get("message") is not None:
            desired["message"] = context.truncate(str(desired["message"]))
        return await context.write_status(
            self.ctx, context.KIND_WORKFLOW_RUN, PLURAL, self._latest(body), desired
        )
