"""The operator end to end: initial sync, the direct-script baseline, steady state, a restart.

Everything runs in one dialect of the RunWhen API at a time: the emulator speaks it (`--dialect`)
and the bench connection pins it (`spec.apiDialect`), so no dialect probe is in the counts.

For each size N (Workflows + Personas, half each, spread over 10 to 50 Workspaces) on a fresh
control plane and emulator:

1. the direct script creates the same remote objects with the same concurrency and rate limit;
2. the emulator is reset, the operator starts, and the Workspaces, Workflows and Personas are
   created in Kubernetes; the clock runs from the first create until every object is Ready;
3. apply-to-remote latency is the emulator's createdAt of each remote object minus the moment its
   CR was sent to kube-apiserver; Kubernetes writes are the watch's MODIFIED events plus Events.

The steady-state run (N = 1,000, poll interval 10 s) then measures an idle period and an operator
restart. Every wait is bounded; a size that does not finish within the sync deadline is reported
with how far it got.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from bench import direct
from bench.harness import (
    CONNECTION_REF,
    GROUP,
    NAMESPACE,
    OUT,
    PLURALS,
    TOKEN,
    VERSION,
    RssSampler,
    Stack,
    Watcher,
    count_events,
    dump,
    log,
    machine_busy_seconds,
    parse_time,
)

SIZES = (100, 1_000, 5_000)
WORKERS = 16
RATE, BURST = 200.0, 400
SYNC_DEADLINE = 900.0  # seconds: a size that takes longer is reported as incomplete
CREATE_THREADS = 8
STEADY_N = 1_000
STEADY_POLL = "10s"
STEADY_WINDOW = 60.0
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
KIND_COLLECTIONS = (("Workspace", "workspaces"), ("Workflow", "workflows"), ("Persona", "personas"))


def workspaces_for(n: int) -> int:
    return max(10, min(50, n // 50))  # 100 -> 10, 1,000 -> 20, 5,000 -> 50


def definition(i: int, title: str = "Check pods") -> dict[str, Any]:
    return {
        "fromActivities": [
            {
                "name": "on-alert",
                "match": {"activityVerbs": ["alert"], "slxs": [f"slx-{i}"]},
                "actions": [{"tasks": {"slx": f"slx-{i}", "titles": [title], "sessionTTL": "20m"}}],
            }
        ]
    }


class Plan:
    """The objects of one run: Kubernetes bodies, and the same objects as direct POST bodies."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.w = workspaces_for(n)
        self.workspaces = [f"ws-{j:02d}" for j in range(self.w)]
        self.crs: list[tuple[str, dict[str, Any]]] = []
        self.direct_workspaces: list[dict[str, Any]] = []
        self.direct_children: list[tuple[str, str, dict[str, Any]]] = []
        for ws in self.workspaces:
            spec = {"connectionRef": CONNECTION_REF, "displayName": ws.upper(), "deletionPolicy": "Delete"}
            self.crs.append(("Workspace", self._body("Workspace", ws, spec)))
            self.direct_workspaces.append({"name": ws, "displayName": ws.upper()})
        for i in range(n):
            ws = self.workspaces[(i // 2) % self.w]  # each workspace gets workflows and personas
            parent = {"connectionRef": CONNECTION_REF, "workspaceRef": {"name": ws}}
            if i % 2 == 0:
                name = f"wf-{i:05d}"
                spec = {**parent, "definition": definition(i)}
                self.crs.append(("Workflow", self._body("Workflow", name, spec)))
                self.direct_children.append((ws, "workflows", {"name": name, "definition": definition(i)}))
            else:
                name = f"p-{i:05d}"
                spec = {**parent, "fullName": f"Persona {i}"}
                self.crs.append(("Persona", self._body("Persona", name, spec)))
                self.direct_children.append((ws, "personas", {"name": name, "fullName": f"Persona {i}"}))

    @staticmethod
    def _body(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec,
        }

    @property
    def total(self) -> int:
        return len(self.crs)


class Creator:
    """Creates the plan's CRs from a thread pool, recording when each create was sent."""

    def __init__(self, api: client.ApiClient, plan: Plan) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.plan = plan
        self.sent: dict[tuple[str, str], float] = {}
        self.started = 0.0
        self.finished = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Creator:
        self.started = time.time()
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _create(self, item: tuple[str, dict[str, Any]]) -> None:
        kind, body = item
        self.sent[(kind, body["metadata"]["name"])] = time.time()
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURALS[kind], body)

    def _run(self) -> None:
        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(self._create, self.plan.crs))
        self.finished = time.time()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _reconciles(metrics_text: str) -> Counter[str]:
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "runwhen_operator_reconciles_total":
                found[f"{sample.labels['kind']}/{sample.labels['result']}"] += int(sample.value)
    return found


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
            out[name] = times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            out[name] = 0.0
    return out


