"""RunWhen API emulator throughput over real loopback HTTP.

Starts ``python -m runwhen_operator.emulator`` as a subprocess, then drives it with httpx at a fixed
concurrency for a bounded time: first GETs of one workspace, then POSTs creating workflows. Prints and
returns requests per second, p50/p99 latency and the server's CPU time per request for each. Client
and server share the machine, so requests per second is a floor for the server alone; the CPU time per
request is the better measure of the server's own cost.
"""

from __future__ import annotations

import asyncio
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
WORKFLOW = {
    "name": "bench",
    "definition": {
        "fromActivities": [
            {"name": "a", "actions": [{"tasks": {"slx": "s", "titles": ["t"], "sessionTTL": "20m"}}]},
        ]
    },
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


async def _run(url: str, server: psutil.Process, duration: float, concurrency: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        base_url=url + "/api/v3/", headers=headers, limits=limits, timeout=30
    ) as client:
        created = await client.post("workspaces/", json={"name": "bench", "displayName": "Bench"})
        created.raise_for_status()

        async def get(c: httpx.AsyncClient) -> httpx.Response:
            return await c.get("workspaces/bench")

        async def post(c: httpx.AsyncClient) -> httpx.Response:
            return await c.post("workspaces/bench/workflows/", json=WORKFLOW)

        for _ in range(50):  # warm up connections and code paths
            await get(client)
        return {
            "get": await _load(client, server, get, duration, concurrency),
            "post": await _load(client, server, post, duration, concurrency),
        }


def main(duration: float = DURATION_SECONDS, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    """Measure; print one line per phase; return ``{"get": {...}, "post": {...}, ...}``."""
    with tempfile.TemporaryDirectory() as tmp:
        emulator = harness.Emulator(Path(tmp) / "emulator.log").start()
        try:
            results = asyncio.run(_run(emulator.url, psutil.Process(emulator.pid), duration, concurrency))
        finally:
            emulator.stop()
    results["concurrency"] = concurrency
    results["cpus"] = os.cpu_count()
    results["load_average_1m"] = round(os.getloadavg()[0], 2)
    for phase in ("get", "post"):
        r = results[phase]
        print(
            f"emulator {phase.upper():4} c={concurrency}: {r['requests_per_second']:8.1f} req/s  "
            f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
            f"server CPU {r['server_cpu_ms_per_request']:.3f} ms/req  "
            f"({r['requests']} requests, {r['errors']} errors)",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()
