"""What Kopf alone costs for the operator's objects: the floor under the operator's own numbers.

    .venv/bin/python -m bench.kopf_floor --sizes 1000,5000 --shapes observer,daemons,bare

For each N, on a fresh control plane: the direct script against the emulator (as in the operator
bench), then `bench/kopf_minimal.py` (Kopf with the operator's kinds, settings and indices, doing
nothing but its status write and Event per object) with the same plan of objects created the same
way, once per shape (a fresh control plane each): ``observer`` is the operator's (an ``on.event``
handler per kind), ``daemons`` its former one (a sleeping daemon per object and job), ``bare``
neither. Prints the time until every object is Ready, objects/s and the ratio to the direct script,
Kubernetes writes per object, and Kopf's peak RSS; the raw results go to bench/out/kopf_floor.json.
`make bench` runs the ``observer`` shape at N = 1,000 and 5,000 (`bench/bench_kopf_floor.py`), so
the benchmarks page shows the floor beside the operator's numbers of the same run.
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


def _floor_run(stack: Stack, plan: Plan, *, shape: str, label: str) -> dict[str, Any]:
    assert stack.api is not None
    log_path = OUT / f"kopf-minimal-{label}.log"
    argv = [sys.executable, "-m", "bench.kopf_minimal", str(stack.plane.kubeconfig), NAMESPACE]
    argv += ["--shape", shape]
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
        "shape": shape,
        "complete": complete,
        "ready": ready,
        "seconds": round(seconds, 2),
        "objects_per_second": round(ready / seconds, 1),
        "kube_writes_per_object": round((modified + events) / plan.total, 2),
        "peak_rss_mb": round(peak / 1024 / 1024, 1),
        "rss_after_sync_mb": round(idle_rss / 1024 / 1024, 1),
        "cpu_seconds": round(cpu, 1),
    }


SHAPES = ("observer", "daemons", "bare")


def run(n: int, shapes: tuple[str, ...] = ("observer",)) -> dict[str, Any]:
    plan = Plan(n)
    result: dict[str, Any] = {"n": n, "objects": plan.total, "create_threads": CREATE_THREADS, "shapes": {}}
    for shape in shapes:
        label = f"n{n}-{shape}"
        with Stack(f"kopf-floor-{label}") as stack:
            if "direct" not in result:
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
            floor = _floor_run(stack, plan, shape=shape, label=label)
        floor["ratio"] = round(floor["objects_per_second"] / result["direct"]["objects_per_second"], 3)
        result["shapes"][shape] = floor
        log(f"Kopf floor N={n} ({shape}): {floor}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.kopf_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="of: %(default)s")
    args = parser.parse_args(argv)
    shapes = tuple(s for s in args.shapes.split(",") if s)
    for shape in shapes:
        if shape not in SHAPES:
            parser.error(f"--shapes: {shape!r} is not one of {', '.join(SHAPES)}")
    results = {"machine": machine(), "runs": [run(int(n), shapes) for n in args.sizes.split(",")]}
    path = OUT / "kopf_floor.json"
    OUT.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=2, default=str))
    print(f"\n{'N':>6} {'shape':>9} {'s':>7} {'obj/s':>7} {'ratio':>6} {'writes/obj':>10} {'peak MB':>8}")
    for r in results["runs"]:
        for shape, f in r["shapes"].items():
            print(
                f"{r['objects']:>6} {shape:>9} {f['seconds']:>7} {f['objects_per_second']:>7} "
                f"{f['ratio']:>6} {f['kube_writes_per_object']:>10} {f['peak_rss_mb']:>8}"
            )
    print(f"raw results: {path}")


if __name__ == "__main__":
    main()
