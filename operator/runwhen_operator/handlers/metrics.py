"""Prometheus metrics of the operator (prometheus_client, its own registry)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from runwhen_operator.handlers import context

SEVERITIES = ("critical", "major", "minor", "warning")
HEALTH_STATES = ("Healthy", "Degraded", "Unhealthy", "Unknown")


class PrometheusMetrics(context.Metrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "runwhen_operator_reconciles",
            "Reconcile passes by kind and result.",
            ["kind", "result"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "runwhen_operator_reconcile_duration_seconds",
            "Duration of reconcile passes.",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.requests = Counter(
            "runwhen_operator_api_requests",
            "RunWhen API requests by method, path template and status (`error` for no response).",
            ["method", "path", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "runwhen_operator_api_request_duration_seconds",
            "RunWhen API request latency.",
            ["method", "path"],
            registry=r,
        )
        self.retries = Counter(
            "runwhen_operator_api_retries",
            "RunWhen API retries by reason.",
            ["method", "path", "reason"],
            registry=r,
        )
        self.drift = Counter(
            "runwhen_operator_drift_corrections", "Remote drift corrected, by kind.", ["kind"], registry=r
        )
        self.connection = Gauge(
            "runwhen_operator_connection_ready",
            "1 when the connection's credentials are verified.",
            ["kind", "namespace", "name"],
            registry=r,
        )
        self.health = Gauge(
            "runwhen_operator_workspace_health",
            "1 for the workspace's current health state.",
            ["namespace", "workspace", "state"],
            registry=r,
        )
        self.issues = Gauge(
            "runwhen_operator_workspace_open_issues",
            "Open issues of a workspace by severity.",
            ["namespace", "workspace", "severity"],
            registry=r,
        )

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    # -- context.Metrics ---------------------------------------------------------------------
    def reconciled(self, kind: str, result: str, seconds: float) -> None:
        self.reconciles.labels(kind, result).inc()
        self.reconcile_seconds.labels(kind).observe(seconds)

    def drift_corrected(self, kind: str) -> None:
        self.drift.labels(kind).inc()

    def connection_ready(self, kind: str, namespace: str, name: str, ready: bool) -> None:
        self.connection.labels(kind, namespace, name).set(1 if ready else 0)

    def workspace_health(self, namespace: str, name: str, state: str, open_issues: dict[str, int]) -> None:
        for s in HEALTH_STATES:
            self.health.labels(namespace, name, s).set(1 if s == state else 0)
        for severity in SEVERITIES:
            if severity in open_issues:
                self.issues.labels(namespace, name, severity).set(open_issues[severity])

    def forget_connection(self, kind: str, namespace: str, name: str) -> None:
        with contextlib.suppress(KeyError):
            self.connection.remove(kind, namespace, name)

    def forget_workspace(self, namespace: str, name: str) -> None:
        for gauge, values in ((self.health, HEALTH_STATES), (self.issues, SEVERITIES)):
            for value in values:
                with contextlib.suppress(KeyError):
                    gauge.remove(namespace, name, value)

    # -- RunWhen client hooks ----------------------------------------------------------------
    def on_request(
        self, method: str, path_template: str, status: int | None, duration_s: float, attempt: int
    ) -> None:
        self.requests.labels(method, path_template, str(status) if status is not None else "error").inc()
        self.request_seconds.labels(method, path_template).observe(duration_s)

    def on_retry(self, method: str, path_template: str, reason: str) -> None:
        self.retries.labels(method, path_template, reason).inc()