#: The last path segment of the templates that list a collection, in both dialects: documented
#: `/api/v3/workspaces/`, `/api/v3/workspaces/{ws}/workflows/` (counted without the trailing slash),
#: platform `/api/v3/workspaces`, `/api/v4/workspaces/{ws}/workflows`, `/api/v4/.../personas`.
LIST_SEGMENTS = ("workspaces", "workflows", "personas")
#: The workspace health mirror: documented `health`, `status`, `issues`; platform `status`,
#: `runners`, `issues`.
MONITOR_SEGMENTS = ("health", "status", "runners", "issues")
#: Logins (`/api/v3/token/`, `/api/v3/token/refresh/`): neither reads nor writes of objects.
LOGIN_SEGMENTS = ("token", "refresh")


def classify(key: str) -> str:
    """A request counter key (`METHOD template`) as list, monitor, read (other GETs), login, create
    (a documented collection POST or a platform create/upsert) or write (PUT, PATCH, DELETE, other
    POSTs)."""
    method, _, template = key.partition(" ")
    segments = [s for s in template.split("/") if s]
    last = segments[-1] if segments else ""
    if last in LOGIN_SEGMENTS and "workflows" not in segments:
        return "login"
    if method == "GET":
        if last in LIST_SEGMENTS:
            return "list"
        return "monitor" if last in MONITOR_SEGMENTS else "read"
    if method == "POST" and (last in LIST_SEGMENTS or last == "sync-typed"):
        return "create"
    return "write" if method in WRITE_METHODS else "other"


def _summarise_requests(counts: Counter[str]) -> dict[str, int]:
    by_class: Counter[str] = Counter()
    for key, value in counts.items():
        by_class[classify(key)] += value
    return {
        "total": sum(counts.values()),
        "reads": by_class["list"] + by_class["monitor"] + by_class["read"],
        "writes": by_class["create"] + by_class["write"],
        "creates": by_class["create"],
        "lists": by_class["list"],
        "monitor": by_class["monitor"],
        "other_reads": by_class["read"],
        "logins": by_class["login"],
    }


