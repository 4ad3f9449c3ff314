"""Run the operator and keep writing what its memory holds, by type.

    python -m bench.memprofile OUT.txt run --kubeconfig ... (the operator's own arguments)

A thread rewrites OUT.txt every ``RUNWHEN_BENCH_MEMPROFILE_EVERY`` seconds (default 10) with the
process's RSS, the garbage collector's tracked objects counted by type (the 40 most numerous, with
their shallow sizes), and the sizes of the largest containers. Cheap enough (no tracemalloc) to run
at N = 5,000; the harness runs the operator this way when ``RUNWHEN_BENCH_MEMPROFILE`` names a
directory.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _deep_size(value: object, seen: set[int] | None = None) -> int:
    """Bytes of ``value`` and everything it holds (dicts, lists, strings), each object once."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in value.items())
    elif isinstance(value, list | tuple):
        size += sum(_deep_size(v, seen) for v in value)
    return size


def _write(out: Path) -> None:
    objects = gc.get_objects()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in objects:
        kind = type(obj)
        name = f"{getattr(kind, '__module__', '?')!s}.{getattr(kind, '__qualname__', kind.__name__)!s}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    bodies = [o for o in objects if type(o) is dict and "apiVersion" in o and "metadata" in o and "kind" in o]
    lines = [f"at {time.strftime('%H:%M:%S')}: RSS {_rss_mb():.1f} MB, {len(objects)} tracked objects", ""]
    ids = {id(b) for b in bodies}
    lines.append(f"{len(bodies)} Kubernetes object bodies held ({len(ids)} distinct dicts)")
    if bodies:
        sample = max(bodies, key=_deep_size)
        managed = (sample.get("metadata") or {}).get("managedFields")
        lines.append(
            f"largest body: {_deep_size(sample) / 1e3:.1f} kB deep, of which managedFields "
            f"{_deep_size(managed) / 1e3 if managed is not None else 0:.1f} kB; mean "
            f"{sum(_deep_size(b) for b in bodies[:200]) / min(len(bodies), 200) / 1e3:.1f} kB"
        )
        holders: Counter[str] = Counter()
        for body in bodies[:300]:
            for ref in gc.get_referrers(body):
                if ref is objects or ref is bodies:
                    continue
                kind = type(ref).__qualname__
                if isinstance(ref, dict):
                    keys = [k for k, v in ref.items() if v is body][:2]
                    kind += f"[{','.join(map(str, keys))}]"
                elif hasattr(ref, "f_code"):
                    kind += f"({ref.f_code.co_name})"
                holders[kind] += 1
        lines.append("holders of 300 bodies: " + ", ".join(f"{k} x{n}" for k, n in holders.most_common(12)))
    lines.append("")
    lines += [f"{n:9d}  {sizes[name] / 1e6:8.2f} MB  {name}" for name, n in counts.most_common(40)]
    lines += ["", "by shallow size:"]
    lines += [f"{size / 1e6:8.2f} MB  {counts[name]:9d}  {name}" for name, size in sizes.most_common(25)]
    del objects
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


def main() -> int:
    out = Path(sys.argv[1])
    every = float(os.environ.get("RUNWHEN_BENCH_MEMPROFILE_EVERY", "10"))

    def loop() -> None:
        while True:
            time.sleep(every)
            _write(out)

    threading.Thread(target=loop, name="memprofile-writer", daemon=True).start()
    from runwhen_operator import cli

    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
