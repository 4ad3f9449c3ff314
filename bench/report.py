"""docs/benchmarks.md and docs/benchmarks.png from the results of a bench run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks.png"

# Targets: (description, how to judge it from the results).
TARGET_RATIO = 0.5
TARGET_P99_S = 1.0
TARGET_RSS_MB = 200.0


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


def _cpu_rows(sync: list[dict[str, Any]]) -> list[str]:
    names = ("operator", "kube-apiserver", "etcd", "emulator", "bench")
    rows = [
        "| N | wall s | " + " | ".join(f"{n} CPU s" for n in names) + " | CPU ms / object (all) |",
        "|---:|---:|" + "---:|" * (len(names) + 1),
    ]
    for r in sync:
        if "error" in r:
            continue
        cpu = r["cpu_seconds"]
        total = sum(cpu.values())
        rows.append(
            f"| {_fmt(r['n'])} | {_fmt(r['seconds'])} | "
            + " | ".join(_fmt(cpu.get(n)) for n in names)
            + f" | {_fmt(1000 * total / max(1, r['ready']))} |"
        )
    return rows


def _detail_rows(sync: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| N | RunWhen requests (total / lists / creates+writes / health checks) "
        "| Kubernetes writes (status+metadata / Events) | duplicates | direct script p50 / p99 request |",
        "|---:|---|---|---:|---|",
    ]
    for r in sync:
        if "error" in r:
            continue
        q = r["runwhen_requests"]
        kube = sum(r["kube_status_and_metadata_writes"].values())
        events = sum(r["kube_events"].values())
        d = r.get("direct") or {}
        rows.append(
            f"| {_fmt(r['n'])} | {q['total']:,} / {q['lists']:,} / {q['writes']:,} / {q['monitor']:,} "
            f"| {kube:,} / {events:,} | {r['duplicates']} "
            f"| {_fmt(d.get('request_p50_ms'))} ms / {_fmt(d.get('request_p99_ms'))} ms |"
        )
    return rows


def plot(results: dict[str, Any], path: Path = PLOT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sync = [r for r in results.get("sync", []) if "error" not in r]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    for r in sync:
        times = r.get("timeline") or []
        ax.plot(times, [100 * (i + 1) / r["objects"] for i in range(len(times))], label=f"N={r['n']:,}")
    ax.set_xlabel("seconds since the first create")
    ax.set_ylabel("% of objects Ready")
    ax.set_title("Initial sync progress")
    ax.grid(alpha=0.3)
    ax.legend()

    ax = axes[1]
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
    ax.set_title("Throughput: operator vs direct script")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()

    ax = axes[2]
    ax.plot(labels, [r["apply_to_remote_p50_s"] for r in sync], marker="o", label="apply→remote p50")
    ax.plot(labels, [r["apply_to_remote_p99_s"] for r in sync], marker="o", label="apply→remote p99")
    changes = (results.get("steady") or {}).get("changes")
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
    ax.set_title("Latency from apply to remote object")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _targets(results: dict[str, Any]) -> list[str]:
    sync = {r["n"]: r for r in results.get("sync", []) if "error" not in r}
    steady = (results.get("steady") or {}).get("steady")
    changes = (results.get("steady") or {}).get("changes")
    ratios = [r["ratio"] for r in sync.values() if r.get("ratio") is not None]
    thousand = sync.get(1000)
    five = sync.get(5000)
    return [
        "| target | measured | verdict |",
        "|---|---|---|",
        "| operator throughput at least half of the direct script's | "
        + (
            ", ".join(f"N={n:,}: {r['ratio']:.2f}" for n, r in sync.items() if r.get("ratio") is not None)
            or "-"
        )
        + f" | {_ok(min(ratios) >= TARGET_RATIO if ratios else None)} |",
        "| p99 apply→converged under 1 s at N = 1,000: single changes to a synced set | "
        + (
            f"{changes['p99_s']:.3f} s over {changes['creates'] + changes['updates']} changes"
            if changes
            else "-"
        )
        + f" | {_ok(changes['p99_s'] < TARGET_P99_S if changes else None)} |",
        "| p99 apply→converged under 1 s at N = 1,000: all 1,000 applied at once | "
        + (f"{thousand['apply_to_remote_p99_s']:.2f} s" if thousand else "-")
        + f" | {_ok(thousand['apply_to_remote_p99_s'] < TARGET_P99_S if thousand else None)} |",
        "| idle resync with zero writes | "
        + (
            f"{steady['kube_writes']} Kubernetes writes, {steady['kube_events']} Events, "
            f"{steady['runwhen_writes']} RunWhen writes in {steady['window_seconds']:.0f} s"
            if steady
            else "-"
        )
        + " | "
        + _ok(
            (steady["kube_writes"] == 0 and steady["kube_events"] == 0 and steady["runwhen_writes"] == 0)
            if steady
            else None
        )
        + " |",
        "| RSS under 200 MB at 5,000 objects | "
        + (f"{five['operator_peak_rss_mb']:.0f} MB peak" if five else "-")
        + f" | {_ok(five['operator_peak_rss_mb'] < TARGET_RSS_MB if five else None)} |",
    ]


def render(results: dict[str, Any], notes: str = "") -> str:
    m = results.get("machine", {})
    sync = results.get("sync", [])
    kube_version = next((r.get("kube_version") for r in sync if r.get("kube_version")), "?")
    settings = results.get("settings", {})
    steady_run = results.get("steady") or {}
    steady = steady_run.get("steady")
    restart = steady_run.get("restart")
    emu = results.get("emulator")
    out: list[str] = [
        "# Benchmarks",
        "",
        "How fast the operator brings RunWhen in line with what is in Kubernetes, what it costs on both",
        "sides, and what it costs when nothing changes. Everything runs on one machine over loopback: a",
        "real etcd and kube-apiserver (`hack/testenv.py`), the RunWhen API emulator, the operator as a",
        "process, and the benchmark driver. The numbers are what this machine did on the day; the code",
        "that produced them is in `bench/`.",
        "",
        "![throughput and latency](benchmarks.png)",
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
        f"| run at | {results.get('started', '?')} |",
        "",
        "The machine is shared: other work was running at the same time, so absolute numbers move by tens",
        "of percent between runs. Every process in the measurement (kube-apiserver, etcd, the emulator, the",
        "operator and the driver) competes for the same two cores.",
        "",
        "## How to run",
        "",
        "```sh",
        "make bench                                   # everything; rewrites this page and the plot",
        ".venv/bin/python -m bench --only operator --sizes 100,1000 --no-steady",
        ".venv/bin/python -m bench --only emulator",
        ".venv/bin/python -m bench --report-only      # rebuild this page from bench/out/results.json",
        "```",
        "",
        "`--workers`, `--rate` and `--burst` change the operator's workers and the connection's rate limit",
        "(the direct script uses the same). Raw results, including every request count, go to",
        "`bench/out/results.json`; the logs of the operator and emulator of each run to `bench/out/`.",
        "",
        "## What is measured",
        "",
        "- **Initial sync.** N objects, half Workflows and half Personas, spread evenly over 10 (N = 100),"
        f" 20 (N = 1,000) or 50 (N = 5,000) Workspaces, all using one RunWhenConnection with rate limit"
        f" **{settings.get('rate', 200):g} requests/s, burst {settings.get('burst', 400)}**. The operator"
        f" runs with `--workers {settings.get('workers', 16)}` and the default 5-minute poll interval. Each"
        " size gets a fresh control plane and emulator (no faults). The driver creates the Workspaces, then"
        " the children, from 8 threads with the Kubernetes Python client; the clock starts at the first"
        " create and stops when the last object is Ready (seen on a watch).",
        "- **apply→remote** is, per object, the emulator's `createdAt` of the remote object minus the moment"
        " its create was sent to kube-apiserver; **apply→Ready** is when the watch saw it Ready.",
        "- **RunWhen requests** are the emulator's own counters (every `/api/v3/` request, including the"
        " Workspace health checks). **Kubernetes writes** are the watch's MODIFIED events on the objects"
        " (finalizer and status patches) plus the Events the operator created. Each object costs four:"
        " the finalizer, `createPending` before the create (what makes a lost answer or a crash safe),"
        " the final status and a `Created` Event.",
        "- **Direct script** (`bench/direct.py`): the same remote objects POSTed by plain httpx with the same"
        " concurrency as the operator's workers and the same token bucket, against the same emulator just"
        " before the operator run. It is the floor: one request per object and nothing else.",
        f"- **Steady state**: N = {steady_run.get('n', 1000):,} synced with `--poll-interval 10s`, left to"
        f" settle, then {steady['window_seconds']:.0f} s of nothing changing."
        if steady
        else "- **Steady state**: not run.",
        "- **Restart**: the settled operator of the steady-state run is SIGKILLed and started again.",
        "- **Peak RSS**: the operator process's resident memory, sampled every 0.25 s with psutil.",
        "",
        "## Results",
        "",
        "### Initial sync",
        "",
        *_sync_rows(sync),
        "",
        *_detail_rows(sync),
        "",
        "Where the CPU went during the sync (user + system seconds of each process):",
        "",
        *_cpu_rows(sync),
        "",
    ]
    if steady:
        lists_bound = steady["drift_list_bound_per_interval"]
        out += [
            "### Steady state",
            "",
            f"N = {steady_run['n']:,} in {steady['workspaces']} workspaces, poll interval"
            f" {steady['poll_interval_seconds']:.0f} s, {steady['window_seconds']:.0f} s observed"
            f" ({steady['window_seconds'] / steady['poll_interval_seconds']:.0f} intervals):",
            "",
            "| per poll interval | measured | bound |",
            "|---|---:|---:|",
            f"| RunWhen drift-check lists | {_fmt(steady['runwhen_lists_per_interval'])} "
            f"| {lists_bound} (workspaces x 2 kinds + 1 workspace list) |",
            f"| RunWhen health checks (every 60 s per workspace, 3 reads) "
            f"| {_fmt(steady['runwhen_monitor_reads_per_interval'])} | {steady['workspaces'] * 3 / 6:.0f} |",
            f"| RunWhen reads in all | {_fmt(steady['runwhen_reads_per_interval'])} | |",
            f"| RunWhen writes (whole window) | {steady['runwhen_writes']} | 0 |",
            f"| Kubernetes writes (whole window) | {steady['kube_writes']} | 0 |",
            f"| Kubernetes Events (whole window) | {steady['kube_events']} | 0 |",
            f"| operator CPU | {steady['operator_cpu_percent']} % of a core | |",
            f"| operator RSS | {steady['operator_rss_mb']} MB | |",
            "",
        ]
        sr = steady_run
        out += [
            "The steady-state run's own initial sync (poll interval 10 s):"
            f" {sr['objects']:,} objects Ready in {sr['seconds']:.1f} s ({sr['objects_per_second']}/s),"
            " apply→remote p50 / p99"
            f" {sr['apply_to_remote_p50_s']:.2f} s / {sr['apply_to_remote_p99_s']:.2f} s, peak RSS"
            f" {sr['operator_peak_rss_mb']} MB.",
            "",
        ]
    changes = steady_run.get("changes")
    if changes:
        out += [
            "### Single changes to a synced set",
            "",
            f"With the N = {steady_run['n']:,} objects in sync, {changes['creates']} new Workflows and"
            f" {changes['updates']} spec changes of existing ones, one every {changes['spacing_seconds']} s,"
            " timed from the Kubernetes write to the remote object's `createdAt` / `updatedAt`:",
            "",
            "| | p50 | p99 |",
            "|---|---:|---:|",
            f"| create | {changes['create_p50_s'] * 1000:.0f} ms | {changes['create_p99_s'] * 1000:.0f} ms |",
            f"| update | {changes['update_p50_s'] * 1000:.0f} ms | {changes['update_p99_s'] * 1000:.0f} ms |",
            f"| both | {changes['p50_s'] * 1000:.0f} ms | {changes['p99_s'] * 1000:.0f} ms |",
            "",
        ]
    if restart:
        rq = restart["runwhen_requests"]
        out += [
            "### Restart (SIGKILL, then start) of the settled operator",
            "",
            "| | |",
            "|---|---:|",
            f"| seconds observed | {restart['seconds_observed']} |",
            f"| Kubernetes writes | {restart['kube_writes']:,} |",
            f"| Kubernetes Events | {restart['kube_events']:,} |",
            f"| most objects not Ready at once | {restart['max_objects_not_ready']:,} |",
            f"| RunWhen requests (reads / writes) | {rq['total']:,} ({rq['reads']:,} / {rq['writes']:,}) |",
            "",
        ]
    if emu:
        out += [
            "### Emulator on loopback (`bench/bench_emulator.py`)",
            "",
            f"httpx at concurrency {emu.get('concurrency')}, 5 s per phase, client and server on the same"
            " machine:",
            "",
            "| phase | requests/s | p50 | p99 | errors |",
            "|---|---:|---:|---:|---:|",
        ]
        for phase in ("get", "post"):
            r = emu.get(phase) or {}
            out.append(
                f"| {phase.upper()} | {_fmt(r.get('requests_per_second'))} | {_fmt(r.get('p50_ms'), 2)} ms "
                f"| {_fmt(r.get('p99_ms'), 2)} ms | {r.get('errors')} |"
            )
        out.append("")
    out += ["## Targets", "", *_targets(results), ""]
    if notes:
        out += [notes.strip(), ""]
    return "\n".join(out)


def write(results: dict[str, Any], notes: str = "") -> None:
    DOC.write_text(render(results, notes))
    plot(results)
