"""What Kopf alone costs for the operator's objects: the floor under the operator's own numbers.

    .venv/bin/python -m bench.kopf_floor --sizes 1000,5000

For each N, on a fresh control plane: the direct script against the emulator (as in the operator
bench), then `bench/kopf_minimal.py` (Kopf with the operator's kinds, settings, indices and daemons,
doing nothing but its status write and Event per object) with the same plan of objects created the
same way; then the same without its daemons. Prints the time until every object is Ready, objects/s
and the ratio to the direct script, Kubernetes writes per object, and Kopf's peak RSS; the raw
results go to bench/out/kopf_floor.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench import direct
from bench.bench_operator import CREATE_THREADS, SYNC_DEADLINE, Creator, Plan
from bench.harness import (
    NAMESPACE,
    OUT,
    TOKEN,
    RssSampler,
    Stack,
    Watcher,
    count_events,
    log,
    machine,
)

WORKERS, RATE, BURST = 16, 200.0, 400


def _floor_run(stack: Stack, plan: Plan, *, daemons: bool, label: str) -> dict[str, Any]:
    assert stack.api is not None
    log_path = OUT / f"kopf-minimal-{label}.log"
    argv = [sys.executable, "-m", "bench.kopf_minimal", str(stack.plane.kubeconfig), NAMESPACE]
    if not daemons:
        argv.append("--no-daemons")
    with log_path.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        time.sleep(3.0)  # Kopf's login and watches
        if proc.poll() is not None:
            raise RuntimeError(f"the minimal Kopf operator exited with {proc.returncode}; see {log_path}")
        watcher = Watcher(stack.api).start()
        time.sleep(1.0)
        rss = RssSampler(proc.pid).start()
        cpu_before = sum(psutil.Process(proc.pid).cpu_times()[:2])
        creator = Creator(stack.api, plan).start()
        t0 = creator.started
        deadline = time.monotonic() + SYNC_DEADLINE
        while watcher.ready_count() < plan.total and time.monotonic() < deadline:
            time.sleep(0.25)
        creator.join(60)
        complete = watcher.ready_count() >= plan.total
        done_at = max(watcher.first_ready.values()) if complete else time.time()
        seconds = done_at - t0
        cpu = sum(psutil.Process(proc.pid).cpu_times()[:2]) - cpu_before
        time.sleep(3.0)
        peak = rss.stop()
        idle_rss = psutil.Process(proc.pid).memory_info().rss
        modified = sum(watcher.modified.values())
        events = sum(count_events(stack.api).values())
        watcher.stop()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    ready = watcher.ready_count()
    return {
        "daemons": daemons,
        "complete": complete,
        "ready": ready,
        "seconds": round(seconds, 2),
        "objects_per_second": round(ready / seconds, 1),
        "kube_writes_per_object": round((modified + events) / plan.total, 2),
        "peak_rss_mb": round(peak / 1024 / 1024, 1),
        "rss_after_sync_mb": round(idle_rss / 1024 / 1024, 1),
        "cpu_seconds": round(cpu, 1),
    }


def run(n: int) -> dict[str, Any]:
    plan = Plan(n)
    result: dict[str, Any] = {"n": n, "objects": plan.total, "create_threads": CREATE_THREADS}
    for daemons in (True, False):
        label = f"n{n}-{'daemons' if daemons else 'no-daemons'}"
        with Stack(f"kopf-floor-{label}") as stack:
            if daemons:
                result["direct"] = direct.run(
                    stack.emulator.url,
                    TOKEN,
                    plan.direct_workspaces,
                    plan.direct_children,
                    dialect="platform",
                    concurrency=WORKERS,
                    rate=RATE,
                    burst=BURST,
                )
            floor = _floor_run(stack, plan, daemons=daemons, label=label)
        floor["ratio"] = round(floor["objects_per_second"] / result["direct"]["objects_per_second"], 3)
        result["with_daemons" if daemons else "without_daemons"] = floor
        log(f"Kopf floor N={n} ({'daemons' if daemons else 'no daemons'}): {floor}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.kopf_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000")
    args = parser.parse_args(argv)
    results = {"machine": machine(), "runs": [run(int(n)) for n in args.sizes.split(",")]}
    path = OUT / "kopf_floor.json"
    Path(path).write_text(json.dumps(results, indent=2, default=str))
    print(f"\n{'N':>6} {'daemons':>8} {'s':>7} {'obj/s':>7} {'ratio':>6} {'writes/obj':>10} {'peak MB':>8}")
    for r in results["runs"]:
        for key in ("with_daemons", "without_daemons"):
            f = r[key]
            print(
                f"{r['objects']:>6} {f['daemons']!s:>8} {f['seconds']:>7} {f['objects_per_second']:>7} "
                f"{f['ratio']:>6} {f['kube_writes_per_object']:>10} {f['peak_rss_mb']:>8}"
            )
    print(f"raw results: {path}")


if __name__ == "__main__":
    main()
