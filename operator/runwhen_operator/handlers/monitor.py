"""The Workspace health timer: the workspace's health, status flags and open issues mirrored into status.

It runs per Workspace at `spec.monitoring.interval` (jittered) and writes only when something it
mirrors changed: `health.checkedAt` records when the current health was first seen, not every
check, so a quiet workspace costs three reads per interval and no writes. What the health is built
from is the dialect's (the documented `/health`; on the platform `/status` and the runners). An
unreachable API turns health Unknown with the reason; Ready is left alone (it speaks of the sync,
not of the API's mood).
"""

from __future__ import annotations

import logging
from typing import Any

from runwhen_operator.api import common, kinds
from runwhen_operator.handlers import context, kube, runtime
from runwhen_operator.runwhen import errors

log = logging.getLogger("runwhen_operator.monitor")

PLURAL = kinds.by_kind(context.KIND_WORKSPACE).plural

Body = dict[str, Any]
SEVERITY_NAMES = {1: "critical", 2: "major", 3: "minor", 4: "warning"}
STATES = {"healthy": "Healthy", "degraded": "Degraded", "unhealthy": "Unhealthy"}
MAX_DETAILS = 20


class WorkspaceMonitor:
    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx

    async def forget(self, key: runtime.Key) -> None:
        """The Workspace is being deleted: its health timer is gone, so are its series."""
        self.ctx.metrics.forget_workspace(key.namespace, key.name)

    async def __call__(self, key: runtime.Key) -> runtime.Result:
        ctx = self.ctx
        body = ctx.latest(context.KIND_WORKSPACE, key.namespace, key.name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            ctx.metrics.forget_workspace(key.namespace, key.name)
            return runtime.Result()
        if context.is_paused(body):
            return runtime.Result()
        spec = body.get("spec") or {}
        monitoring = spec.get("monitoring") or {}
        try:
            interval = common.parse_duration(str(monitoring.get("interval") or "60s"))
        except ValueError:
            interval = 60.0
        status: Body = body.get("status") or {}
        remote = status.get("remoteName")
        cid = context.connection_id(body, spec.get("connectionRef") or {})
        conn = ctx.registry.get(cid)
        if not remote or conn is None or not conn.ready or conn.api is None:
            # Not ours yet, or no usable connection: the reconcile pass says why; look again later.
            return runtime.Result(after=runtime.jitter(interval))

        issues_cfg = monitoring.get("issues") or {}
        max_listed = int(issues_cfg.get("maxListed", 10))
        max_severity = int(issues_cfg.get("maxSeverity", 4))
        desired: Body
        try:
            report = await conn.api.workspace_report(
                remote,
                include_details=bool(monitoring.get("includeDetails", True)),
                include_metrics=bool(monitoring.get("includeMetrics", False)),
            )
            health, flags = report.health, report.flags
            issues = await conn.api.open_issues(remote, max_severity=max_severity)
        except errors.RunWhenError as exc:
            desired = {
                "health": self._health(
                    status, "Unknown", "Unreachable", f"could not read health: {exc}", None, None
                )
            }
            await _write(ctx, body, desired)
            ctx.metrics.workspace_health(key.namespace, key.name, "Unknown", {})
            return runtime.Result(after=runtime.jitter(min(interval, 60.0)), error=True)

        state = STATES.get(health.status.lower(), "Unknown")
        details = (
            [
                {
                    "component": d.component,
                    "status": d.status,
                    "message": context.truncate(d.message or "", 256),
                }
                for d in (health.details or [])[:MAX_DETAILS]
            ]
            if bool(monitoring.get("includeDetails", True))
            else None
        )
        metrics = (
            dict(health.metrics) if health.metrics and bool(monitoring.get("includeMetrics", False)) else None
        )
        unhealthy = [d for d in details or [] if d["status"].lower() != "healthy"]
        message = "; ".join(
            f"{d['component']}: {d['status']}" + (f" ({d['message']})" if d["message"] else "")
            for d in unhealthy
        )
        reason = {"Healthy": "Healthy", "Degraded": "Degraded", "Unhealthy": "Unhealthy"}.get(
            state, "Unknown"
        )
        by_severity = dict.fromkeys(SEVERITY_NAMES.values(), 0)
        for issue in issues:
            name = SEVERITY_NAMES.get(int(issue.severity)) if issue.severity is not None else None
            if name:
                by_severity[name] += 1
        # An issue without a severity ranks after every one with one.
        ranked = sorted(issues, key=lambda i: (int(i.severity or 5), str(i.open_since or ""), int(i.id)))
        top = []
        for issue in ranked[:max_listed]:
            entry: Body = {
                "id": int(issue.id),
                "title": context.truncate(issue.title or "", 256),
            }
            if issue.severity is not None:
                entry["severity"] = int(issue.severity)
            if issue.slx_name:
                entry["slxName"] = issue.slx_name
            if issue.open_since:
                entry["openSince"] = issue.open_since.strftime("%Y-%m-%dT%H:%M:%SZ")
            top.append(entry)
        desired = {
            "health": self._health(
                status, state, reason, message or f"workspace is {state.lower()}", details, metrics
            ),
            "workspaceStatus": {"workspace": bool(flags.workspace), "sync": bool(flags.sync)},
            "openIssues": {"count": len(issues), "bySeverity": by_severity, "top": top},
        }
        if not await _write(ctx, body, desired):
            return runtime.Result()
        ctx.metrics.workspace_health(key.namespace, key.name, state, by_severity)
        return runtime.Result(after=runtime.jitter(interval))

    @staticmethod
    def _health(
        status: Body, state: str, reason: str, message: str, details: list[Body] | None, metrics: Body | None
    ) -> Body:
        health: Body = {"state": state, "reason": reason, "message": context.truncate(message, 1024)}
        if details is not None:
            health["details"] = details
        if metrics is not None:
            health["metrics"] = metrics
        old = dict(status.get("health") or {})
        if state == "Unknown" and old.get("state") == state and old.get("reason") == reason:
            health["message"] = old.get("message") or health["message"]  # the outage's first words stand
        checked_at = old.pop("checkedAt", None)
        health["checkedAt"] = checked_at if old == health and checked_at else context.now()
        return health


async def _write(ctx: context.Context, body: Body, desired: Body) -> bool:
    """Patch the mirrored fields; False when the Workspace went away during the check."""
    try:
        await context.write_status(ctx, context.KIND_WORKSPACE, PLURAL, body, desired)
    except kube.Gone:
        return False
    return True
