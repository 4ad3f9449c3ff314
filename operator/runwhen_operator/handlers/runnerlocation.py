"""RunnerLocation: the Secrets a private runner mounts, the location in its workspace, the runner's health.

The flow of a pass:

1. the newest body; nothing to do when it is gone or paused (Kopf added the finalizer first);
2. the connection's client and the workspace (a Workspace resource that must be Ready, or a remote
   workspace name), or a condition saying what is awaited;
3. for a workspace managed by a Workspace resource: the location in its enabled locations (one
   PATCH when it is missing; the Workspace keeps it there, see ``managed.WorkspaceReconciler``);
4. the two Secrets the runwhen-local chart mounts. Each is read at every pass (a Kubernetes GET);
   RunWhen is asked for a new runner token or upload configuration only for a Secret that is
   missing, not marked as written for this location, or when a rotation is asked for by annotation.
   A token lives in its Secret only: never in the status, an event or a log line;
5. the location's runners: health, last heartbeat and id mirrored into the status; Ready when one
   reports online;
6. the status patched where it changed (inside a Kopf change handler it joins Kopf's own patch),
   events on transitions only.

Deletion: `Delete` removes the location's runner registrations and, for a workspace managed here,
the location from its enabled locations (unless the Workspace's spec lists it); `Orphan` leaves
both. The Secrets in the object's namespace go with it (they are owned by it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import yaml

from runwhen_operator.api import common, runnerlocation
from runwhen_operator.handlers import context, kube, managed, runtime
from runwhen_operator.reconcile import connections, engine, externals
from runwhen_operator.runwhen import dialect, errors

log = logging.getLogger("runwhen_operator.runnerlocation")

Body = dict[str, Any]

REASON_RUNNER_ONLINE = "RunnerOnline"
REASON_WAITING_FOR_RUNNER = "WaitingForRunner"
REASON_RUNNER_STALE = "RunnerStale"
REASON_SECRET_CONFLICT = "SecretConflict"
REASON_KUBERNETES_ERROR = managed.REASON_KUBERNETES_ERROR
#: How often a location without an online runner is looked at (at most; the poll interval if shorter).
WAITING_INTERVAL = 30.0
#: Where the install of the runner is explained.
GUIDE = "docs/runner.md"
MANAGED_BY = {"app.kubernetes.io/managed-by": "runwhen-operator"}


@dataclasses.dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    ready: bool  # Ready turns False too (the failure needs a human), else Ready is left as it is
    retry_after: float | None = None
    event: bool = True  # a Warning event when it starts (not for waiting on a parent or connection)


def api_failure(exc: errors.RunWhenError, doing: str) -> Failure:
    """A RunWhen error as a condition, as the engine words it for the other kinds."""
    if isinstance(exc, errors.PermissionDeniedError):
        return Failure(engine.REASON_FORBIDDEN, f"RunWhen does not allow {doing}: {exc}", ready=True)
    if isinstance(exc, errors.AuthError):
        return Failure(engine.REASON_UNAUTHORIZED, f"RunWhen refused the credentials: {exc}", ready=True)
    retry = exc.retry_after if isinstance(exc, errors.RateLimitedError) else None
    return Failure(engine.REASON_API_ERROR, f"{doing}: {exc}", ready=False, retry_after=retry)


class RunnerLocationReconciler(managed.ChildReconciler):
    kind = context.KIND_RUNNER_LOCATION
    spec_model = runnerlocation.RunnerLocationSpec

    def describe(self, body: Body, spec: Any) -> str:
        parent = spec.workspace_name or (spec.workspace_ref.name if spec.workspace_ref else "")
        return f'runner location "{self.remote_name(body, spec)}" of workspace "{parent}"'

    async def _pass(self, key: runtime.Key) -> runtime.Result:
        try:
            begun = await self._begin(key)
        except managed.NotYet:
            return runtime.Result(after=1.0)
        if begun is None:
            return runtime.Result()
        body, found_spec, poll, poll_complaint = begun
        spec: runnerlocation.RunnerLocationSpec = found_spec
        meta = body["metadata"]
        status: Body = body.get("status") or {}
        deleting = bool(meta.get("deletionTimestamp"))
        if poll_complaint:
            log.warning("%s: %s", key, poll_complaint)
        location = spec.remote_name(meta["name"])
        try:
            api: dialect.Api = self._client(body, spec)
            workspace = self.workspace_name(body, spec)
        except managed.NotYet:
            return runtime.Result(after=1.0)
        except externals.Blocked as blocked:
            if deleting and not status.get("workspace"):
                return runtime.Result(finalized=True)  # never got as far as RunWhen: nothing to undo
            failure = Failure(blocked.reason, blocked.message, ready=True, event=False)
            await self._report(body, failure=failure)
            if blocked.reason == engine.REASON_WAITING_FOR_WORKSPACE:
                return runtime.Result()  # woken when the Workspace turns Ready
            return runtime.Result(error=True)
        if deleting:
            return await self._delete(body, spec, api, workspace, location)
        return await self._sync(body, spec, api, workspace, location, poll)

    # -- sync --------------------------------------------------------------------------------
    async def _sync(
        self,
        body: Body,
        spec: runnerlocation.RunnerLocationSpec,
        api: dialect.Api,
        workspace: str,
        location: str,
        poll: float,
    ) -> runtime.Result:
        meta = body["metadata"]
        status: Body = body.get("status") or {}
        annotations = meta.get("annotations") or {}
        requested = annotations.get(common.ANNOTATION_RECONCILE_REQUESTED_AT)
        fresh = bool(requested) and requested != status.get("lastHandledReconcileAt")
        rotation = annotations.get(common.ANNOTATION_ROTATE_RUNNER_TOKEN)
        rotate = bool(rotation) and rotation != status.get("tokenRotation")
        cid = context.connection_id(body, spec.connection_ref)
        extra: Body = {"workspace": workspace, "location": location}
        events: list[engine.Event] = []
        failure: Failure | None = None
        runner: dialect.Runner | None = None
        runners_read = False
        doing = f'enabling location "{location}" in workspace "{workspace}"'
        try:
            if spec.workspace_ref is not None:
                if await self._enable_location(api, cid, workspace, location, 0.0 if fresh else poll / 2):
                    events.append(
                        engine.Event(
                            "Normal",
                            "LocationEnabled",
                            f'enabled location "{location}" in workspace "{workspace}"',
                        )
                    )
                extra["locationEnabled"] = True
            written = await self._secrets(body, spec, api, workspace, location, rotate, extra)
            if written:
                verb = "rotated" if rotate else "wrote"
                events.append(engine.Event("Normal", "SecretsWritten", f"{verb} {' and '.join(written)}"))
            if rotation:
                extra["tokenRotation"] = rotation
            doing = f'listing the runners of workspace "{workspace}"'
            found = dialect.location_runners(await api.runners(workspace), workspace, location)
            runners_read = True
            runner = found[0] if found else None
        except managed.StepFailed as failed:
            failure = Failure(failed.reason, failed.message, ready=False)
        except _During as during:
            failure = api_failure(during.cause, during.doing)
        except errors.RunWhenError as exc:
            failure = api_failure(exc, doing)
        if failure is not None and failure.reason == engine.REASON_UNAUTHORIZED:
            self.ctx.connection_refused(context.connection_id(body, spec.connection_ref))
        if fresh and failure is None:
            extra["lastHandledReconcileAt"] = requested
        ready: engine.ConditionState | None = None
        if runners_read:
            extra.update(
                {
                    "runnerId": runner.id if runner else None,
                    "runnerName": runner.name if runner else None,
                    "health": runner.health
                    if runner and runner.health in runnerlocation.RUNNER_HEALTH
                    else None,
                    "lastHeartbeat": context.format_time(runner.last_heartbeat) if runner else None,
                }
            )
            ready = self._readiness(body, spec, workspace, location, runner)
        body = await self._report(body, failure=failure, ready=ready, extra=extra, events=events)
        if failure is not None:
            return runtime.Result(after=failure.retry_after, error=True)
        if ready is not None and ready.status == "True":
            return runtime.Result(after=runtime.jitter(poll))
        return runtime.Result(after=runtime.jitter(min(poll, WAITING_INTERVAL)))

    def _readiness(
        self,
        body: Body,
        spec: runnerlocation.RunnerLocationSpec,
        workspace: str,
        location: str,
        runner: dialect.Runner | None,
    ) -> engine.ConditionState:
        if runner is not None and runner.health == "online":
            return engine.ConditionState(
                "True",
                REASON_RUNNER_ONLINE,
                f'runner "{runner.name}" ({runner.id}) of location "{location}" reports online',
            )
        namespace = spec.secret_namespace or body["metadata"]["namespace"]
        install = (
            f"install the runwhen-local Helm chart in namespace {namespace} with the Secrets "
            f"{spec.runner_token_secret_name} and {spec.upload_info_secret_name} (see {GUIDE})"
        )
        if runner is not None and runner.health == "stale":
            beat = context.format_time(runner.last_heartbeat) or "never"
            return engine.ConditionState(
                "False",
                REASON_RUNNER_STALE,
                f'runner "{runner.name}" of location "{location}" has not reported since {beat}; '
                f"check that its pods run, or {install}",
            )
        return engine.ConditionState(
            "False",
            REASON_WAITING_FOR_RUNNER,
            f'no runner of location "{location}" reports online to workspace "{workspace}" yet: {install}',
        )

    async def _enable_location(
        self, api: dialect.Api, cid: connections.ConnectionId, workspace: str, location: str, max_age: float
    ) -> bool:
        """The location in the workspace's enabled locations; whether it had to be added."""
        return await self._change_locations(
            api,
            cid,
            workspace,
            max_age,
            lambda current: None if location in current else [*current, location],
        )

    async def _change_locations(
        self,
        api: dialect.Api,
        cid: connections.ConnectionId,
        workspace: str,
        max_age: float,
        change: Callable[[list[str]], list[str] | None],
    ) -> bool:
        """Read the workspace (through the listing the Workspace resources share) and PATCH its
        enabled locations when ``change`` returns a new list."""
        external = externals.WorkspaceExternal(api, self.ctx.listings, cid, max_age)
        desired = externals.WorkspaceDesired(name=workspace)
        observation = await external.observe(desired, workspace, lookup_by_name=False)
        if not observation.exists or observation.remote is None:
            raise errors.NotFoundError(f'workspace "{workspace}" not found')
        current = [str(i) for i in observation.remote.get("enabledLocations") or []]
        wanted = change(current)
        if wanted is None:
            return False
        await external.update(desired, dataclasses.replace(observation, diff={"enabledLocations": wanted}))
        return True

    async def _secrets(
        self,
        body: Body,
        spec: runnerlocation.RunnerLocationSpec,
        api: dialect.Api,
        workspace: str,
        location: str,
        rotate: bool,
        extra: Body,
    ) -> list[str]:
        """Both Secrets, each fetched from RunWhen only when it is not written yet (or on rotation);
        returns what was written."""
        meta = body["metadata"]
        namespace = spec.secret_namespace or meta["namespace"]
        marks = {
            runnerlocation.ANNOTATION_OWNER: f"{meta['namespace']}/{meta['name']}",
            runnerlocation.ANNOTATION_WORKSPACE: workspace,
            runnerlocation.ANNOTATION_LOCATION: location,
        }
        labels = {**MANAGED_BY, runnerlocation.LABEL_LOCATION: location}

        async def token() -> str:
            return (await api.runner_token(workspace, location)).token.get_secret_value()

        async def upload() -> str:
            info = await api.upload_info(workspace, location)
            return dump_upload_info(info)

        steps: tuple[tuple[str, str, Callable[[], Awaitable[str]], str, str], ...] = (
            (
                spec.runner_token_secret_name,
                runnerlocation.RUNNER_TOKEN_KEY,
                token,
                "runner token",
                "runnerTokenSecret",
            ),
            (
                spec.upload_info_secret_name,
                runnerlocation.UPLOAD_INFO_KEY,
                upload,
                "upload configuration",
                "uploadInfoSecret",
            ),
        )
        written: list[str] = []
        for name, key, fetch, what, field_name in steps:
            where = f"Secret {namespace}/{name}"
            if not rotate and await self._is_written(namespace, name, key, marks):
                extra[field_name] = name
                continue
            try:
                value = await fetch()
            except errors.RunWhenError as exc:
                raise _During(exc, f"reading the {what} from RunWhen") from None
            try:
                changed = await self.ctx.kube.apply_owned_secret(
                    namespace, name, {key: value}, body, labels, marks
                )
            except kube.Conflict as exc:
                raise managed.StepFailed(REASON_SECRET_CONFLICT, f"cannot write {where}: {exc}") from None
            except kube.KubeError as exc:
                raise managed.StepFailed(REASON_KUBERNETES_ERROR, f"cannot write {where}: {exc}") from None
            extra[field_name] = name
            if changed:
                written.append(f"the {what} to {where}")
        extra["secretNamespace"] = namespace
        return written

    async def _is_written(self, namespace: str, name: str, key: str, marks: dict[str, str]) -> bool:
        """The Secret exists, has the key, and says it was written for this object and location."""
        try:
            view = await self.ctx.kube.read_secret_view(namespace, name)
        except kube.Gone:
            return False
        except kube.KubeError as exc:
            raise managed.StepFailed(
                REASON_KUBERNETES_ERROR, f"cannot read Secret {namespace}/{name}: {exc}"
            ) from None
        return bool(view.data.get(key)) and all(view.annotations.get(k) == v for k, v in marks.items())

    # -- deletion ----------------------------------------------------------------------------
    async def _delete(
        self,
        body: Body,
        spec: runnerlocation.RunnerLocationSpec,
        api: dialect.Api,
        workspace: str,
        location: str,
    ) -> runtime.Result:
        status: Body = body.get("status") or {}
        what = f'runner location "{location}" of workspace "{workspace}"'
        if spec.deletion_policy == "Orphan":
            context.event(
                self.ctx, body, "Normal", "Orphaned", f"left {what} in RunWhen (deletionPolicy Orphan)"
            )
            return runtime.Result(finalized=True)
        if not status.get("workspace"):
            return runtime.Result(finalized=True)  # nothing was registered by this object
        cid = context.connection_id(body, spec.connection_ref)
        removed: list[str] = []
        try:
            found = dialect.location_runners(await api.runners(workspace), workspace, location)
            ids = [r.id for r in found]
            if status.get("runnerId") and status["runnerId"] not in ids:
                ids.append(str(status["runnerId"]))  # ours; a listing may lag
            for runner_id in ids:
                try:
                    await api.remove_runner(workspace, runner_id)
                except errors.NotFoundError:
                    continue
                removed.append(f"runner {runner_id}")
            disable = status.get("locationEnabled") and self._may_disable(body, spec, location)
            if disable and await self._change_locations(
                api,
                cid,
                workspace,
                0.0,
                lambda current: [c for c in current if c != location] if location in current else None,
            ):
                removed.append("the location from the enabled locations")
        except errors.NotFoundError:
            pass  # the workspace is gone, and everything in it
        except errors.RunWhenError as exc:
            await self._report(body, failure=api_failure(exc, f"deleting {what}"))
            return runtime.Result(error=True)
        message = f"deleted {what}: removed {' and '.join(removed)}" if removed else f"deleted {what}"
        context.event(self.ctx, body, "Normal", "Deleted", message)
        return runtime.Result(finalized=True)

    def _may_disable(self, body: Body, spec: runnerlocation.RunnerLocationSpec, location: str) -> bool:
        """Not when the Workspace's own spec lists the location: the Workspace would add it back."""
        if spec.workspace_ref is None:
            return False
        parent = self.ctx.latest(
            context.KIND_WORKSPACE, body["metadata"]["namespace"], spec.workspace_ref.name
        )
        listed = ((parent or {}).get("spec") or {}).get("enabledLocations") or []
        return location not in listed

    # -- status ------------------------------------------------------------------------------
    async def _report(
        self,
        body: Body,
        *,
        failure: Failure | None = None,
        ready: engine.ConditionState | None = None,
        extra: Body | None = None,
        events: list[engine.Event] | None = None,
    ) -> Body:
        status: Body = body.get("status") or {}
        generation = body["metadata"].get("generation")
        old = context.condition_index(status)
        conditions = list(status.get("conditions") or [])
        if failure is not None:
            if failure.ready:
                ready = engine.ConditionState("False", failure.reason, failure.message)
            synced = engine.ConditionState("False", failure.reason, failure.message)
        else:
            synced = engine.ConditionState("True", engine.REASON_SUCCESS, "the Secrets are written")
        if ready is not None:
            conditions = context.set_condition(
                conditions, common.CONDITION_READY, ready.status, ready.reason, ready.message, generation
            )
        conditions = context.set_condition(
            conditions, common.CONDITION_SYNCED, synced.status, synced.reason, synced.message, generation
        )
        conditions = managed.progress_conditions(conditions, generation)
        desired: Body = {"observedGeneration": generation, "conditions": conditions, **(extra or {})}
        patch = context.status_patch(status, desired)
        if patch and (events or "conditions" in patch):
            desired["lastSyncTime"] = context.now()
        updated = await context.write_status(self.ctx, self.kind, self.plural, body, desired, final=True)
        for event in events or []:
            context.event(self.ctx, updated, event.type, event.reason, event.message)
        was = old.get(common.CONDITION_READY) or {}
        if (
            ready is not None
            and ready.status != was.get("status")
            and (ready.status == "True" or was.get("status") == "True")
        ):
            if ready.status == "True":
                context.event(self.ctx, updated, "Normal", REASON_RUNNER_ONLINE, ready.message)
            else:
                context.event(self.ctx, updated, "Warning", ready.reason, ready.message)
        if (
            failure is not None
            and failure.event
            and not context.same_complaint(old.get(common.CONDITION_SYNCED), failure.reason, failure.message)
        ):
            context.event(self.ctx, updated, "Warning", failure.reason, failure.message)
        return updated


class _During(Exception):
    """A RunWhen error of one step, with what the step was doing."""

    def __init__(self, cause: errors.RunWhenError, doing: str) -> None:
        super().__init__(doing)
        self.cause, self.doing = cause, doing


def dump_upload_info(info: dialect.UploadInfo) -> str:
    """``uploadInfo.yaml`` as the workspace builder reads it."""
    return yaml.safe_dump(info.document(), sort_keys=True, default_flow_style=False)