def sync_run(
    n: int,
    *,
    dialect: str = "platform",
    workers: int,
    rate: float,
    burst: int,
    poll: str = "5m",
    steady: bool = False,
) -> dict[str, Any]:
    plan = Plan(n)
    label = f"{dialect}-n{n}" + ("-steady" if steady else "")
    result: dict[str, Any] = {"n": n, "dialect": dialect, "workspaces": plan.w, "objects": plan.total}
    result.update({"workers": workers, "rate": rate, "burst": burst, "poll_interval": poll})
    with Stack(label, dialect) as stack:
        assert stack.api is not None
        result["kube_version"] = stack.kube_version
        if not steady:
            log(
                f"{dialect} N={n}: direct script, {plan.total} objects, concurrency {workers}, "
                f"{rate:g} rps/{burst}"
            )
            result["direct"] = direct.run(
                stack.emulator.url,
                TOKEN,
                plan.direct_workspaces,
                plan.direct_children,
                dialect=dialect,
                concurrency=workers,
                rate=rate,
                burst=burst,
            )
            log(f"{dialect} N={n}: direct {result['direct']}")
            stack.emulator.reset()

        stack.connect(rate, burst)
        operator = stack.start_operator(workers=workers, poll_interval=poll)
        watcher = Watcher(stack.api).start()
        time.sleep(1.0)  # the watches are established before the first create
        stack.emulator.reset_requests()
        pids = {
            "operator": operator.pid,
            "emulator": stack.emulator.pid,
            "kube-apiserver": stack.plane.pids["kube-apiserver"],
            "etcd": stack.plane.pids["etcd"],
            "bench": psutil.Process().pid,
        }
        cpu_before = _cpu_seconds(pids)
        busy_before = machine_busy_seconds()
        load_before = [round(x, 2) for x in os.getloadavg()]
        rss = RssSampler(operator.pid).start()
        log(f"{dialect} N={n}: creating {plan.total} objects in {plan.w} workspaces")
        creator = Creator(stack.api, plan).start()
        t0 = creator.started
        deadline = time.monotonic() + SYNC_DEADLINE
        last_log = time.monotonic()
        while watcher.ready_count() < plan.total and time.monotonic() < deadline:
            time.sleep(0.25)
            if time.monotonic() - last_log > 30:
                last_log = time.monotonic()
                log(
                    f"{dialect} N={n}: {watcher.ready_count()}/{plan.total} Ready after "
                    f"{time.time() - t0:.0f}s"
                )
        creator.join(60)
        complete = watcher.ready_count() >= plan.total
        done_at = max(watcher.first_ready.values()) if complete else time.time()
        seconds = done_at - t0
        cpu_after = _cpu_seconds(pids)
        busy = machine_busy_seconds() - busy_before
        counts = stack.emulator.requests()
        time.sleep(3.0)  # trailing writes (the health of just-Ready workspaces)
        peak_rss = rss.stop()
        modified = dict(watcher.modified)
        events = count_events(stack.api)
        state = stack.emulator.state()
        reconciles = _reconciles(operator.metrics())

        remote = stack.emulator.objects(state)
        remote_created = {key: parse_time(obj["createdAt"]) for key, obj in remote.items()}
        to_remote = sorted(
            remote_created[key] - sent for key, sent in creator.sent.items() if key in remote_created
        )
        to_ready = sorted(
            watcher.first_ready[key] - sent
            for key, sent in creator.sent.items()
            if key in watcher.first_ready
        )
        # Live remote objects, duplicates included (the platform would store a second workspace
        # under a suffixed name, the documented dialect a second child under the same name).
        live = [
            (kind, obj.get("workspace", ""), obj.get("shortName") or obj["name"])
            for kind, collection in KIND_COLLECTIONS
            for obj in state[collection]
            if not obj.get("deletedAt")
        ]
        planned = {(kind, name) for kind, name in creator.sent}
        expected = sum(1 for kind, _, name in set(live) if (kind, name) in planned)
        ready_n = watcher.ready_count()
        cpu = {k: round(cpu_after[k] - cpu_before[k], 1) for k in pids}
        result.update(
            {
                "complete": complete,
                "ready": ready_n,
                "seconds": round(seconds, 2),
                "create_seconds": round(creator.finished - t0, 2) if creator.finished else None,
                "objects_per_second": round(ready_n / seconds, 1),
                "remote_objects": len(live),
                "duplicates": len(live) - expected,
                "apply_to_remote_p50_s": round(percentile(to_remote, 50), 3),
                "apply_to_remote_p99_s": round(percentile(to_remote, 99), 3),
                "apply_to_ready_p50_s": round(percentile(to_ready, 50), 3),
                "apply_to_ready_p99_s": round(percentile(to_ready, 99), 3),
                "runwhen_requests": _summarise_requests(counts),
                "runwhen_requests_per_object": round(sum(counts.values()) / plan.total, 2),
                "runwhen_requests_by_template": dict(counts.most_common()),
                "kube_status_and_metadata_writes": modified,
                "kube_events": dict(events),
                # Finalizer and status writes per object of each kind (the Events come beside them).
                "kube_status_and_metadata_writes_per_object_by_kind": {
                    kind: round(modified.get(kind, 0) / added, 2)
                    for kind, added in sorted(watcher.added.items())
                    if added
                },
                "kube_events_per_object": round(sum(events.values()) / plan.total, 2),
                "kube_status_and_metadata_writes_by_ready_reason": dict(watcher.modified_by_reason),
                "kube_writes_per_object": round(
                    (sum(modified.values()) + sum(events.values())) / plan.total, 2
                ),
                "reconciles": dict(reconciles),
                "reconciles_per_object": round(
                    sum(
                        v
                        for k, v in reconciles.items()
                        if not k.startswith(("Workspace/monitor", "Run", "Cluster"))
                    )
                    / plan.total,
                    2,
                ),
                "operator_peak_rss_mb": round(peak_rss / 1024 / 1024, 1),
                "cpu_seconds": cpu,
                # Everything else on the machine during the sync: busy CPU time of all processes
                # minus the measured ones (a shared machine shows here).
                "other_cpu_seconds": round(max(0.0, busy - sum(cpu.values())), 1),
                "machine_cpu_seconds_available": round(seconds * (os.cpu_count() or 1), 1),
                "load_average_before": load_before,
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "timeline": sorted(t - t0 for t in watcher.first_ready.values()),
                "watch_errors": watcher.errors[:5],
            }
        )
        if "direct" in result:
            result["ratio"] = round(result["objects_per_second"] / result["direct"]["objects_per_second"], 3)
        log(
            f"{dialect} N={n}: {'complete' if complete else 'INCOMPLETE'} {ready_n}/{plan.total} Ready in "
            f"{seconds:.1f}s ({result['objects_per_second']}/s), p50/p99 apply->remote "
            f"{result['apply_to_remote_p50_s']}/{result['apply_to_remote_p99_s']}s, "
            f"{result['runwhen_requests_per_object']} RunWhen req/object, "
            f"{result['kube_writes_per_object']} kube writes/object, "
            f"peak RSS {result['operator_peak_rss_mb']} MB, other processes {result['other_cpu_seconds']} "
            f"CPU s"
        )
        if steady and complete:
            result["steady"] = steady_state(stack, watcher, plan)
            result["changes"] = change_latency(stack, plan)
            result["restart"] = restart_probe(stack, watcher, plan)
        watcher.stop()
    dump(OUT / f"result-{label}.json", result)
    return result


