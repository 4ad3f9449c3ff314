"""An asyncio token bucket: ``rate`` tokens per second, at most ``burst`` saved up.

Each ``acquire()`` reserves the next free slot at once and then sleeps until that slot, so callers
are served in the order they asked (fair, FIFO), waiting costs one timer and no polling, and the
bucket needs no lock (the event loop runs one reservation at a time). ``try_take()`` never waits:
it takes a token or says how long until one is saved up (the client's login limiter uses it).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0 or math.isnan(rate):
            raise ValueError("requests_per_second must be greater than 0")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._rate = float(rate)
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> int:
        return int(self._burst)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._updated = now

    def reserve(self) -> float:
        """Take one token now (the balance may go negative) and return how long to wait for it."""
        self._refill()
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self._rate

    def try_take(self) -> float:
        """Take one token if one is saved up and return 0; otherwise take nothing and return how long
        until one will be (the caller decides whether to wait; the bucket never goes negative here)."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate

    async def acquire(self) -> None:
        """Wait for a token. Cancelling the wait gives the token back."""
        delay = self.reserve()
        if delay <= 0:
            return
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self._tokens += 1.0
            raise
