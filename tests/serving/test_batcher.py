"""The predictor's adaptive batcher: a request's texts are computed in one forward call (the
windows of a long text are pooled together), and long requests never hold up short ones."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from serving.batcher import Batcher


class Work:
    """A forward pass that takes 0.05 s a window (a text costs one window per 100 chars)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    @staticmethod
    def cost(texts: list[str]) -> int:
        return sum(1 + len(t) // 100 for t in texts)

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(list(texts))
        time.sleep(0.05 * self.cost(texts))
        return np.tile([[0.2, 0.3, 0.5]], (len(texts), 1))


def _run(workers: int, plan: list[tuple[float, list[str]]]) -> tuple[Work, list[float]]:
    """Submit each request at its time; the seconds each took from its submission."""
    work = Work()
    batcher = Batcher(work, max_batch_size=8, max_latency_ms=5, workers=workers, cost=work.cost)

    async def one(at: float, texts: list[str]) -> float:
        await asyncio.sleep(at)
        start = time.perf_counter()
        out = await batcher.submit(texts)
        assert out.shape == (len(texts), 3)
        return time.perf_counter() - start

    async def main() -> list[float]:
        return list(await asyncio.gather(*(one(at, texts) for at, texts in plan)))

    return work, asyncio.run(main())


LONG = ["x" * 2000]  # 21 windows: a long request on its own
SHORT = ["fine"]


def test_a_requests_texts_are_computed_together_and_short_ones_batch() -> None:
    work, _ = _run(2, [(0.0, ["a" * 450, "b", "c" * 250]), (0.0, SHORT), (0.001, SHORT)])
    assert any(call[:3] == ["a" * 450, "b", "c" * 250] for call in work.calls)
    assert sum(len(c) for c in work.calls) == 5


def test_short_requests_never_wait_behind_long_ones_with_two_workers() -> None:
    """Two long requests (1 s of work each) then short ones: the long ones take turns on one
    worker, the short ones are answered on the other in a fraction of that."""
    plan = [(0.0, LONG), (0.01, LONG), *[(0.05 + 0.02 * i, SHORT) for i in range(5)]]
    work, took = _run(2, plan)
    assert max(took[2:]) < 0.5, took  # a long batch alone takes ~1 s
    assert took[1] > 1.5  # the second long request waited for the first (one long lane)
    assert work.calls.index(LONG) == 0


def test_with_one_worker_long_and_short_requests_take_turns() -> None:
    plan = [(0.0, LONG), (0.01, LONG), (0.02, SHORT)]
    work, took = _run(1, plan)
    order = [c for c in work.calls if c in (LONG, SHORT)]
    assert order == [LONG, SHORT, LONG]  # the short request went before the second long one
    assert took[2] < took[1]