def _quiet(watcher: Watcher, seconds: float, timeout: float) -> None:
    """Wait until no object was written for `seconds` (at most `timeout`)."""
    deadline = time.monotonic() + timeout
    last = watcher.modified_total()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = watcher.modified_total()
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= seconds:
            return


def steady_state(stack: Stack, watcher: Watcher, plan: Plan) -> dict[str, Any]:
    assert stack.api is not None
    assert stack.operator is not None
    interval = float(STEADY_POLL.rstrip("s"))
    log(f"steady: settling, then {STEADY_WINDOW:.0f}s idle with poll interval {STEADY_POLL}")
    time.sleep(2 * interval)
    _quiet(watcher, 15.0, 180.0)
    stack.emulator.reset_requests()
    modified0 = watcher.modified_total()
    events0 = sum(count_events(stack.api).values())
    cpu0 = stack.operator.cpu_seconds()
    time.sleep(STEADY_WINDOW)
    counts = stack.emulator.requests()
    cpu1 = stack.operator.cpu_seconds()
    writes = watcher.modified_total() - modified0
    events = sum(count_events(stack.api).values()) - events0
    intervals = STEADY_WINDOW / interval
    summary = _summarise_requests(counts)
    out = {
        "window_seconds": STEADY_WINDOW,
        "poll_interval_seconds": interval,
        "workspaces": plan.w,
        "drift_list_bound_per_interval": plan.w * 2 + 1,
        "runwhen_reads_per_interval": round(summary["reads"] / intervals, 1),
        "runwhen_lists_per_interval": round(summary["lists"] / intervals, 1),
        "runwhen_monitor_reads_per_interval": round(summary["monitor"] / intervals, 1),
        "runwhen_writes": summary["writes"],
        "kube_writes": writes,
        "kube_events": events,
        "operator_cpu_percent": round(100 * (cpu1 - cpu0) / STEADY_WINDOW, 1),
        "operator_rss_mb": round(stack.operator.rss_bytes() / 1024 / 1024, 1),
        "by_template": dict(counts.most_common()),
    }
    log(f"steady: {out}")
    return out


