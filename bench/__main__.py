"""Run the benchmarks, save the raw results, and rewrite docs/benchmarks.md and docs/benchmarks.png.

    python -m bench                                   # every bench_*.py in both dialects, then the docs
    python -m bench --dialect platform                # one dialect of the RunWhen API
    python -m bench --only operator --sizes 100,1000  # one bench, chosen sizes
    python -m bench --report-only                     # the docs from bench/out/results.json

Results are kept per dialect. A partial run (``--dialect``, ``--only``, ``--sizes``, ``--no-steady``)
keeps the other parts of the previous results, so the page always shows the newest number of each
measurement.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.harness import DIALECTS, OUT, machine

RESULTS = OUT / "results.json"
NOTES = Path(__file__).parent / "notes.md"


def _modules() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", action="append", choices=_modules(), help="run only this bench (repeatable; default: all)"
    )
    parser.add_argument(
        "--dialect",
        choices=(*DIALECTS, "both"),
        default="both",
        help="the RunWhen API dialect the emulator speaks and the connection pins (default: %(default)s)",
    )
    parser.add_argument(
        "--sizes",
        default="100,1000,5000",
        help="operator: N values for the initial sync (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=16, help="operator --workers and direct concurrency")
    parser.add_argument("--rate", type=float, default=200.0, help="the connection's requestsPerSecond")
    parser.add_argument("--burst", type=int, default=400, help="the connection's burst")
    parser.add_argument("--steady-n", type=int, default=1000, help="operator: N of the steady-state run")
    parser.add_argument("--no-steady", action="store_true", help="operator: skip the steady-state run")
    parser.add_argument(
        "--note",
        default=None,
        help="one sentence for the page on what else the machine was doing during the run",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.*")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the docs from saved results")
    return parser.parse_args(argv)


def _load() -> dict[str, Any]:
    if not RESULTS.exists():
        return {}
    data: dict[str, Any] = json.loads(RESULTS.read_text())
    if "dialects" not in data and ("sync" in data or "emulator" in data):
        # Results from before there were two dialects: the emulator spoke only the documented one.
        old: dict[str, Any] = {k: data.pop(k) for k in ("sync", "steady", "emulator") if k in data}
        old.update({"machine": data.get("machine"), "started": data.get("started")})
        data["dialects"] = {"documented": old}
    return data


def _merge_sync(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_n = {r["n"]: r for r in old}
    by_n.update({r["n"]: r for r in new})
    return [by_n[n] for n in sorted(by_n)]


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = _load()
    if not args.report_only:
        results.update(
            {
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "machine": machine(),
                "settings": {"workers": args.workers, "rate": args.rate, "burst": args.burst},
                "note": args.note,
            }
        )
        dialects = DIALECTS if args.dialect == "both" else (args.dialect,)
        for dialect in dialects:
            kept = results.setdefault("dialects", {}).setdefault(dialect, {})
            kept.update({"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine()})
            for name in args.only or _modules():
                print(f"== bench_{name} ({dialect})", flush=True)
                module = importlib.import_module(f"bench.bench_{name}")
                if name == "operator":
                    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
                    found = module.main(
                        sizes,
                        dialect=dialect,
                        workers=args.workers,
                        rate=args.rate,
                        burst=args.burst,
                        steady_n=None if args.no_steady else args.steady_n,
                    )
                    kept["sync"] = _merge_sync(kept.get("sync", []), found["sync"])
                    if found.get("steady") is not None:
                        kept["steady"] = found["steady"]
                else:
                    found = module.main(dialect)
                    if found is not None:  # (None: this bench does not depend on the dialect)
                        kept[name] = found
            kept["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            kept["load_average_after"] = machine()["load_average"]
            OUT.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2, default=str))  # a dialect done is kept
        print(f"results: {RESULTS}")
    if not args.no_docs and results:
        report.write(results, NOTES.read_text() if NOTES.exists() else "")
        print(f"wrote {report.DOC} and {report.PLOT}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
