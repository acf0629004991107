"""Adaptive batching inside the predictor: concurrent requests that arrive within
`max_latency_ms` of each other (up to `max_batch_size` windows of work) share one forward pass.

KServe's own batcher is v1-only and lives in the agent sidecar; this one sits in front of the
model, serves v1, v2 and gRPC alike, and runs the model in worker threads so the event loop
keeps accepting requests while a batch is computed.

A request's cost is the windows its texts need (`cost`: a transformer reads a long text in
several windows, `sentiops.models.windows`), and a request's texts are always computed in one
forward call, so the windows of one text are pooled together. A **long** request (costing more
than half a batch) is batched apart from short ones, and long batches may occupy at most
`workers - 1` workers at once: a short request never waits behind a review of 300 words while
there is more than one worker (with one worker, requests take turns)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from sentiops import metrics


def one_per_text(texts: Sequence[str]) -> int:
    return len(texts)


@dataclass
class _Pending:
    texts: list[str]
    cost: int
    future: asyncio.Future[np.ndarray]
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """`workers` forward passes run at once (each single-threaded when there are several:
    measured on 2 cores with the int8 MiniLM, two single-threaded passes answer 253 texts/s,
    one two-threaded pass 195); a new batch is collected while the others compute."""

    def __init__(
        self,
        predict_proba: Callable[[list[str]], np.ndarray],
        max_batch_size: int = 64,
        max_latency_ms: float = 5.0,
        model_name: str = "sentiment",
        workers: int = 1,
        cost: Callable[[Sequence[str]], int] = one_per_text,
    ) -> None:
        self.predict_proba = predict_proba
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self.model_name = model_name
        self.workers = max(1, workers)
        self.cost = cost
        self._queues: dict[bool, asyncio.Queue[_Pending]] = {}
        self._ready: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._long_running = 0
        self._last_long = False
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sentiops-batch")

    def is_long(self, cost: int) -> bool:
        return cost > max(1, self.max_batch_size // 2)

    async def submit(self, texts: list[str]) -> np.ndarray:
        """Probabilities for `texts`, computed in a batch with whatever else is waiting."""
        if not self._queues:
            self._queues = {False: asyncio.Queue(), True: asyncio.Queue()}
            self._ready = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        cost = max(1, int(self.cost(texts)))
        await self._queues[self.is_long(cost)].put(_Pending(texts, cost, future))
        assert self._ready is not None
        self._ready.set()
        return await future

    def _lane(self) -> bool | None:
        """Which queue the next free worker serves (True: long requests), None: none yet.
        Several workers: short requests first, long ones while fewer than `workers - 1`
        long batches run. One worker: whichever waits, taking turns when both do."""
        short, long = not self._queues[False].empty(), not self._queues[True].empty()
        if self.workers == 1:
            if short and long:
                return not self._last_long
            return True if long else False if short else None
        if short:
            return False
        return True if long and self._long_running < self.workers - 1 else None

    async def _collect(self, lane: bool) -> list[_Pending]:
        queue = self._queues[lane]
        batch = [queue.get_nowait()]
        size = batch[0].cost
        deadline = time.perf_counter() + self.max_latency
        while size < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            batch.append(item)
            size += item.cost
        return batch

    async def _run(self) -> None:
        self._slots = asyncio.Semaphore(self.workers)
        assert self._ready is not None
        while True:
            await self._slots.acquire()  # a worker is free: collect its batch
            lane = self._lane()
            while lane is None:  # nothing it may take yet
                self._ready.clear()
                await self._ready.wait()
                lane = self._lane()
            self._last_long = lane
            if lane:
                self._long_running += 1
            batch = await self._collect(lane)
            asyncio.get_running_loop().create_task(self._compute(batch, lane))

    async def _compute(self, batch: list[_Pending], lane: bool) -> None:
        assert self._slots is not None and self._ready is not None
        texts = [t for item in batch for t in item.texts]
        metrics.BATCH_SIZE.labels(self.model_name).observe(len(texts))
        try:
            loop = asyncio.get_running_loop()
            proba = await loop.run_in_executor(self._pool, self.predict_proba, texts)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        finally:
            if lane:
                self._long_running -= 1
            self._slots.release()
            self._ready.set()  # a long lane may have opened
        start = 0
        for item in batch:
            end = start + len(item.texts)
            if not item.future.done():
                item.future.set_result(proba[start:end])
            start = end
