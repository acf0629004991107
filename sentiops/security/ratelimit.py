"""Per-client request rates: a token bucket per client (`rate` requests a second, bursts of up
to `burst`), so a flood from one client is refused with 429 and `Retry-After` while every
other client is still served. The number of clients tracked is bounded (least recently seen
out first). Used by the predictor (REST), the drift sidecar and the feedback API; the key is
the client's token name when it sent a valid one, else its address."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        max_clients: int = 10_000,
        clock: object = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate {rate} must be > 0 (0 turns the limit off at the caller)")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.max_clients = max_clients
        self.clock = clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self.lock = threading.Lock()

    def allow(self, key: str) -> float:
        """0.0 if `key` may make a request now (and counts it), else the seconds to wait."""
        now = self.clock()  # type: ignore[operator]
        with self.lock:
            tokens, at = self.buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self.buckets[key] = (tokens, now)
            while len(self.buckets) > self.max_clients:
                self.buckets.popitem(last=False)
        return wait


def retry_after(wait: float) -> str:
    """The Retry-After header value (whole seconds, at least 1)."""
    return str(max(1, math.ceil(wait)))
