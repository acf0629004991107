"""The per-client token bucket: a client over its rate waits, the others do not."""

from __future__ import annotations

import pytest

from sentiops.security.ratelimit import RateLimiter, retry_after


def test_a_flood_from_one_client_does_not_starve_another() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=10, burst=5, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(5)] == [0.0] * 5  # the burst
    wait = limiter.allow("a")
    assert wait == pytest.approx(0.1) and retry_after(wait) == "1"
    assert limiter.allow("b") == 0.0  # another client is served
    now[0] += 0.1  # one token back for a
    assert limiter.allow("a") == 0.0 and limiter.allow("a") > 0


def test_the_clients_tracked_are_bounded() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_clients=3)
    for key in "abcd":
        limiter.allow(key)
    assert list(limiter.buckets) == ["b", "c", "d"]
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=0)
