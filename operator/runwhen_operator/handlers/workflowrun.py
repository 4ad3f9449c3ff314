"""WorkflowRun: trigger a workflow once, then follow its run session like a Job.

At most one run per WorkflowRun object, even across crashes: the intent (`status.triggerRequestedAt`)
is written before the run call, and the call carries the object's uid in the run context under
`RUN_MARKER`. A pass that finds the intent recorded but no run session id never triggers again; it
looks for a run session of the workflow whose context carries the uid. If none appears within
`FIND_GRACE` seconds, the run is marked Failed with reason `TriggerOutcomeUnknown`: at most once
means never twice, so an unknown outcome is reported, not retried.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from runwhen_operator.api import common
from runwhen_operator.handlers import context, kube, runtime
from runwhen_operator.runwhen import errors

log = logging.getLogger("runwhen_operator.workflowrun")

Body = dict[str, Any]
PLURAL = "workflowruns"
RUN_MARKER = "platform.runwhen.com/workflowrun-uid"
FIND_GRACE = 60.0
TRACK_INTERVAL = 2.0
PHASES = {
    "queued": "Queued",
    "started": "Started",
    "completed": "Completed",
    "completed_with_errors": "CompletedWithErrors",
    "failed": "Failed",
    "canceled": "Canceled",
}
SUCCEEDED = {"Completed", "CompletedWithErrors"}
FAILED = {"Failed", "Canceled"}


def _ts(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


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
        phase = status.get("phase")
        if phase in SUCCEEDED | FAILED:
            return await self._ttl(body, status)

        spec: Body = body.get("spec") or {}
        target = self._target(body, spec, status)
        if isinstance(target, str):
            await self._write(body, {"phase": "Pending", "message": target})
            return runtime.Result(after=5.0)
        workspace_name, workflow_id, conn_ref = target
        cid = context.connection_id(body, conn_ref)
        conn = ctx.registry.get(cid)
        if conn is None or not conn.ready:
            await self._write(
                body, {"phase": "Pending", "message": f"connection {cid[0]} {cid[2]} is not ready"}
            )
            return runtime.Result(after=10.0)
        rw = conn.client

        try:
            if status.get("runSessionId") is None:
                if not status.get("triggerRequestedAt"):
                    return await self._trigger(body, rw, workspace_name, workflow_id, spec)
                return await self._recover(body, rw, workspace_name, workflow_id, status)
            return await self._track(body, rw, workspace_name, status)
        except errors.RunWhenError as exc:
            if not exc.retryable:
                await self._finish(body, "Failed", "RunWhenRejected", str(exc))
                return runtime.Result()
            await self._write(body, {"message": context.truncate(f"RunWhen unavailable: {exc}")})
            return runtime.Result(error=True)

    def _target(self, body: Body, spec: Body, status: Body) -> tuple[str, int, Body] | str:
        """(workspace, workflow id, connectionRef), or why it is not known yet."""
        if status.get("workflowId") and status.get("workspace"):
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
        self, body: Body, rw: Any, workspace: str, workflow_id: int, spec: Body
    ) -> runtime.Result:
        uid = body["metadata"]["uid"]
        body = await self._write(
            body,
            {
                "phase": "Pending",
                "triggerRequestedAt": context.now(),
                "workspace": workspace,
                "workflowId": workflow_id,
                "message": "triggering the run",
            },
        )
        run_context = {**(spec.get("context") or {}), RUN_MARKER: uid}
        try:
            run = await rw.run_workflow(workspace, workflow_id, run_context)
        except errors.WriteOutcomeUnknownError:
            return runtime.Result(after=TRACK_INTERVAL)  # look for the run session before anything else
        except errors.RunWhenError as exc:
            if isinstance(exc, errors.InvalidRequestError | errors.NotFoundError | errors.AuthError):
                await self._finish(
                    body, "Failed", "TriggerRejected", f"RunWhen refused to start the run: {exc}"
                )
                return runtime.Result()
            # Known not to have started (rate limited, refused before sending): allowed to try again.
            await self._write(
                body,
                {"triggerRequestedAt": None, "message": context.truncate(f"retrying the trigger: {exc}")},
            )
            return runtime.Result(error=True)
        phase = PHASES.get(run.status, "Queued")
        body = await self._write(
            body,
            {
                "phase": phase,
                "runId": run.id,
                "runSessionId": run.run_session_id,
                "queuedAt": _ts(run.queued_at) or context.now(),
                "startedAt": _ts(run.started_at),
                "message": run.status_message or f"run {run.status}",
            },
        )
        await self.ctx.kube.event(
            body, "Normal", "Triggered", f"started workflow {workflow_id} in workspace {workspace}"
        )
        return runtime.Result(after=TRACK_INTERVAL)

    async def _recover(
        self, body: Body, rw: Any, workspace: str, workflow_id: int, status: Body
    ) -> runtime.Result:
        uid = body["metadata"]["uid"]
        async for session in rw.list_run_sessions(workspace, source="workflow", workflowId=workflow_id):
            if (session.context or {}).get(RUN_MARKER) == uid:
                await self._write(
                    body, {"runSessionId": session.id, "message": "found the run session after a restart"}
                )
                return runtime.Result(after=0.1)
        requested = _parse(status.get("triggerRequestedAt"))
        waited = (datetime.now(UTC) - requested).total_seconds() if requested else FIND_GRACE
        if waited < FIND_GRACE:
            return runtime.Result(after=TRACK_INTERVAL)
        await self._finish(
            body,
            "Failed",
            "TriggerOutcomeUnknown",
            "the trigger was requested but no run session carries this object's uid; not triggering again",
        )
        return runtime.Result()

    async def _track(self, body: Body, rw: Any, workspace: str, status: Body) -> runtime.Result:
        session = await rw.get_run_session(workspace, int(status["runSessionId"]))
        wire = session.wire()
        phase = PHASES.get(str(session.status or ""), status.get("phase") or "Queued")
        update: Body = {"phase": phase}
        if phase != status.get("phase"):
            update["message"] = f"run {session.status}"
        if phase in ("Started", *SUCCEEDED, *FAILED) and not status.get("startedAt"):
            update["startedAt"] = _ts(wire.get("startedAt")) or context.now()
        if phase in SUCCEEDED | FAILED:
            update["completedAt"] = _ts(wire.get("completedAt")) or context.now()
            reason = phase
            await self._finish(
                body, phase, reason, f"run session {session.id} {session.status}", extra=update
            )
            return await self._ttl(self._latest(body), self._latest(body).get("status") or {})
        await self._write(body, update)
        return runtime.Result(after=TRACK_INTERVAL)

    async def _finish(
        self, body: Body, phase: str, reason: str, message: str, extra: Body | None = None
    ) -> None:
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
            "message": context.truncate(message),
            "observedGeneration": generation,
            "completedAt": status.get("completedAt") or context.now(),
            **(extra or {}),
        }
        body = await self._write(body, update)
        if phase in SUCCEEDED:
            await self.ctx.kube.event(body, "Normal", "Completed", message)
        else:
            await self.ctx.kube.event(body, "Warning", "Failed", message)

    async def _ttl(self, body: Body, status: Body) -> runtime.Result:
        ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return runtime.Result()
        finished = _parse(status.get("completedAt")) or datetime.now(UTC)
        remaining = float(ttl) - (datetime.now(UTC) - finished).total_seconds()
        if remaining > 0:
            return runtime.Result(after=remaining)
        meta = body["metadata"]
        with contextlib.suppress(kube.Gone):
            await self.ctx.kube.delete_object(PLURAL, meta["namespace"], meta["name"])
        return runtime.Result()

    def _latest(self, body: Body) -> Body:
        meta = body["metadata"]
        return (
            self.ctx.controller.store.get(context.KIND_WORKFLOW_RUN, meta["namespace"], meta["name"]) or body
        )

    async def _write(self, body: Body, status: Body) -> Body:
        generation = body["metadata"].get("generation")
        desired = {"observedGeneration": generation, **status}
        if "message" in desired and desired["message"] is not None:
            desired["message"] = context.truncate(str(desired["message"]))
        return await context.write_status(
            self.ctx, context.KIND_WORKFLOW_RUN, PLURAL, self._latest(body), desired
        )
