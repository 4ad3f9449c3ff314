"""The operator's Prometheus metrics and JSON logs, read from a real operator process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.operator import OperatorProcess, RunWhenEnv, wait_for

pytestmark = pytest.mark.integration

FAST = {"platform.runwhen.com/poll-interval": "2s"}
Labels = dict[str, str]


class Scrape:
    """One scrape of /metrics: samples by name, queried by a subset of their labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, Labels, float]] = [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def select(self, metric: str, /, **labels: str) -> list[tuple[Labels, float]]:
        return [
            (lab, value)
            for n, lab, value in self.samples
            if n == metric and all(lab.get(k) == v for k, v in labels.items())
        ]

    def total(self, metric: str, /, **labels: str) -> float:
        return sum(value for _, value in self.select(metric, **labels))

    def value(self, metric: str, /, **labels: str) -> float | None:
        found = self.select(metric, **labels)
        if len(found) > 1:
            raise AssertionError(f"{metric} {labels} matches {len(found)} series: {found}")
        return found[0][1] if found else None

    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}


def scrape(proc: OperatorProcess) -> Scrape:
    return Scrape(proc.metrics())


def _status(rw: RunWhenEnv, name: str) -> dict:
    return rw.get("Workspace", name).get("status") or {}


def test_metrics_after_a_workspace_with_an_issue_and_drift(rw: RunWhenEnv) -> None:
    proc = rw.start_operator("--connection-check-interval", "2s")
    rw.apply(
        "Workspace",
        "metered",
        {"displayName": "Metered", "deletionPolicy": "Delete", "monitoring": {"interval": "2s"}},
        annotations=FAST,
    )
    rw.wait_condition("Workspace", "metered")

    # An open critical issue and a degraded workspace, mirrored by the monitor.
    rw.emulator.open_issue("metered", "Pods crash-looping", 1, "k8s-health")
    rw.emulator.open_issue("metered", "Disk filling", 3, "disk")
    rw.emulator.set_runners("metered", [{"name": "loc-1", "health": "stale"}])
    wait_for(
        lambda: (
            (_status(rw, "metered").get("openIssues") or {}).get("count") == 2
            and (_status(rw, "metered").get("health") or {}).get("state") == "Degraded"
        ),
        30,
        "the issues and Degraded health in status",
    )

    # Drift made behind the operator's back is corrected and counted.
    rw.third_party.patch_workspace("metered", displayName="drifted")
    wait_for(lambda: (rw.remote_workspace("metered") or {}).get("displayName") == "Metered", 30, "drift fix")

    # Server errors on reads: the client retries, and says so.
    rw.emulator.set_faults(error_rate=0.5, seed=7)
    before = scrape(proc).total("runwhen_operator_api_retries_total")
    wait_for(lambda: scrape(proc).total("runwhen_operator_api_retries_total") > before, 30, "a counted retry")
    rw.emulator.clear_faults()

    last: list[Scrape] = []

    def settled() -> bool:
        m = scrape(proc)
        last[:] = [m]
        return (
            m.value("runwhen_operator_workspace_open_issues", workspace="metered", severity="critical") == 1
            and m.value("runwhen_operator_workspace_health", workspace="metered", state="Degraded") == 1
            and m.total("runwhen_operator_drift_corrections_total", kind="Workspace") >= 1
        )

    wait_for(settled, 30, lambda: f"the gauges to follow the status:\n{proc.metrics()}")
    m = last[0]  # the scrape that showed them settled: every assertion below reads that one
    ns = rw.namespace

    # Reconciles by kind and result; the duration histogram saw every one of them.
    ok = m.value("runwhen_operator_reconciles_total", kind="Workspace", result="ok")
    assert ok is not None
    assert ok >= 2
    monitor_passes = m.total("runwhen_operator_reconciles_total", kind="Workspace/monitor")
    assert monitor_passes >= 1
    for kind in ("Workspace", "Workspace/monitor", "ClusterRunWhenConnection"):
        passes = m.total("runwhen_operator_reconciles_total", kind=kind)
        observed = m.value("runwhen_operator_reconcile_duration_seconds_count", kind=kind)
        assert observed is not None
        assert passes >= 1
        # Read in one scrape, but the histogram and the counter are updated in the same call, so a
        # pass finishing between the two lines of the exposition is the only possible difference.
        assert passes - 1 <= observed <= passes + 1, (kind, passes, observed)
        inf = m.value("runwhen_operator_reconcile_duration_seconds_bucket", kind=kind, le="+Inf")
        assert inf == observed

    # RunWhen requests by method, path template and status: one create, the lists, the PATCHes (the
    # platform sets a new workspace's fields with a PATCH after the create, then one fixes the drift).
    create = "/api/v3/workspaces"
    assert m.value("runwhen_operator_api_requests_total", method="POST", path=create, status="201") == 1
    assert m.total("runwhen_operator_api_requests_total", method="GET", path=create, status="200") >= 2
    patch = "/api/v3/workspaces/{workspace_name}"
    assert m.total("runwhen_operator_api_requests_total", method="PATCH", path=patch, status="200") == 2
    health = "/api/v3/workspaces/{workspace_name}/runners"
    assert m.total("runwhen_operator_api_requests_total", method="GET", path=health, status="200") >= 1
    # Every 5xx the emulator answered shows up as a status, and the retries name the status.
    errors_seen = sum(
        m.total("runwhen_operator_api_requests_total", status=code) for code in ("500", "502", "503")
    )
    assert errors_seen >= 1
    reasons = {lab["reason"] for lab, _ in m.select("runwhen_operator_api_retries_total")}
    assert reasons <= {"500", "502", "503"}, reasons
    # Every request is timed too (a request finishing during the scrape may be in one and not yet the
    # other: allow the few that can be in flight at once).
    timed = m.total("runwhen_operator_api_request_duration_seconds_count")
    assert -3 <= timed - m.total("runwhen_operator_api_requests_total") <= 3
    # No path in the labels may carry a concrete name or id: templates only.
    paths = {lab["path"] for lab, _ in m.select("runwhen_operator_api_requests_total")}
    assert all("metered" not in p for p in paths), paths

    assert m.value("runwhen_operator_drift_corrections_total", kind="Workspace") == 1
    assert (
        m.value(
            "runwhen_operator_connection_ready", kind="ClusterRunWhenConnection", namespace="", name="default"
        )
        == 1
    )
    states = {
        lab["state"]: value
        for lab, value in m.select("runwhen_operator_workspace_health", namespace=ns, workspace="metered")
    }
    assert states == {"Healthy": 0, "Degraded": 1, "Unhealthy": 0, "Unknown": 0}
    issues = {
        lab["severity"]: value
        for lab, value in m.select(
            "runwhen_operator_workspace_open_issues", namespace=ns, workspace="metered"
        )
    }
    assert issues == {"critical": 1, "major": 0, "minor": 1, "warning": 0}

    # Deleting the workspace removes its series: no gauge outlives the object it describes, also when
    # the next health check is far away.
    rw.apply(
        "Workspace",
        "metered",
        {"displayName": "Metered", "deletionPolicy": "Delete", "monitoring": {"interval": "1h"}},
        annotations=FAST,
    )

    def monitor_quiet() -> bool:
        """No health check for longer than the old interval (2 s, jittered): the new one is in force."""
        before = scrape(proc).total("runwhen_operator_reconciles_total", kind="Workspace/monitor")
        time.sleep(4)
        return scrape(proc).total("runwhen_operator_reconciles_total", kind="Workspace/monitor") == before

    wait_for(monitor_quiet, 30, "the health checks to follow the 1h interval")
    assert scrape(proc).total("runwhen_operator_reconciles_total", kind="Workspace/monitor") > monitor_passes
    assert scrape(proc).select("runwhen_operator_workspace_health", workspace="metered")
    rw.delete("Workspace", "metered")
    rw.wait_gone("Workspace", "metered")
    wait_for(
        lambda: (
            not scrape(proc).select("runwhen_operator_workspace_health", workspace="metered")
            and not scrape(proc).select("runwhen_operator_workspace_open_issues", workspace="metered")
        ),
        15,
        lambda: f"the workspace's series removed:\n{proc.metrics()}",
    )


