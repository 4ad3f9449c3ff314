"""The baseline: the same remote objects created by a plain httpx script, no Kubernetes involved.

Same emulator, same number of concurrent requests as the operator has workers, same client-side
rate limit (a token bucket with the connection's requestsPerSecond and burst). Workspaces first, then
the workflows and personas, one POST each: the least any client can do to make these objects.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx


class Bucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.capacity = rate, float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()

    async def acquire(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


async def _create_all(
    url: str, token: str, jobs: list[tuple[str, dict[str, Any]]], concurrency: int, bucket: Bucket
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url + "/api/v3/",
        headers={"Authorization": f"Bearer {token}"},
        limits=limits,
        timeout=60,
    ) as http:

        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    path, body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                for _ in range(5):
                    await bucket.acquire()
                    started = time.perf_counter()
                    response = await http.post(path, json=body)
                    latencies.append(time.perf_counter() - started)
                    if response.status_code < 300:
                        break
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def run(
    url: str,
    token: str,
    workspaces: list[dict[str, Any]],
    children: list[tuple[str, str, dict[str, Any]]],
    *,
    concurrency: int,
    rate: float,
    burst: int,
) -> dict[str, Any]:
    """Create `workspaces`, then `children` ((workspace, "workflows"|"personas", body)); time it."""
    bucket = Bucket(rate, burst)
    started = time.perf_counter()
    ws_jobs = [("workspaces/", body) for body in workspaces]
    lat_ws, err_ws = asyncio.run(_create_all(url, token, ws_jobs, concurrency, bucket))
    child_jobs = [(f"workspaces/{ws}/{collection}/", body) for ws, collection, body in children]
    lat_children, err_children = asyncio.run(_create_all(url, token, child_jobs, concurrency, bucket))
    seconds = time.perf_counter() - started
    total = len(workspaces) + len(children)
    latencies = sorted(lat_ws + lat_children)
    return {
        "objects": total,
        "seconds": round(seconds, 2),
        "objects_per_second": round(total / seconds, 1),
        "errors": err_ws + err_children,
        "request_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "request_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
    }
