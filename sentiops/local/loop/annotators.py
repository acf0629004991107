"""The annotators of the loop: people labelling predictions, played from the datasets' ground
truth — in Label Studio when it is installed (`StudioAnnotators`: annotations on the tasks the
sync made, stored by the labelling receiver with their provenance), else through the feedback
API (`Annotators`)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sentiops.config import MODEL_NAME
from sentiops.labelling.tasks import QUEUE
from sentiops.security.secrets import SampleKey


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


#: The demo annotator's Label Studio account (made by the admin; it never signs in).
ANNOTATOR = "annotator@sentiops.local"


class StudioAnnotators:
    """The same people labelling in Label Studio: they annotate the tasks the sync made from
    the store for the predictions of this run, with the ground truth, as `ANNOTATOR`; the
    annotations come back through the labelling receiver (webhook and periodic pull), which
    stores them with their provenance (annotator, project, task). They take the training
    queue's tasks (the most uncertain texts, in the queue's order: what retraining needs) and
    the random evaluation sample's (newest first: when the sample grows faster than they
    label, labels of the version serving now are not held up by a backlog) in turn.
    `workers` people annotate at the same time.

    With `receiver` (the labelling receiver's URL) they pause while its periodic round is
    overdue: its worker pulls the tasks webhooks name before anything else, so a steady
    stream of annotations would hold up its push of new tasks (at most `max_pause` s)."""

    PAGE = 100

    def __init__(
        self,
        studio: Any,
        truth: dict[str, str],
        name: str = MODEL_NAME,
        *,
        email: str = ANNOTATOR,
        poll: float = 2.0,
        workers: int = 3,
        receiver: str = "",
        round_every: float = 15.0,
        max_pause: float = 60.0,
    ) -> None:
        self.studio, self.truth, self.name, self.email = studio, truth, name, email
        self.poll, self.workers = poll, workers
        self.receiver, self.round_every, self.max_pause = receiver, round_every, max_pause
        self.paused_since: float | None = None
        self.paused = 0.0  # seconds paused for the receiver's rounds
        self.turn = 0
        self.url = studio.url
        self.labelling = False
        self.mine: set[str] = set()  # this run's prediction ids (while labelling)
        self.done: set[str] = set()  # prediction ids labelled (or being labelled)
        # (task id, prediction id, label): the queue's oldest first, the sample's newest first
        self.queue: list[tuple[int, str, str]] = []
        self.sample: list[tuple[int, str, str]] = []
        self.consumed: dict[int, int] = {}  # project -> tasks read (Label Studio lists by id)
        self.sent = 0
        self.refused: dict[str, int] = {}
        self.user: int | None = None
        self.projects: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="annotators")

    def start(self) -> StudioAnnotators:
        self.thread.start()
        return self

    def on_response(self, text: str, body: dict[str, Any], request_id: str) -> None:
        """Replay callback: a prediction of this run (its task, if the sync makes one, is
        labelled)."""
        if self.labelling and text in self.truth:
            with self.lock:
                self.mine.add(request_id)

    def label_queue(self, rows: list[dict[str, Any]]) -> int:
        """Queued texts (id, text) of this run whose ground truth is known and which are not
        labelled yet: they are labelled as their tasks appear in the training-queue project."""
        with self.lock:
            return sum(
                1
                for r in rows
                if str(r.get("id")) in self.mine
                and str(r.get("id")) not in self.done
                and str(r.get("text")) in self.truth
            )

    @property
    def pending(self) -> int:
        return len(self.queue) + len(self.sample)

    def _run(self) -> None:
        while not self.stop_event.wait(self.poll):
            try:
                self.round()
            except Exception as exc:  # noqa: BLE001 - Label Studio busy or restarting: later
                key = type(exc).__name__
                self.refused[key] = self.refused.get(key, 0) + 1

    def round(self) -> int:
        """Read the new tasks, then annotate until the next read is due; the annotations
        made."""
        if not self.projects:
            self.projects = self.studio.projects(self.name)
            self.user = self.studio.ensure_user(self.email)
        for kind, project in self.projects.items():
            self._read(kind, project)
        if self._receiver_overdue():
            return 0
        until = time.monotonic() + self.poll * 5
        with ThreadPoolExecutor(self.workers, thread_name_prefix="annotator") as pool:
            made = list(pool.map(lambda _: self._work(until), range(self.workers)))
        return sum(made)

    def _work(self, until: float) -> int:
        n = 0
        while time.monotonic() < until and not self.stop_event.is_set():
            item = self._take()
            if item is None:
                break
            task, pid, label = item
            try:
                self.studio.annotate(task, label, self.user)
            except BaseException:
                with self.lock:  # not labelled: it waits for the next round
                    self.done.discard(pid)
                    self.sample.append(item)
                raise
            with self.lock:
                self.sent += 1
            n += 1
        return n

    def _take(self) -> tuple[int, str, str] | None:
        """The next task to annotate (claimed), None when there is none."""
        with self.lock:
            while self.queue or self.sample:
                self.turn += 1
                from_queue = bool(self.queue) and (self.turn % 2 == 1 or not self.sample)
                item = self.queue.pop(0) if from_queue else self.sample.pop()
                if item[1] not in self.done:
                    self.done.add(item[1])
                    return item
        return None

    def _receiver_overdue(self) -> bool:
        """Whether the receiver's last round is more than two periods old (then the
        annotators pause, for at most `max_pause` seconds in a row)."""
        import httpx

        if not self.receiver:
            return False
        try:
            last = httpx.get(f"{self.receiver}/status", timeout=5).json()["last"]
            at = float(last["round"]["at"])
        except Exception:  # noqa: BLE001 - no round yet, or the receiver busy: carry on
            return False
        now = time.monotonic()
        if time.time() - at <= 2 * self.round_every:
            self.paused_since = None
            return False
        if self.paused_since is None:
            self.paused_since = now
        if now - self.paused_since > self.max_pause:
            return False
        self.paused += self.poll
        return True

    def _read(self, kind: str, project: int) -> None:
        """The project's tasks made since the last read (`/api/tasks` lists them by id)."""
        total = self.studio.task_count(project)
        seen = self.consumed.get(project, 0)
        while seen < total:
            body = self.studio.call(
                "GET",
                "/api/tasks",
                params={"project": project, "page": seen // self.PAGE + 1, "page_size": self.PAGE},
            )
            tasks = (body.get("tasks") if isinstance(body, dict) else body) or []
            fresh = tasks[seen % self.PAGE :]
            if not fresh:
                break
            seen += len(fresh)
            with self.lock:
                for t in fresh:
                    data = t.get("data") or {}
                    pid, label = (
                        str(data.get("prediction_id")),
                        self.truth.get(str(data.get("text"))),
                    )
                    if pid in self.mine and pid not in self.done and label is not None:
                        (self.queue if kind == QUEUE else self.sample).append(
                            (int(t["id"]), pid, label)
                        )
        self.consumed[project] = seen

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
