"""The annotators of the loop: people labelling predictions, played from the datasets' ground
truth, through the feedback API."""

from __future__ import annotations

import threading
import time
from typing import Any

from sentiops.config import MODEL_NAME


class Annotators:
    """People labelling predictions, played from the datasets' ground truth: the random
    evaluation sample of live predictions (late, in batches; once `labelling` is on) and,
    after drift, the labelling queue. Labels go through the feedback API (the traffic split
    forwards them to any predictor), which records which sample each label belongs to."""

    def __init__(
        self,
        url: str,
        truth: dict[str, str],
        name: str = MODEL_NAME,
        headers: dict[str, str] | None = None,
        sample_key: Any = None,
    ) -> None:
        from sentiops.security.secrets import SampleKey

        self.url = f"{url}/v1/models/{name}:feedback"
        # the platform hands people the evaluation sample; the demo reads it with the
        # installation's sample secret (SampleKey), which no client of the predictor has
        self.sample_key = sample_key or SampleKey.from_env()
        self.headers = dict(headers or {})  # the annotators' token
        self.truth = truth
        self.labelling = False
        self.pending: list[tuple[float, str, str]] = []  # (not before, id, label)
        self.done: set[str] = set()
        self.sent = 0
        self.refused: dict[int, int] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="annotators")

    def start(self) -> Annotators:
        self.thread.start()
        return self

    def on_response(self, text: str, body: dict[str, Any], request_id: str) -> None:
        """Replay callback: label the evaluation sample of what was predicted, a few seconds
        later (all of it: which texts are labelled is not the annotators' choice)."""
        label = self.truth.get(text)
        if label is not None and self.labelling and self.sample_key.in_sample(request_id):
            with self.lock:
                self.pending.append((time.monotonic() + 3.0, request_id, label))

    def label_queue(self, rows: list[dict[str, Any]]) -> int:
        """Label queued texts (id, text) whose ground truth is known."""
        n = 0
        with self.lock:
            for row in rows:
                label = self.truth.get(str(row.get("text")))
                if label is not None and str(row["id"]) not in self.done:
                    self.pending.append((time.monotonic(), str(row["id"]), label))
                    n += 1
        return n

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=30.0) as client:
            while not self.stop_event.wait(1.0):
                now = time.monotonic()
                with self.lock:
                    due = [p for p in self.pending if p[0] <= now and p[1] not in self.done]
                    self.pending = [p for p in self.pending if p[0] > now]
                    self.done.update(p[1] for p in due)
                for start in range(0, len(due), 200):
                    self._send(client, due[start : start + 200])

    def _send(self, client: Any, batch: list[tuple[float, str, str]]) -> None:
        body = [{"id": i, "label": lab} for _, i, lab in batch]
        try:
            r = client.post(self.url, json=body, headers=self.headers)
        except Exception:  # noqa: BLE001 - retried: the labels wait for the next round
            r = None
        if r is not None and r.status_code == 200:
            self.sent += len(batch)
            return
        code = r.status_code if r is not None else 0
        self.refused[code] = self.refused.get(code, 0) + 1
        problems = {
            p.get("id"): p.get("error")
            for p in (
                r.json().get("problems", [])
                if r is not None
                and r.headers.get("content-type", "").startswith("application/json")
                else []
            )
        }
        retry = [
            (time.monotonic() + 3.0, i, lab)
            for _, i, lab in batch
            if problems.get(i) != "already labelled"
        ]
        if code == 404 or code in (0, 502, 503):  # not flushed yet / a predictor restarting
            # only the unknown ids wait; the others of the batch go again with them
            with self.lock:
                self.done.difference_update(i for _, i, _ in retry)
                self.pending += retry

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
