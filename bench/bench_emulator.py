"""RunWhen API emulator throughput over real loopback HTTP, in each dialect.

Starts ``python -m runwhen_operator.emulator --dialect D`` as a subprocess, then drives it with httpx
at a fixed concurrency for a bounded time: first GETs of one workspace, then POSTs creating workflows
(documented: ``POST .../workflows/``; platform: ``POST .../workflows/sync-typed`` with a new name
each time, so every one is a create). Prints and
returns requests per second, p50/p99 latency and the server's CPU time per request for each. Client
and server share the machine, so requests per second is a floor for the server alone; the CPU time per
request is the better measure of the server's own cost.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import harness

CONCURRENCY = 16
DURATION_SECONDS = 5.0
TOKEN = harness.TOKEN
DEFINITION = {
    "fromActivities": [
        {"name": "a", "actions": [{"tasks": {"slx": "s", "titles": ["t"], "sessionTTL": "20m"}}]},
    ]
}
#: Per dialect: (workspace create: path and body, the workspace's path, workflow create: path and the
#: body of the i-th one).
CALLS: dict[str, tuple[str, dict[str, Any], str, str, Callable[[int], dict[str, Any]]]] = {
    "documented": (
        "/api/v3/workspaces/",
        {"name": "bench", "displayName": "Bench"},
        "/api/v3/workspaces/bench",
        "/api/v3/workspaces/bench/workflows/",
        lambda i: {"name": "bench", "definition": DEFINITION},
    ),
    "platform": (
        "/api/v3/workspaces",
        {"name": "bench"},
        "/api/v3/workspaces/bench",
        "/api/v4/workspaces/bench/workflows/sync-typed",
        lambda i: {"payload": {"name": f"bench--wf-{i}", "definition": DEFINITION}},
    ),
}

Request = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


def _cpu_seconds(server: psutil.Process) -> float:
    times = server.cpu_times()
    return float(times.user + times.system)


async def _load(
    client: httpx.AsyncClient, server: psutil.Process, request: Request, duration: float, concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = await request(client)
                if response.status_code >= 400:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    cpu_before = _cpu_seconds(server)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    server_cpu = _cpu_seconds(server) - cpu_before
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
        "server_cpu_ms_per_request": round(server_cpu / len(latencies) * 1000, 3),
    }


async def _run(
    url: str, dialect: str, server: psutil.Process, duration: float, concurrency: int
) -> dict[str, Any]:
    ws_path, ws_body, get_path, post_path, post_body = CALLS[dialect]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    counter = itertools.count()
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        created = await client.post(ws_path, json=ws_body)
        created.raise_for_status()

        async def get(c: httpx.AsyncClient) -> httpx.Response:
            return await c.get(get_path)

        async def post(c: httpx.AsyncClient) -> httpx.Response:
            return await c.post(post_path, json=post_body(next(counter)))

        for _ in range(50):  # warm up connections and code paths
            await get(client)
        return {
            "get": await _load(client, server, get, duration, concurrency),
            "post": await _load(client, server, post, duration, concurrency),
        }


def main(
    dialect: str = "platform", duration: float = DURATION_SECONDS, concurrency: int = CONCURRENCY
) -> dict[str, Any]:
    """Measure; print one line per phase; return ``{"get": {...}, "post": {...}, ...}``."""
    with tempfile.TemporaryDirectory() as tmp:
        emulator = harness.Emulator(Path(tmp) / "emulator.log", dialect).start()
        try:
            results = asyncio.run(
                _run(emulator.url, dialect, psutil.Process(emulator.pid), duration, concurrency)
            )
        finally:
            emulator.stop()
    results["dialect"] = dialect
    results["concurrency"] = concurrency
    results["cpus"] = os.cpu_count()
    results["load_average_1m"] = round(os.getloadavg()[0], 2)
    for phase in ("get", "post"):
        r = results[phase]
        print(
            f"emulator {dialect} {phase.upper():4} c={concurrency}: {r['requests_per_second']:8.1f} req/s  "
            f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
            f"server CPU {r['server_cpu_ms_per_request']:.3f} ms/req  "
            f"({r['requests']} requests, {r['errors']} errors)",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()
