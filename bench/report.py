"""docs/benchmarks.md and docs/benchmarks.png from the results of a bench run (one section per dialect)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks.png"

TARGET_RATIO = 0.5
TARGET_P99_S = 1.0
TARGET_RSS_MB = 150.0
TARGET_WRITES_PER_CHILD = 2.0  # Kubernetes writes per created object, the Event beside them
#: Other processes' share of the machine's CPU during the syncs below which the page calls the
#: machine otherwise idle, and below which lightly loaded.
IDLE_SHARE = 0.05
BUSY_SHARE = 0.20
#: The dialects in the order of the page, with their headings.
TITLES = {"platform": "Platform dialect", "documented": "Documented dialect"}
#: How each dialect makes an object, for the page (operator / direct script).
HOW = {
    "platform": (
        "a Workspace is `POST /api/v3/workspaces {name}` then one `PATCH` of its `alias` (the display"
        " name); a Workflow or Persona is one `POST .../sync-typed` upsert, whose answer names its id"
        " (`resourceId`; without one the operator would read the object back). The upsert is safe to"
        " repeat, so no"
        " `createPending` write precedes it: **three** Kubernetes writes per child (Kopf's finalizer,"
        " one status write carrying Kopf's diff base too, the `Created` Event), four per Workspace."
        " The direct script makes the same POST + PATCH per"
        " workspace and one upsert per child, and reads nothing back."
    ),
    "documented": (
        "every object is one `POST` to its collection (`/api/v3/workspaces/`,"
        " `.../workflows/`, `.../personas/`), whose answer is the object. Each create is guarded by"
        " `status.createPending`: **four** Kubernetes writes per object (Kopf's finalizer,"
        " `createPending`, one status write carrying Kopf's diff base too, `Created` Event)."
        " The direct script makes the same POST per object."
    ),
}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ok(flag: bool | None) -> str:
    if flag is None:
        return "not measured"
    return "**met**" if flag else "**not met**"


def _dialects(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = results.get("dialects") or {}
    return [(name, found[name]) for name in TITLES if name in found]


def _good(sync: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in sync if "error" not in r]


# -- tables of one dialect ----------------------------------------------------------------------


def _sync_rows(sync: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| N (workflows + personas) | workspaces | objects | all Ready after | operator objects/s "
        "| direct objects/s | operator / direct | apply→remote p50 / p99 | apply→Ready p50 / p99 "
        "| RunWhen requests / object | Kubernetes writes / object | reconciles / object "
        "| operator peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sync:
        if "error" in r:
            rows.append(f"| {_fmt(r['n'])} | failed: `{r['error'][:120]}` |" + " |" * 11)
            continue
        done = (
            f"{_fmt(r['seconds'])} s"
            if r["complete"]
            else f"**{r['ready']:,} Ready at {r['seconds']:.0f} s**"
        )
        d = r.get("direct") or {}
        rows.append(
            f"| {_fmt(r['n'])} | {r['workspaces']} | {_fmt(r['objects'])} | {done} "
            f"| {_fmt(r['objects_per_second'])} | {_fmt(d.get('objects_per_second'))} "
            f"| {_fmt(r.get('ratio'), 2)} "
            f"| {_fmt(r['apply_to_remote_p50_s'], 2)} s / {_fmt(r['apply_to_remote_p99_s'], 2)} s "
            f"| {_fmt(r['apply_to_ready_p50_s'], 2)} s / {_fmt(r['apply_to_ready_p99_s'], 2)} s "
            f"| {_fmt(r['runwhen_requests_per_object'], 2)} | {_fmt(r['kube_writes_per_object'], 2)} "
            f"| {_fmt(r['reconciles_per_object'], 2)} | {_fmt(r['operator_peak_rss_mb'])} MB |"
        )
    return rows


def _detail_rows(sync: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| N | RunWhen requests: total / creates / other writes / lists / reads back / health checks "
        "| Kubernetes writes: status+metadata / Events | duplicates "
        "| direct script: requests / object, p50 / p99 request |",
        "|---:|---|---|---:|---|",
    ]
    for r in _good(sync):
        q = r["runwhen_requests"]
        kube = sum(r["kube_status_and_metadata_writes"].values())
        events = sum(r["kube_events"].values())
        d = r.get("direct") or {}
        rows.append(
            f"| {_fmt(r['n'])} | {q['total']:,} / {q.get('creates', 0):,} / "
            f"{q['writes'] - q.get('creates', 0):,} / {q['lists']:,} / {q.get('other_reads', 0):,} / "
            f"{q['monitor']:,} | {kube:,} / {events:,} | {r['duplicates']} "
            f"| {_fmt(d.get('requests_per_object'), 2)}, {_fmt(d.get('request_p50_ms'))} ms / "
            f"{_fmt(d.get('request_p99_ms'))} ms |"
        )
    return rows


def _cpu_rows(sync: list[dict[str, Any]]) -> list[str]:
    names = ("operator", "kube-apiserver", "etcd", "emulator", "bench")
    rows = [
        "| N | wall s | "
        + " | ".join(f"{n} CPU s" for n in names)
        + " | CPU ms / object (measured processes) | other processes CPU s |",
        "|---:|---:|" + "---:|" * (len(names) + 2),
    ]
    for r in _good(sync):
        cpu = r["cpu_seconds"]
        total = sum(cpu.values())
        rows.append(
            f"| {_fmt(r['n'])} | {_fmt(r['seconds'])} | "
            + " | ".join(_fmt(cpu.get(n)) for n in names)
            + f" | {_fmt(1000 * total / max(1, r['ready']))} | {_fmt(r.get('other_cpu_seconds'))} |"
        )
    return rows


def _steady_rows(steady_run: dict[str, Any]) -> list[str]:
    steady = steady_run.get("steady")
    if not steady:
        return []
    interval = steady["poll_interval_seconds"]
    monitor_bound = steady["workspaces"] * 3 * interval / 60
    sr = steady_run
    return [
        f"N = {sr['n']:,} in {steady['workspaces']} workspaces, poll interval {interval:.0f} s,"
        f" {steady['window_seconds']:.0f} s observed ({steady['window_seconds'] / interval:.0f} intervals):",
        "",
        "| per poll interval | measured | bound |",
        "|---|---:|---:|",
        f"| RunWhen drift-check lists | {_fmt(steady['runwhen_lists_per_interval'])} "
        f"| {steady['drift_list_bound_per_interval']} (workspaces x 2 kinds + 1 workspace list) |",
        f"| RunWhen health checks (every 60 s per workspace, 3 reads) "
        f"| {_fmt(steady['runwhen_monitor_reads_per_interval'])} | {monitor_bound:.0f} |",
        f"| RunWhen reads in all | {_fmt(steady['runwhen_reads_per_interval'])} | |",
        f"| RunWhen writes (whole window) | {steady['runwhen_writes']} | 0 |",
        f"| Kubernetes writes (whole window) | {steady['kube_writes']} | 0 |",
        f"| Kubernetes Events (whole window) | {steady['kube_events']} | 0 |",
        f"| operator CPU | {steady['operator_cpu_percent']} % of a core | |",
        f"| operator RSS | {steady['operator_rss_mb']} MB | |",
        "",
        f"The steady-state run's own initial sync (poll interval {interval:.0f} s):"
        f" {sr['objects']:,} objects Ready in {sr['seconds']:.1f} s ({sr['objects_per_second']}/s),"
        f" apply→remote p50 / p99 {sr['apply_to_remote_p50_s']:.2f} s / {sr['apply_to_remote_p99_s']:.2f} s,"
        f" {sr['runwhen_requests_per_object']} RunWhen requests and {sr['kube_writes_per_object']}"
        f" Kubernetes writes per object, peak RSS {sr['operator_peak_rss_mb']} MB.",
        "",
    ]


def _changes_rows(steady_run: dict[str, Any]) -> list[str]:
    changes = steady_run.get("changes")
    if not changes:
        return []
    return [
        f"Single changes to the synced N = {steady_run['n']:,}: {changes['creates']} new Workflows and"
        f" {changes['updates']} spec changes of existing ones, one every {changes['spacing_seconds']} s,"
        " timed from the Kubernetes write to the remote object's created / modified time:",
        "",
        "| | p50 | p99 |",
        "|---|---:|---:|",
        f"| create | {changes['create_p50_s'] * 1000:.0f} ms | {changes['create_p99_s'] * 1000:.0f} ms |",
        f"| update | {changes['update_p50_s'] * 1000:.0f} ms | {changes['update_p99_s'] * 1000:.0f} ms |",
        f"| both | {changes['p50_s'] * 1000:.0f} ms | {changes['p99_s'] * 1000:.0f} ms |",
        "",
    ]


def _restart_rows(steady_run: dict[str, Any]) -> list[str]:
    restart = steady_run.get("restart")
    if not restart:
        return []
    rq = restart["runwhen_requests"]
    return [
        "Restart (SIGKILL, then start) of the settled operator:",
        "",
        "| | |",
        "|---|---:|",
        f"| seconds observed | {restart['seconds_observed']} |",
        f"| Kubernetes writes | {restart['kube_writes']:,} |",
        f"| Kubernetes Events | {restart['kube_events']:,} |",
        f"| most objects not Ready at once | {restart['max_objects_not_ready']:,} |",
        f"| passes the restarted operator ran (objects) | {_fmt(restart.get('passes'))}"
        f" ({_fmt(restart.get('objects'))}) |",
        f"| RunWhen requests (reads / writes) | {rq['total']:,} ({rq['reads']:,} / {rq['writes']:,}) |",
        "",
    ]


def _emulator_rows(emu: dict[str, Any] | None) -> list[str]:
    if not emu:
        return []
    out = [
        f"The emulator alone (`bench/bench_emulator.py`): httpx at concurrency {emu.get('concurrency')},"
        " 5 s per phase, client and server on the same machine (GET one workspace; POST a new workflow):",
        "",
        "| phase | requests/s | p50 | p99 | server CPU / request | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for phase in ("get", "post"):
        r = emu.get(phase) or {}
        out.append(
            f"| {phase.upper()} | {_fmt(r.get('requests_per_second'))} | {_fmt(r.get('p50_ms'), 2)} ms "
            f"| {_fmt(r.get('p99_ms'), 2)} ms | {_fmt(r.get('server_cpu_ms_per_request'), 3)} ms "
            f"| {r.get('errors')} |"
        )
    out.append("")
    return out


def _dialect_section(name: str, data: dict[str, Any]) -> list[str]:
    sync = data.get("sync", [])
    steady_run = data.get("steady") or {}
    m = data.get("machine") or {}
    out = [
        f"## {TITLES[name]}",
        "",
        f"Run from {data.get('started', '?')} to {data.get('finished', '?')}; load average"
        f" {', '.join(str(x) for x in m.get('load_average', []))} at the start,"
        f" {', '.join(str(x) for x in data.get('load_average_after') or [])} at the end."
        f" How objects are made: {HOW[name]}",
        "",
        "### Initial sync",
        "",
        *_sync_rows(sync),
        "",
        *_detail_rows(sync),
        "",
        "Where the CPU went during the sync (user + system seconds of each process; *other processes* is"
        " the whole machine's busy CPU time minus the measured processes'):",
        "",
        *_cpu_rows(sync),
        "",
    ]
    if "error" in steady_run:
        out += [f"The steady-state run failed: `{steady_run['error'][:200]}`", ""]
    elif steady_run.get("steady"):
        out += [
            "### Steady state, single changes, restart",
            "",
            *_steady_rows(steady_run),
            *_changes_rows(steady_run),
            *_restart_rows(steady_run),
        ]
    else:
        out += ["The steady-state run (idle resync, single changes, restart) was not run.", ""]
    out += _emulator_rows(data.get("emulator"))
    return out


# -- Kopf's floor --------------------------------------------------------------------------------


def _floor_rows(results: dict[str, Any]) -> list[str]:
    """Kopf alone in the operator's shape (bench_kopf_floor), beside the operator, same run."""
    data = (results.get("dialects") or {}).get("platform") or {}
    floors = data.get("kopf_floor") or []
    if not floors:
        return []
    sync = {r["n"]: r for r in _good(data.get("sync", []))}
    rows = [
        "## Kopf's floor",
        "",
        "What Kopf alone costs for the same objects (`bench/kopf_floor.py`, `make bench` runs it in the"
        " same run as the operator): `bench/kopf_minimal.py` is Kopf with the operator's kinds, its"
        " Kopf settings (`handlers.operator.settings_for`), its indices and its shape (an `on.event`"
        " handler per kind beside the change handlers), whose create handler only puts the Ready"
        " condition into Kopf's status patch and posts a `Created` Event: the same Kubernetes writes as"
        " the operator's, and nothing else (no RunWhen, no Secrets, no scheduler). Each N on a fresh"
        " control plane, with the direct script against the emulator just before it, created by the"
        " same driver the same way.",
        "",
        "| N | Kopf alone: objects/s | / direct | writes / object | peak RSS | operator: objects/s"
        " | / direct | writes / object | peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for floor in floors:
        kopf = (floor.get("shapes") or {}).get("observer") or {}
        op = sync.get(floor["n"]) or {}
        rows.append(
            f"| {_fmt(floor['n'])} | {_fmt(kopf.get('objects_per_second'))}"
            f" | {_fmt(kopf.get('ratio'), 2)} | {_fmt(kopf.get('kube_writes_per_object'), 2)}"
            f" | {_fmt(kopf.get('peak_rss_mb'))} MB | {_fmt(op.get('objects_per_second'))}"
            f" | {_fmt(op.get('ratio'), 2)} | {_fmt(op.get('kube_writes_per_object'), 2)}"
            f" | {_fmt(op.get('operator_peak_rss_mb'))} MB |"
        )
    return [*rows, ""]


# -- across dialects ----------------------------------------------------------------------------


def _comparison(results: dict[str, Any]) -> list[str]:
    rows = [
        "| dialect | N | Kubernetes writes / object | RunWhen requests / object (operator) "
        "| RunWhen requests / object (direct) | operator objects/s | direct objects/s | operator / direct |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, data in _dialects(results):
        for r in _good(data.get("sync", [])):
            d = r.get("direct") or {}
            rows.append(
                f"| {name} | {_fmt(r['n'])} | {_fmt(r['kube_writes_per_object'], 2)} "
                f"| {_fmt(r['runwhen_requests_per_object'], 2)} | {_fmt(d.get('requests_per_object'), 2)} "
                f"| {_fmt(r['objects_per_second'])} | {_fmt(d.get('objects_per_second'))} "
                f"| {_fmt(r.get('ratio'), 2)} |"
            )
    return rows


def _load_rows(results: dict[str, Any]) -> list[str]:
    """What else the machine was doing, measured: other processes' CPU during the syncs."""
    out = []
    for name, data in _dialects(results):
        good = _good(
            [*data.get("sync", []), *([data["steady"]] if "seconds" in (data.get("steady") or {}) else [])]
        )
        other = sum(r.get("other_cpu_seconds") or 0.0 for r in good)
        available = sum(r.get("machine_cpu_seconds_available") or 0.0 for r in good)
        if not available:
            continue
        share = other / available
        verdict = (
            f"otherwise idle (under {IDLE_SHARE:.0%})"
            if share < IDLE_SHARE
            else f"lightly loaded by other work (under {BUSY_SHARE:.0%})"
            if share < BUSY_SHARE
            else "**busy with other work**: take the numbers as a floor"
        )
        out.append(
            f"| {name} | {len(good)} syncs, {available:,.0f} CPU s available | {other:,.1f} CPU s"
            f" ({100 * share:.1f} %) | {verdict} |"
        )
    if not out:
        return []
    return [
        "| dialect | syncs measured | other processes' CPU during the syncs | the machine was |",
        "|---|---|---:|---|",
        *out,
    ]


def _targets(results: dict[str, Any]) -> list[str]:
    def one(data: dict[str, Any]) -> list[tuple[str, bool | None]]:
        sync = {r["n"]: r for r in _good(data.get("sync", []))}
        steady_run = data.get("steady") or {}
        steady, changes = steady_run.get("steady"), steady_run.get("changes")
        restart = steady_run.get("restart")
        ratios = [(n, r["ratio"]) for n, r in sync.items() if r.get("ratio") is not None]
        thousand, five = sync.get(1000), sync.get(5000)
        idle_ok = (
            steady["kube_writes"] == 0 and steady["kube_events"] == 0 and steady["runwhen_writes"] == 0
            if steady
            else None
        )
        return [
            (
                ", ".join(f"N={n:,}: {ratio:.2f}" for n, ratio in ratios) or "-",
                min(r for _, r in ratios) >= TARGET_RATIO if ratios else None,
            ),
            (
                f"{changes['p99_s']:.3f} s over {changes['creates'] + changes['updates']} changes"
                if changes
                else "-",
                changes["p99_s"] < TARGET_P99_S if changes else None,
            ),
            (
                f"{thousand['apply_to_remote_p99_s']:.2f} s" if thousand else "-",
                thousand["apply_to_remote_p99_s"] < TARGET_P99_S if thousand else None,
            ),
            (
                f"{steady['kube_writes']} Kubernetes writes, {steady['kube_events']} Events,"
                f" {steady['runwhen_writes']} RunWhen writes in {steady['window_seconds']:.0f} s"
                if steady
                else "-",
                idle_ok,
            ),
            (
                f"{five['operator_peak_rss_mb']:.0f} MB peak" if five else "not run",
                five["operator_peak_rss_mb"] < TARGET_RSS_MB if five else None,
            ),
            (
                f"{thousand['ratio']:.2f}" if thousand and thousand.get("ratio") is not None else "-",
                thousand["ratio"] >= TARGET_RATIO if thousand and thousand.get("ratio") is not None else None,
            ),
            _writes_target(thousand),
            (
                f"{restart['kube_writes']} Kubernetes writes, {restart['kube_events']} Events,"
                f" {restart.get('passes', '?')} passes of {restart.get('objects', '?')} objects"
                if restart
                else "-",
                restart["kube_writes"] == 0
                and restart["kube_events"] == 0
                and restart.get("passes", 0) >= restart.get("objects", 1)
                if restart
                else None,
            ),
        ]

    names = [
        "operator throughput at least half of the direct script's",
        "p99 apply→converged under 1 s at N = 1,000: single changes to a synced set",
        "p99 apply→converged under 1 s at N = 1,000: all 1,000 applied at once",
        "idle resync with zero writes",
        f"RSS under {TARGET_RSS_MB:.0f} MB at 5,000 objects",
        "operator / direct at least 0.5 at N = 1,000",
        "at most 2 Kubernetes writes per created child object plus one Event at N = 1,000"
        " (a Workspace where the API needs its `createPending` mark: one more)",
        "restart with zero writes (and a pass of every object)",
    ]
    dialects = _dialects(results)
    columns = [one(data) for _, data in dialects]
    rows = [
        "| target | " + " | ".join(TITLES[n].split()[0].lower() for n, _ in dialects) + " |",
        "|---|" + "---|" * len(dialects),
    ]
    for i, target in enumerate(names):
        cells = [
            f"{value}: {_ok(flag)}" if flag is not None else "not measured"
            for value, flag in (c[i] for c in columns)
        ]
        rows.append(f"| {target} | " + " | ".join(cells) + " |")
    return rows


def _writes_target(thousand: dict[str, Any] | None) -> tuple[str, bool | None]:
    by_kind = (thousand or {}).get("kube_status_and_metadata_writes_per_object_by_kind")
    if not thousand or not by_kind:
        return ("-", None)
    events = thousand.get("kube_events_per_object")
    children = {k: v for k, v in by_kind.items() if k.lower() not in ("workspace", "workspaces")}
    said = ", ".join(f"{k} {v:.2f}" for k, v in sorted(by_kind.items()))
    return (
        f"writes per object: {said}; Events per object {_fmt(events, 2)}",
        all(v <= TARGET_WRITES_PER_CHILD for v in children.values()) and (events or 0) <= 1.0,
    )


def plot(results: dict[str, Any], path: Path = PLOT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dialects = _dialects(results)
    rows = max(1, len(dialects))
    fig, axes = plt.subplots(rows, 3, figsize=(16, 4.6 * rows), squeeze=False)
    for row, (name, data) in enumerate(dialects):
        sync = _good(data.get("sync", []))
        title = TITLES[name]
        ax = axes[row][0]
        for r in sync:
            times = r.get("timeline") or []
            ax.plot(times, [100 * (i + 1) / r["objects"] for i in range(len(times))], label=f"N={r['n']:,}")
        ax.set_xlabel("seconds since the first create")
        ax.set_ylabel("% of objects Ready")
        ax.set_title(f"{title}: initial sync progress")
        ax.grid(alpha=0.3)
        ax.legend()

        ax = axes[row][1]
        labels = [f"{r['n']:,}" for r in sync]
        xs = range(len(sync))
        ax.bar([x - 0.2 for x in xs], [r["objects_per_second"] for r in sync], width=0.4, label="operator")
        ax.bar(
            [x + 0.2 for x in xs],
            [(r.get("direct") or {}).get("objects_per_second", 0) for r in sync],
            width=0.4,
            label="direct httpx script",
        )
        ax.set_xticks(list(xs), labels)
        ax.set_xlabel("N (workflows + personas)")
        ax.set_ylabel("objects / s")
        ax.set_title(f"{title}: operator vs direct script")
        ax.grid(alpha=0.3, axis="y")
        ax.legend()

        ax = axes[row][2]
        ax.plot(labels, [r["apply_to_remote_p50_s"] for r in sync], marker="o", label="apply→remote p50")
        ax.plot(labels, [r["apply_to_remote_p99_s"] for r in sync], marker="o", label="apply→remote p99")
        changes = (data.get("steady") or {}).get("changes")
        if changes and "1,000" in labels:
            ax.plot(
                ["1,000"],
                [changes["p99_s"]],
                marker="*",
                markersize=12,
                linestyle="none",
                label="single changes to a synced N=1,000, p99",
            )
        ax.axhline(TARGET_P99_S, color="grey", linestyle="--", linewidth=1, label="1 s target (p99, N=1,000)")
        ax.set_yscale("log")
        ax.set_xlabel("N (workflows + personas)")
        ax.set_ylabel("seconds")
        ax.set_title(f"{title}: apply to remote object")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render(results: dict[str, Any], notes: str = "") -> str:
    m = results.get("machine", {})
    dialects = _dialects(results)
    every_sync = [r for _, data in dialects for r in data.get("sync", [])]
    kube_version = next((r.get("kube_version") for r in every_sync if r.get("kube_version")), "?")
    settings = results.get("settings", {})
    steady_n = next(
        (data["steady"]["n"] for _, data in dialects if (data.get("steady") or {}).get("n")), 1000
    )
    note = results.get("note")
    out: list[str] = [
        "# Benchmarks",
        "",
        "How fast the operator brings RunWhen in line with what is in Kubernetes, what it costs on both",
        "sides, and what it costs when nothing changes, in each of the two dialects of the RunWhen API",
        "([runwhen-api.md](runwhen-api.md)): **platform** (the default) and **documented**. Everything",
        "runs on one machine over loopback: a real etcd and kube-apiserver (`hack/testenv.py`), the",
        "RunWhen API emulator (`--dialect platform|documented`), the operator as a process, and the",
        "benchmark driver. The numbers are what this machine did on the day; the code that produced them",
        "is in `bench/`.",
        "",
        "![throughput and latency, one row per dialect](benchmarks.png)",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPUs (`nproc`) | {m.get('nproc')} |",
        f"| CPU model (`/proc/cpuinfo`) | {m.get('cpu')} |",
        f"| memory | {m.get('memory_gib')} GiB |",
        f"| Python | {m.get('python')} |",
        f"| kube-apiserver / etcd | {kube_version} / etcd v3.5.35 (`--unsafe-no-fsync`) |",
        f"| kernel | {m.get('kernel')} |",
        f"| load average when the run started | {', '.join(str(x) for x in m.get('load_average', []))} |",
        f"| run started at | {results.get('started', '?')} |",
        "",
        "Every process in the measurement (kube-apiserver, etcd, the emulator, the operator and the",
        "driver) competes for the same cores. What else ran on the machine is measured, not assumed:",
        "during each sync the bench takes the whole machine's busy CPU time and subtracts that of the",
        "processes it started (a difference below zero, from the kernel's tick accounting, counts as 0).",
        "",
        *_load_rows(results),
        "",
    ]
    if note:
        out += [note.strip(), ""]
    out += [
        "## How to run",
        "",
        "```sh",
        "make bench                                   # both dialects, every bench; rewrites this page",
        ".venv/bin/python -m bench --dialect platform --only operator --sizes 100,1000 --no-steady",
        ".venv/bin/python -m bench --dialect documented --only emulator",
        ".venv/bin/python -m bench --report-only      # rebuild this page from bench/out/results.json",
        "```",
        "",
        "`--workers`, `--rate` and `--burst` change the operator's workers and the connection's rate limit",
        "(the direct script uses the same); `--note` adds a sentence about the machine to this page. Raw",
        "results, kept per dialect and including every request count by path template, go to",
        "`bench/out/results.json`; the logs of the operator and emulator of each run to `bench/out/`.",
        "",
        "## What is measured",
        "",
        "- **Initial sync.** N objects, half Workflows and half Personas, spread evenly over 10 (N = 100),"
        " 20 (N = 1,000) or 50 (N = 5,000) Workspaces, all using one RunWhenConnection with"
        f" `apiDialect` pinned to the emulator's dialect and rate limit **{settings.get('rate', 200):g}"
        f" requests/s, burst {settings.get('burst', 400)}**. The operator runs with `--workers"
        f" {settings.get('workers', 16)}` and the default 5-minute poll interval. Each size gets a fresh"
        " control plane and emulator (no faults). The driver creates the Workspaces, then the children,"
        " from 8 threads with the Kubernetes Python client; the clock starts at the first create and"
        " stops when the last object is Ready (seen on a watch).",
        "- **apply→remote** is, per object, the emulator's creation time of the remote object minus the"
        " moment its create was sent to kube-apiserver; **apply→Ready** is when the watch saw it Ready.",
        "- **RunWhen requests** are the emulator's own counters (every `/api/` request, including the"
        " Workspace health checks: documented `health`, `status`, `issues`; platform `status`,"
        " `runners`, `issues`). **Kubernetes writes** are the watch's MODIFIED events on the objects"
        " (finalizer and status patches) plus the Events the operator created. Both are divided by all"
        " objects, Workspaces included.",
        "- **Direct script** (`bench/direct.py`): the same remote objects made by plain httpx with the"
        " fewest requests the dialect allows, the same concurrency as the operator's workers and the same"
        " token bucket, against the same emulator just before the operator run. It is the floor.",
        f"- **Steady state**: N = {steady_n:,} synced with `--poll-interval 10s`, left to settle, then 60 s"
        " of nothing changing; then 30 single creates and 30 single spec changes; then the settled"
        " operator is SIGKILLed and started again (**restart**).",
        "- **Peak RSS**: the operator process's resident memory, sampled every 0.25 s with psutil.",
        "",
        "## The two dialects side by side",
        "",
        *_comparison(results),
        "",
    ]
    for name, data in dialects:
        out += _dialect_section(name, data)
    out += _floor_rows(results)
    out += ["## Targets", "", *_targets(results), ""]
    if notes:
        out += [notes.strip(), ""]
    return "\n".join(out)


def write(results: dict[str, Any], notes: str = "") -> None:
    DOC.write_text(render(results, notes))
    plot(results)
