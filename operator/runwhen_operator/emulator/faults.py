"""Fault injection for ``/api/v3/``: latency, random server errors, a rate limit, failures after commit."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

from runwhen_operator.emulator.validation import Field, integer, number, parse_body

__all__ = ["FaultConfig", "Faults", "TokenBucket"]

FAULT_FIELDS = {
    "errorRate": Field(number(minimum=0, maximum=1)),
    "latencyMs": Field(number(minimum=0, maximum=60_000)),
    "rateLimitPerSecond": Field(number(minimum=0, exclusive_minimum=True, maximum=1_000_000)),
    "failAfterCommitRate": Field(number(minimum=0, maximum=1)),
    "seed": Field(integer()),
}


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0
    latency_ms: float = 0.0
    rate_limit_per_second: float | None = None
    fail_after_commit_rate: float = 0.0
    seed: int | None = None

    def wire(self) -> dict[str, Any]:
        """The configuration as set, camelCase, without the faults that are off."""
        data: dict[str, Any] = {}
        if self.error_rate:
            data["errorRate"] = self.error_rate
        if self.latency_ms:
            data["latencyMs"] = self.latency_ms
        if self.rate_limit_per_second is not None:
            data["rateLimitPerSecond"] = self.rate_limit_per_second
        if self.fail_after_commit_rate:
            data["failAfterCommitRate"] = self.fail_after_commit_rate
        if self.seed is not None:
            data["seed"] = self.seed
        return data


class TokenBucket:
    """``rate`` tokens per second, holding at most ``max(1, rate)``; starts full."""

    def __init__(self, rate: float, *, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self._clock = clock
        self._last = clock()

    def take(self) -> float:
        """Take one token: 0.0 if granted, else the seconds until one is available."""
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Faults:
    """The current fault configuration and its random source."""

    def __init__(self) -> None:
        self.config = FaultConfig()
        self.random = random.Random()
        self.bucket: TokenBucket | None = None

    def configure(self, body: Any) -> FaultConfig:
        """Replace the configuration (``{}`` turns every fault off). Raises Invalid on a bad body."""
        data = parse_body(body, FAULT_FIELDS, partial=True)
        rate = data.get("rateLimitPerSecond")
        self.config = FaultConfig(
            error_rate=data.get("errorRate", 0.0),
            latency_ms=data.get("latencyMs", 0.0),
            rate_limit_per_second=rate,
            fail_after_commit_rate=data.get("failAfterCommitRate", 0.0),
            seed=data.get("seed"),
        )
        self.random = random.Random(self.config.seed)
        self.bucket = TokenBucket(rate) if rate is not None else None
        return self.config

    def clear(self) -> None:
        self.configure({})

    @property
    def active(self) -> bool:
        config = self.config
        return bool(
            config.error_rate
            or config.latency_ms
            or config.rate_limit_per_second is not None
            or config.fail_after_commit_rate
        )

    def retry_after(self) -> int | None:
        """None if the rate limit lets this request through, else the whole seconds to wait (>= 1)."""
        if self.bucket is None:
            return None
        wait = self.bucket.take()
        if wait <= 0.0:
            return None
        return max(1, math.ceil(wait))

    def server_error(self) -> int | None:
        """500, 502 or 503 with probability ``errorRate``, else None."""
        if self.config.error_rate and self.random.random() < self.config.error_rate:
            return self.random.choice((500, 502, 503))
        return None

    def after_commit(self) -> str | None:
        """``"error"`` or ``"drop"`` (about half each) with probability ``failAfterCommitRate``."""
        if self.config.fail_after_commit_rate and self.random.random() < self.config.fail_after_commit_rate:
            return "error" if self.random.random() < 0.5 else "drop"
        return None
