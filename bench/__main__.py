"""Run every ``bench/bench_*.py`` module's ``main()`` in name order and print what each returns."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path


def run() -> int:
    results = {}
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        name = path.stem
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        results[name] = module.main()
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(run())
