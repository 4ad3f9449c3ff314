"""The baseline: the same remote objects created by a plain httpx script, no Kubernetes involved.

Same emulator, same number of concurrent requests as the operator has workers, same client-side
rate limit (a token bucket with the connection's requestsPerSecond and burst). Workspaces first, then
the workflows and personas, each with the fewest requests a client needs in the dialect (`STEPS`):

- documented: one POST per object (`POST /api/v3/workspaces/`, `POST .../workflows/`, ...);
- platform: `POST /api/v3/workspaces {name}` per workspace, plus one `PATCH` when it has a display
  name (the create takes only the name), and one `sync-typed` upsert per workflow or persona
  (`{"payload": {"name": "<ws>--<short>", ...}}`).

Nothing is read back: it is the floor, not a client that checks what it made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

Body = dict[str, Any]
#: One request: method, path, body. An object is made by its steps, in order.
Step = tuple[str, str, Body]
#: Per dialect: workspace body -> its steps; (workspace, collection, body) -> the child's steps.
WorkspaceSteps = Callable[[Body], list[Step]]
ChildSteps = Callable[[str, str, Body], list[Step]]


def _platform_workspace(body: Body) -> list[Step]:
    steps: list[Step] = [("POST", "/api/v3/workspaces", {"name": body["name"]})]
    if body.get("displayName"):
        steps.append(("PATCH", f"/api/v3/workspaces/{body['name']}", {"alias": body["displayName"]}))
    return steps


def _platform_child(ws: str, collection: str, body: Body) -> list[Step]:
    payload = {**body, "name": f"{ws}--{body['name']}"}
    return [("POST", f"/api/v4/workspaces/{ws}/{collection}/sync-typed", {"payload": payload})]


STEPS: dict[str, tuple[WorkspaceSteps, ChildSteps]] = {
    "documented": (
        lambda body: [("POST", "/api/v3/workspaces/", body)],
        lambda ws, collection, body: [("POST", f"/api/v3/workspaces/{ws}/{collection}/", body)],
    ),
    "platform": (_platform_workspace, _platform_child),
}


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
    url: str, token: str, jobs: list[list[Step]], concurrency: int, bucket: Bucket
) -> tuple[list[float], int]:
    """Run every job (an object's steps, in order) from `concurrency` workers; each step is retried
    up to 5 times on an error answer."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[list[Step]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=60
    ) as http:

        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    job = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                for method, path, body in job:
                    for _ in range(5):
                        await bucket.acquire()
                        started = time.perf_counter()
                        response = await http.request(method, path, json=body)
                        latencies.append(time.perf_counter() - started)
                        if response.status_code < 300:
                            break
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def run(
    url: str,
    token: str,
    workspaces: list[Body],
    children: list[tuple[str, str, Body]],
    *,
    dialect: str,
    concurrency: int,
    rate: float,
    burst: int,
) -> dict[str, Any]:
    """Create `workspaces` ({name, displayName}), then `children` ((workspace, "workflows"|"personas",
    body with the short name)) in `dialect`; time it."""
    workspace_steps, child_steps = STEPS[dialect]
    bucket = Bucket(rate, burst)
    started = time.perf_counter()
    ws_jobs = [workspace_steps(body) for body in workspaces]
    lat_ws, err_ws = asyncio.run(_create_all(url, token, ws_jobs, concurrency, bucket))
    child_jobs = [child_steps(ws, collection, body) for ws, collection, body in children]
    lat_children, err_children = asyncio.run(_create_all(url, token, child_jobs, concurrency, bucket))
    seconds = time.perf_counter() - started
    total = len(workspaces) + len(children)
    latencies = sorted(lat_ws + lat_children)
    return {
        "dialect": dialect,
        "objects": total,
        "seconds": round(seconds, 2),
        "objects_per_second": round(total / seconds, 1),
        "requests": len(latencies),
        "requests_per_object": round(len(latencies) / total, 2),
        "errors": err_ws + err_children,
        "request_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "request_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
    }