def test_connection_gauge_follows_the_credentials(rw: RunWhenEnv) -> None:
    proc = rw.start_operator("--connection-check-interval", "1s")

    def ready_value() -> float | None:
        return scrape(proc).value(
            "runwhen_operator_connection_ready", kind="ClusterRunWhenConnection", namespace="", name="default"
        )

    wait_for(lambda: ready_value() == 1, 30, "the connection Ready in the metrics")
    rw.secret(rw.secret_name, {"username": rw.emulator.username, "password": "wrong"})
    wait_for(lambda: ready_value() == 0, 30, "the connection not Ready in the metrics")
    rw.secret(rw.secret_name, {"username": rw.emulator.username, "password": rw.emulator.password})
    wait_for(lambda: ready_value() == 1, 30, "the connection Ready again")


def _json_lines(lines: Iterable[str]) -> list[dict]:
    entries = []
    for line in lines:
        if not line.strip() or line.startswith("=== start "):  # the harness's own marker
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"not a JSON line: {line!r}") from exc
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def test_json_logs(rw: RunWhenEnv) -> None:
    proc = rw.start_operator("--log-format", "json")
    rw.apply("Workspace", "logged", {"displayName": "Logged"}, annotations=FAST)
    rw.wait_condition("Workspace", "logged")
    # A rejected spec makes the operator log a warning too.
    rw.emulator.set_faults(error_rate=1.0)
    rw.annotate("Workspace", "logged", {"platform.runwhen.com/reconcile-requested-at": "1"})
    rw.wait_condition("Workspace", "logged", "Synced", "False", reason="ReconcileError")
    rw.emulator.clear_faults()
    proc.stop()

    entries = _json_lines(proc.logs().splitlines())
    assert len(entries) >= 5
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
        assert entry["level"] in {"debug", "info", "warning", "error", "critical"}, entry
    loggers = {e["logger"] for e in entries}
    assert any(name.startswith("runwhen_operator") for name in loggers), loggers
    assert any("retrying" in e["message"] for e in entries)
    assert not any("Traceback" in e["message"] for e in entries)
