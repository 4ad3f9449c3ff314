"""Leader election on a coordination.k8s.io Lease, so that of several replicas exactly one acts.

Only the holder of the Lease runs Kopf (watches, handlers, daemons); a standby only tries to take
the Lease, and a holder that loses it exits the process (its restart makes it a standby). The
holder renews the Lease every `retry_period`; a standby takes it over when the holder has not renewed
it for `lease_duration` as measured on the standby's own clock (as client-go does: the time a
renewal was *observed*, never the holder's timestamps, so clock skew between nodes does not matter).
A holder that cannot renew within `renew_deadline` stops acting at once, before any standby may take
over: every attempt is bounded in time (a partition drops packets rather than refusing them, and an
unanswered request must not keep a holder acting), and a timer stops the holder at its deadline even
while an attempt is still under way or the process was frozen (a paused VM, a long GC) past it. A
holder that sees the Lease held by another identity stops at once too.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from kubernetes import client

from runwhen_operator.handlers import kube

log = logging.getLogger("runwhen_operator.leader")


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    def __init__(
        self,
        kube_api: kube.Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[], None],
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.kube = kube_api
        self.api = client.CoordinationV1Api(kube_api.api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.on_started, self.on_stopped = on_started_leading, on_stopped_leading
        self.lease_duration, self.renew_deadline, self.retry_period = (
            lease_duration,
            renew_deadline,
            retry_period,
        )
        self.leading = False
        self._observed: tuple[str | None, str | None] = (None, None)  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._last_renewed = 0.0
        self._deadline: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        try:
            while True:
                # A holder's attempts end by its renew deadline; a standby's within the same span.
                started = time.monotonic()
                budget = self.renew_deadline
                if self.leading:
                    budget = self._last_renewed + self.renew_deadline - started
                try:
                    acquired = await asyncio.wait_for(self._try_acquire_or_renew(), max(budget, 0.1))
                except TimeoutError:
                    log.warning("leader election: no answer from the API server in %.1fs", budget)
                    acquired = False
                except Exception as exc:  # the API may be briefly unavailable; keep trying
                    log.warning("leader election: %s", exc)
                    acquired = False
                if acquired:
                    self._renewed(started)
                elif self.leading and self._held_by_other:
                    self._stop_leading(f"the Lease is held by {self._observed[0]}")
                elif self.leading and time.monotonic() - self._last_renewed > self.renew_deadline:
                    self._deadline_passed()
                await asyncio.sleep(self.retry_period)
        finally:
            if self._deadline is not None:
                self._deadline.cancel()
            if self.leading:
                try:
                    await asyncio.wait_for(self._release(), 2 * self.retry_period)
                except TimeoutError:
                    log.info("could not release the Lease: no answer from the API server")

    def _renewed(self, started: float) -> None:
        """The Lease was written by the attempt begun at `started` (monotonic clock).

        The deadline counts from the start of the attempt, not from its answer: the write reached the
        API server after that start, so a standby cannot have seen it earlier, however late the answer
        came back.
        """
        self._last_renewed = started
        # The event loop's clock is the monotonic clock: the timer fires at the deadline whatever this
        # task is waiting for, and before the workers resume after a freeze (due timers run first).
        if self._deadline is not None:
            self._deadline.cancel()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_at(
            loop.time() + started + self.renew_deadline - time.monotonic(), self._deadline_passed
        )
        if not self.leading:
            self.leading = True
            log.info("became the leader (Lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
            self.on_started()

    def _deadline_passed(self) -> None:
        self._stop_leading(f"could not renew the Lease in {self.renew_deadline:.0f}s")

    def _stop_leading(self, why: str) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self.leading:
            self.leading = False
            log.warning("lost the leadership (%s)", why)
            self.on_stopped()

    @property
    def _held_by_other(self) -> bool:
        holder = self._observed[0]
        return bool(holder) and holder != self.identity

    async def _try_acquire_or_renew(self) -> bool:
        now = _now()
        timeout = self.renew_deadline  # frees the thread of a request that gets no answer
        try:
            lease = await self.kube.call(
                self.api.read_namespaced_lease, self.name, self.namespace, _request_timeout=timeout
            )
        except kube.Gone:
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(now, acquire=True, transitions=0),
            )
            try:
                await self.kube.call(
                    self.api.create_namespaced_lease, self.namespace, body, _request_timeout=timeout
                )
            except kube.Conflict:
                return False
            self._observe_own(now)
            return True
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity
        renew = spec.renew_time.isoformat() if spec.renew_time else None
        mono = time.monotonic()
        if (holder, renew) != self._observed:
            self._observed, self._observed_at = (holder, renew), mono
        expired = mono - self._observed_at > float(spec.lease_duration_seconds or self.lease_duration)
        if holder and holder != self.identity and not expired:
            return False
        ours = holder == self.identity
        transitions = int(spec.lease_transitions or 0) + (0 if ours else 1)
        lease.spec = self._spec(now, acquire=not ours, transitions=transitions, previous=spec)
        try:
            await self.kube.call(
                self.api.replace_namespaced_lease,
                self.name,
                self.namespace,
                lease,
                _request_timeout=timeout,
            )
        except kube.Conflict:
            return False
        self._observe_own(now)
        return True

    def _observe_own(self, now: datetime) -> None:
        """What this replica just wrote is the record it has seen last."""
        self._observed, self._observed_at = (self.identity, now.isoformat()), time.monotonic()

    def _spec(
        self, now: datetime, *, acquire: bool, transitions: int, previous: Any = None
    ) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=int(self.lease_duration),
            acquire_time=now if acquire or previous is None else previous.acquire_time,
            renew_time=now,
            lease_transitions=transitions,
        )

    async def _release(self) -> None:
        """Hand the Lease over at once on a clean shutdown (a standby need not wait it out)."""
        timeout = self.retry_period
        try:
            lease = await self.kube.call(
                self.api.read_namespaced_lease, self.name, self.namespace, _request_timeout=timeout
            )
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                await self.kube.call(
                    self.api.replace_namespaced_lease,
                    self.name,
                    self.namespace,
                    lease,
                    _request_timeout=timeout,
                )
        except Exception as exc:
            log.info("could not release the Lease: %s", exc)


async def serve_standby_liveness(endpoint: str | None) -> web.AppRunner | None:
    """While a replica waits for the Lease, its liveness endpoint answers 200 (it is healthy: it is
    a standby); Kopf serves the endpoint itself once this replica leads."""
    if not endpoint:
        return None
    url = urllib.parse.urlsplit(endpoint)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app = web.Application()
    app.router.add_get(url.path or "/", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, url.hostname or "0.0.0.0", url.port or 80, reuse_address=True)
    await site.start()
    return runner