def change_latency(stack: Stack, plan: Plan, count: int = 30, spacing: float = 0.5) -> dict[str, Any]:
    """With the N objects in sync: create `count` new Workflows and change `count` existing ones,
    one at a time, and time each from the Kubernetes write to the remote object's createdAt/updatedAt."""
    assert stack.api is not None
    custom = client.CustomObjectsApi(stack.api)
    log(f"changes: {count} creates and {count} updates, one every {spacing}s")
    created: dict[str, float] = {}
    updated: dict[str, float] = {}
    for k in range(count):
        ws = plan.workspaces[k % plan.w]
        name = f"probe-{k:03d}"
        spec = {"connectionRef": CONNECTION_REF, "workspaceRef": {"name": ws}, "definition": definition(k)}
        created[name] = time.time()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "workflows", Plan._body("Workflow", name, spec)
        )
        time.sleep(spacing)
        name = f"wf-{2 * k:05d}"
        updated[name] = time.time()
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            "workflows",
            name,
            {"spec": {"definition": definition(2 * k, "Changed")}},
        )
        time.sleep(spacing)
    create_latency: dict[str, float] = {}
    update_latency: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        remote = {name: obj for (kind, name), obj in stack.emulator.objects().items() if kind == "Workflow"}
        for name, sent in created.items():
            if name in remote:
                create_latency[name] = parse_time(remote[name]["createdAt"]) - sent
        for name, sent in updated.items():
            obj = remote.get(name)
            titles = obj["definition"]["fromActivities"][0]["actions"][0]["tasks"]["titles"] if obj else []
            if titles == ["Changed"]:
                update_latency[name] = parse_time(obj["updatedAt"]) - sent
        if len(create_latency) == count and len(update_latency) == count:
            break
        time.sleep(1.0)
    both = sorted([*create_latency.values(), *update_latency.values()])
    out = {
        "creates": len(create_latency),
        "updates": len(update_latency),
        "spacing_seconds": spacing,
        "create_p50_s": round(percentile(sorted(create_latency.values()), 50), 3),
        "create_p99_s": round(percentile(sorted(create_latency.values()), 99), 3),
        "update_p50_s": round(percentile(sorted(update_latency.values()), 50), 3),
        "update_p99_s": round(percentile(sorted(update_latency.values()), 99), 3),
        "p50_s": round(percentile(both, 50), 3),
        "p99_s": round(percentile(both, 99), 3),
        "max_s": round(both[-1], 3) if both else None,
    }
    log(f"changes: {out}")
    return out


def restart_probe(stack: Stack, watcher: Watcher, plan: Plan) -> dict[str, Any]:
    """SIGKILL the settled operator, start it again: what does coming back cost?"""
    assert stack.api is not None
    assert stack.operator is not None
    stack.emulator.reset_requests()
    modified0 = watcher.modified_total()
    events0 = sum(count_events(stack.api).values())
    stack.operator.kill()
    started = time.time()
    stack.operator.start()
    not_ready_seen = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.25)
        not_ready_seen = max(not_ready_seen, plan.total - watcher.ready_count())
        if time.time() - started > 20 and watcher.ready_count() >= plan.total:
            break
    _quiet(watcher, 10.0, 60.0)
    counts = stack.emulator.requests()
    # The restarted operator's passes (a start that runs none looks like a perfect restart: nothing
    # written, nothing read; Kopf's worker limit with indices once did exactly that).
    reconciles = _reconciles(stack.operator.metrics())
    out = {
        "seconds_observed": round(time.time() - started, 1),
        "passes": sum(reconciles.values()),
        "objects": plan.total,
        "kube_writes": watcher.modified_total() - modified0,
        "kube_events": sum(count_events(stack.api).values()) - events0,
        "max_objects_not_ready": not_ready_seen,
        "runwhen_requests": _summarise_requests(counts),
    }
    log(f"restart: {out}")
    return out


def main(
    sizes: tuple[int, ...] = SIZES,
    *,
    dialect: str = "platform",
    workers: int = WORKERS,
    rate: float = RATE,
    burst: int = BURST,
    steady_n: int | None = STEADY_N,
) -> dict[str, Any]:
    results: dict[str, Any] = {"sync": [], "steady": None}
    for n in sizes:
        try:
            results["sync"].append(sync_run(n, dialect=dialect, workers=workers, rate=rate, burst=burst))
        except Exception as exc:  # a failed size is reported, the others still run
            log(f"{dialect} N={n}: failed: {exc!r}")
            results["sync"].append({"n": n, "dialect": dialect, "error": repr(exc)})
    if steady_n:
        try:
            results["steady"] = sync_run(
                steady_n,
                dialect=dialect,
                workers=workers,
                rate=rate,
                burst=burst,
                poll=STEADY_POLL,
                steady=True,
            )
        except Exception as exc:
            log(f"{dialect} steady: failed: {exc!r}")
            results["steady"] = {"n": steady_n, "dialect": dialect, "error": repr(exc)}
    return results


if __name__ == "__main__":
    main()
