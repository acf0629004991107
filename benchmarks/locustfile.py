"""Load for `make bench-serving` (locust, headless, its own process).

Each user posts v1 requests of BENCH_BATCH texts drawn in order from BENCH_TEXTS (a JSON list
of real tweets: the test split) to BENCH_PATH, back to back (no think time)."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

from locust import FastHttpUser, constant, task

TEXTS = json.loads(Path(os.environ["BENCH_TEXTS"]).read_text())
BATCH = int(os.environ.get("BENCH_BATCH", "1"))
PATH = os.environ.get("BENCH_PATH", "/v1/models/sentiment:predict")
_cursor = itertools.count()


class Client(FastHttpUser):
    wait_time = constant(0)

    @task
    def predict(self) -> None:
        start = next(_cursor) * BATCH
        batch = [TEXTS[(start + i) % len(TEXTS)] for i in range(BATCH)]
        with self.client.post(PATH, json={"instances": batch}, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
