"""ClusterRunWhenConnection and RunWhenConnection: credentials from a Secret, verified by logging in.

The Secret is re-read at every check (a read, never a write); the client is rebuilt and the login
repeated only when the Secret, URL or settings changed, or after RunWhen refused the credentials.
Dependents (the objects using the connection, found with a Kopf index) are woken whenever the
connection's readiness changes, so they recover the moment it is fixed.
"""

from __future__ import annotations

from typing import Any

from runwhen_operator.api import common, connection, kinds
from runwhen_operator.handlers import context, kube, runtime
from runwhen_operator.reconcile import connections
from runwhen_operator.runwhen import dialect

DEPENDENT_KINDS = kinds.USES_CONNECTION

#: While a deleted connection still has users, it looks again this often (besides being woken).
IN_USE_RECHECK = 5.0


class ConnectionReconciler:
    def __init__(self, ctx: context.Context, kind: str) -> None:
        self.ctx = ctx
        self.kind = kind
        self.plural = kinds.by_kind(kind).plural
        self.spec_model: Any = (
            connection.ClusterConnectionSpec
            if kind == context.KIND_CLUSTER_CONNECTION
            else connection.ConnectionSpec
        )

    async def __call__(self, key: runtime.Key) -> runtime.Result:
        ctx = self.ctx
        body = ctx.latest(self.kind, key.namespace, key.name)
        cid: connections.ConnectionId = (self.kind, key.namespace, key.name)
        if body is None:
            await self.forget(key)
            return runtime.Result(finalized=True)
        if body["metadata"].get("deletionTimestamp"):
            return await self._deleting(body, key)
        spec = self.spec_model.model_validate(body.get("spec") or {})
        secret_ns = (
            spec.credentials_secret_ref.namespace
            if self.kind == context.KIND_CLUSTER_CONNECTION
            else key.namespace
        ) or key.namespace
        secret_name = spec.credentials_secret_ref.name
        previous = ctx.registry.get(cid)
        was_ready = previous.ready if previous else None
        status: dict[str, Any]
        try:
            data = await ctx.kube.read_secret(secret_ns, secret_name)
            settings = connections.Settings(
                url=spec.url,
                secret_data=data,
                ca_bundle=spec.ca_bundle,
                requests_per_second=spec.rate_limit.requests_per_second,
                burst=spec.rate_limit.burst,
                timeout_seconds=float(spec.timeout_seconds),
                dialect=dialect.parse_dialect(spec.api_dialect),
            )
            conn, rebuilt = await ctx.registry.ensure(cid, settings)
        except kube.Gone:
            # The client (and the credentials it read) is kept, not usable but for finishing the
            # deletions of the objects that use it: a namespace deleted with its Secret and its
            # objects must not leave them unable to delete what they made.
            message = f"Secret {secret_ns}/{secret_name} not found"
            ctx.registry.retain_for_deletions(cid, "SecretNotFound", message)
            status = self._status(body, "False", "SecretNotFound", message)
            return await self._finish(body, cid, status, was_ready, ready=False)
        except kube.Denied:
            # Typically a namespaced install whose RBAC covers only its own namespace's Secrets.
            await ctx.registry.remove(cid)
            message = (
                f"the operator may not read Secret {secret_ns}/{secret_name}: its RBAC does not cover that "
                "namespace (keep the credentials in the operator's namespace, or grant get on it)"
            )
            status = self._status(body, "False", "SecretNotReadable", message)
            return await self._finish(body, cid, status, was_ready, ready=False)
        except connections.CredentialsError as exc:
            await ctx.registry.remove(cid)
            message = f"Secret {secret_ns}/{secret_name}: {exc}"
            status = self._status(body, "False", "InvalidSecret", message)
            return await self._finish(body, cid, status, was_ready, ready=False)
        except ValueError as exc:
            # A spec the client refuses (a URL with a query, a CA bundle that is not PEM).
            await ctx.registry.remove(cid)
            status = self._status(body, "False", "InvalidConnection", f"the connection is unusable: {exc}")
            return await self._finish(body, cid, status, was_ready, ready=False)

        verified_now = False
        if rebuilt or not conn.ready or not conn.verified or conn.recheck:
            conn = await ctx.registry.verify(cid)
            verified_now = True
        status = self._status(
            body, "True" if conn.ready else "False", conn.reason, conn.message, auth_mode=conn.auth_mode
        )
        if conn.ready and conn.api is not None:
            status["apiDialect"] = conn.api.api_dialect.value
        if verified_now and conn.ready:
            status["lastVerifiedTime"] = context.now()
        return await self._finish(body, cid, status, was_ready, ready=conn.ready)

    def _status(
        self, body: dict[str, Any], ready: str, reason: str, message: str, *, auth_mode: str | None = None
    ) -> dict[str, Any]:
        generation = body["metadata"].get("generation")
        current = body.get("status") or {}
        conditions = context.set_condition(
            list(current.get("conditions") or []), common.CONDITION_READY, ready, reason, message, generation
        )
        conditions = context.progress(conditions, ready, reason, message, generation)
        status: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
        if auth_mode:
            status["authMode"] = auth_mode
        return status

    async def _finish(
        self,
        body: dict[str, Any],
        cid: connections.ConnectionId,
        status: dict[str, Any],
        was_ready: bool | None,
        *,
        ready: bool,
    ) -> runtime.Result:
        ctx = self.ctx
        old = context.condition_index(body.get("status") or {}).get(common.CONDITION_READY)
        new = context.condition_index(status).get(common.CONDITION_READY, {})
        await context.write_status(ctx, self.kind, self.plural, body, status, final=True)
        ctx.metrics.connection_ready(self.kind, cid[1], cid[2], ready)
        changed = (
            old is None or old.get("status") != new.get("status") or old.get("reason") != new.get("reason")
        )
        if changed:
            kind = "Normal" if ready else "Warning"
            context.event(ctx, body, kind, str(new.get("reason")), str(new.get("message")))
        if was_ready != ready:
            self._queue_dependents(cid)
        interval = ctx.options.connection_check_interval
        if ready:
            return runtime.Result(after=runtime.jitter(interval))
        return runtime.Result(after=min(interval, 30.0), error=True)

    def users(self, cid: connections.ConnectionId) -> list[str]:
        """The objects that still use the connection (deleted ones stay until their finalizer goes)."""
        return [
            f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
            for kind in DEPENDENT_KINDS
            for namespace, name in self.ctx.using_connection(kind, cid)
        ]

    async def _deleting(self, body: dict[str, Any], key: runtime.Key) -> runtime.Result:
        """A connection is deleted only once no object uses it: until then its client (and the
        credentials it read, even if their Secret is gone) stays, so that those objects can still
        finish their own deletions (a namespace deleted with everything in it)."""
        cid: connections.ConnectionId = key.object
        users = self.users(cid)
        if not users:
            await self.forget(key)
            return runtime.Result(finalized=True)
        shown = ", ".join(sorted(users)[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        message = f"waiting for {len(users)} object(s) that use this connection to be deleted: {shown}"
        # Ready stays as the last check left it; Reconciling says why the object is still here.
        conditions = context.progress(
            list((body.get("status") or {}).get("conditions") or []),
            "False",
            "InUse",
            message,
            body["metadata"].get("generation"),
            stalled=False,
        )
        status: dict[str, Any] = {"conditions": conditions}
        await context.write_status(self.ctx, self.kind, self.plural, body, status, final=True)
        return runtime.Result(after=IN_USE_RECHECK)

    async def forget(self, key: runtime.Key) -> None:
        """The connection is gone (deleted): its client closes, its dependents learn it at once.
        While objects still use it (its deletion waits for them), the client stays for them."""
        cid: connections.ConnectionId = key.object
        if self.users(cid):
            return  # its deletion waits for them (``_deleting`` forgets it once they are gone)
        await self.ctx.registry.remove(cid)
        self.ctx.metrics.forget_connection(*cid)
        self._queue_dependents(cid)

    def _queue_dependents(self, cid: connections.ConnectionId) -> None:
        for kind in DEPENDENT_KINDS:
            for namespace, name in self.ctx.using_connection(kind, cid):
                self.ctx.slots.wake(kind, namespace, name)
