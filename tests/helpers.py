"""Helpers every test folder shares: waiting for a condition, and reading a Prometheus /metrics
page. (Real servers are in tests/servers.py, simulated traffic in tests/traffic.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = ["metric_value", "samples", "wait_until"]

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str,
    ignore: tuple[type[BaseException], ...] = (),
    detail: Callable[[], str] | None = None,
) -> T:
    """Call `predicate` every `interval` seconds until it returns a true value, and return that
    value. After `timeout` seconds: an AssertionError that says what it waited for and the last
    value seen. An exception of a type in `ignore` counts as "not yet" (and is the last value
    seen: `ignore=(AssertionError,)` lets a predicate say why it is not there yet); any other
    exception ends the wait at once (a predicate that finds its server dead raises).
    `detail` adds to the timeout's message (a server's log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: object = predicate()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g} s waiting for {what} (last seen: {last!r})"
            raise AssertionError(message + (f"\n{detail()}" if detail else ""))
        time.sleep(interval)


def samples(text: str, name: str | None = None, **labels: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (a /metrics page), in page order; with `name`,
    only the samples of that name (`..._total`, `..._bucket`, as on the page) whose labels
    include `labels`."""
    found = [s for family in text_string_to_metric_families(text) for s in family.samples]
    if name is not None:
        found = [s for s in found if s.name == name]
    return [s for s in found if all(s.labels.get(k) == v for k, v in labels.items())]


def metric_value(text: str, name: str, default: float = 0.0, **labels: str) -> float:
    """The value of the first series `name` whose labels include `labels` (`default` if the page
    has none)."""
    found = samples(text, name, **labels)
    return found[0].value if found else default
