"""Between the store and Label Studio, both ways, without losing or doubling anything.

- `push`: texts waiting in the store become tasks — the labelling queue's new rows in the
  model's training-queue project, the random sample's unlabelled predictions in its
  evaluation project. Which prediction ids are tasks already is read from Label Studio itself
  (once, then kept; read again when its task count differs), so a push after a crash or with
  Label Studio restored from a backup neither doubles nor skips a task.
- `pull`: each task's annotations become one feedback item (`annotations.TaskLabels.item`):
  a new label, a revision (an annotation edited, added or deleted), a withdrawal (no majority
  left) — or nothing, when that very revision is stored already. What is stored is read from
  the feedback store itself (`Feedback.stored`), so the store is the sync's only record:
  pulling twice, or after a crash between storing and answering, stores nothing twice.

Labels go through a sink: the feedback API (`HttpSink`: the predictor's `:feedback` with the
receiver's token, so the predictor's metrics count them as every label) or the store directly
(`StoreSink`, `sentiops labels sync --store`). Both run the same intake: validation, the join
with the prediction, the sample decision stored with it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sentiops.config import MODEL_NAME, Settings
from sentiops.errors import FeedbackError, StorageError
from sentiops.feedback.intake import Feedback
from sentiops.feedback.labels import Item
from sentiops.labelling.annotations import ORIGIN, TaskLabels, agreement, task_labels
from sentiops.labelling.studio import Studio
from sentiops.labelling.tasks import EVALUATION, KINDS, QUEUE, Sources, evaluation_task, queue_task

logger = logging.getLogger("sentiops.labelling")
#: Labels sent to the sink per request, tasks imported per request.
BATCH = 200


class Sink(Protocol):
    def record(self, items: list[Item]) -> dict[str, Any]: ...


@dataclass
class StoreSink:
    """Labels written to the store through the feedback intake (`Feedback.record`), under
    the name `labelled_by` (the name the receiver's token has, so either path may revise what
    the other stored)."""

    feedback: Any
    labelled_by: str = "labelstudio"

    def record(self, items: list[Item]) -> dict[str, Any]:
        return dict(self.feedback.record(items, source=ORIGIN, labelled_by=self.labelled_by))


@dataclass
class HttpSink:
    """Labels posted to a predictor's `:feedback` with the receiver's token (annotators never
    hold it); a refused request raises the FeedbackError the predictor answered with."""

    url: str
    token: str
    model_name: str = MODEL_NAME
    timeout: float = 60.0

    def record(self, items: list[Item]) -> dict[str, Any]:
        import httpx

        body = [
            {k: v for k, v in vars(i).items() if v not in ("", False)} | {"id": i.id} for i in items
        ]
        try:
            r = httpx.post(
                f"{self.url.rstrip('/')}/v1/models/{self.model_name}:feedback",
                json=body,
                timeout=self.timeout,
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError as exc:
            hint = "nothing was stored; the next pull sends it again"
            raise StorageError(
                f"the feedback API at {self.url} is unreachable: {exc}", hint
            ) from exc
        answer = r.json() if "json" in r.headers.get("content-type", "") else {}
        if r.status_code != 200:
            raise FeedbackError(
                str(answer.get("error") or r.text[:300]),
                "",
                r.status_code,
                answer.get("problems", []),
            )
        return dict(answer)


def _locked(method: Any) -> Any:
    """`method` under the Sync's lock (one push or pull at a time)."""

    @functools.wraps(method)
    def locked(self: Sync, *args: Any, **kw: Any) -> Any:
        with self.lock:
            return method(self, *args, **kw)

    return locked


@dataclass
class Sync:
    """Push and pull for one model name between the store and Label Studio."""

    studio: Studio
    store: str
    sink: Sink
    model_name: str = MODEL_NAME
    settings: Settings | None = None
    overlap: int = 1  # annotators per task (Label Studio's maximum annotations)
    webhook: tuple[str, str] | None = None  # (receiver URL, shared secret)
    reader: Any = None  # a Feedback over the store (what is labelled), made when None
    sources: Sources = field(init=False)
    project_ids: dict[str, int] = field(default_factory=dict)
    pushed: dict[str, set[str]] = field(default_factory=dict)  # kind -> prediction ids
    users: dict[int, str] = field(default_factory=dict)
    held: dict[str, list[int]] = field(default_factory=dict)  # kind -> tasks held for review
    agreement: dict[str, Any] = field(default_factory=dict)  # kind -> `annotations.agreement`
    lock: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()  # the receiver's worker and its callers share one Sync
        self.sources = Sources(self.store, self.model_name, self.settings)
        self.reader = self.reader or Feedback(self.store, self.settings, model_name=self.model_name)

    @_locked
    def projects(self) -> dict[str, int]:
        """The model's two projects (made when missing) and their webhooks."""
        if not self.project_ids:
            self.project_ids = self.studio.projects(self.model_name, self.overlap)
            if self.webhook is not None:
                for pid in self.project_ids.values():
                    self.studio.ensure_webhook(pid, *self.webhook)
        return self.project_ids

    def kind_of(self, project: int) -> str | None:
        return next((k for k, p in self.projects().items() if p == project), None)

    # ------------------------------------------------------------------ push
    def _pushed(self, kind: str) -> set[str]:
        pid = self.projects()[kind]
        known = self.pushed.get(kind)
        if known is None or len(known) != self.studio.task_count(pid):
            known = {
                str((t.get("data") or {}).get("prediction_id") or "")
                for t in self.studio.tasks(pid)
            }
            self.pushed[kind] = known
        return known

    @_locked
    def push(self, limit: int = 2000) -> dict[str, int]:
        """Import the texts waiting in the store as tasks (at most `limit` per project);
        returns the tasks made per project."""
        self.sources.refresh()
        labelled, _ = self.reader.stored(ORIGIN)
        made = {}
        for kind, rows, build in (
            (QUEUE, self.sources.queue, queue_task),
            (EVALUATION, self.sources.sample, evaluation_task),
        ):
            known = self._pushed(kind)
            new, ids = [], set()
            for row in rows:
                rid = str(row["id"])
                if rid in known or rid in ids or (kind == EVALUATION and rid in labelled):
                    continue
                new.append(build(row))
                ids.add(rid)
                if len(new) >= limit:
                    break
            for start in range(0, len(new), BATCH):
                part = new[start : start + BATCH]
                self.studio.import_tasks(self.projects()[kind], part)
                known.update(str(t["data"]["prediction_id"]) for t in part)
            made[kind] = len(new)
        return made

    # ------------------------------------------------------------------ pull
    @_locked
    def pull(self, task_ids: Iterable[int] | None = None) -> dict[str, Any]:
        """Store the labels of every task (or of `task_ids`: a webhook's tasks); returns what
        happened: labels stored, revised, withdrawn, unchanged, refused, tasks held."""
        self.projects()
        self.users = self.users or self.studio.users()
        if task_ids is None:
            todo = [t for done in self.review().values() for t in done]
        else:
            todo = [t for t in (self._labels(self.studio.task(i)) for i in task_ids) if t]
        return self.store_labels(todo)

    @_locked
    def review(self) -> dict[str, list[TaskLabels]]:
        """Every task of both projects with its labels; agreement and the tasks held for
        review (annotations without a majority) are kept per project."""
        self.users = self.users or self.studio.users()
        tasks = {
            k: [t for t in map(self._labels, self.studio.tasks(p)) if t]
            for k, p in self.projects().items()
        }
        for kind, done in tasks.items():
            self.held[kind] = [t.task for t in done if t.held]
            self.agreement[kind] = agreement(done)
        return tasks

    def _labels(self, task: dict[str, Any]) -> TaskLabels | None:
        labels = task_labels(task, self.users)
        if labels is not None and any(a.annotator.startswith("user-") for a in labels.annotations):
            self.users = self.studio.users()  # a new annotator
            labels = task_labels(task, self.users)
        return labels

    def store_labels(self, tasks: list[TaskLabels]) -> dict[str, Any]:
        """Send the items of `tasks` that change what is stored; a refused item (409: labelled
        elsewhere before, 404: its prediction is unknown here) is reported, never retried
        forever, and never holds up the others."""
        _, stored = self.reader.stored(ORIGIN)
        items = [i for i in (t.item(stored.get(t.prediction_id)) for t in tasks) if i]
        report: dict[str, Any] = {
            "tasks": len(tasks),
            "accepted": 0,
            "revised": 0,
            "withdrawn": 0,
            "unchanged": 0,
            "refused": {},
        }
        for start in range(0, len(items), BATCH):
            self._send(items[start : start + BATCH], report)
        report["held"] = {k: len(v) for k, v in self.held.items()}
        return report

    def _send(self, items: list[Item], report: dict[str, Any]) -> None:
        try:
            answer = self.sink.record(items)
        except FeedbackError as exc:
            refused = {str(p.get("id")): str(p.get("error")) for p in exc.problems if "id" in p}
            if not refused or exc.status >= 500:
                raise
            report["refused"].update(refused)
            logger.warning(
                "labels refused by the feedback intake (%d): %s", len(refused), exc.message
            )
            rest = [i for i in items if i.id not in refused]
            if rest:
                self._send(rest, report)
            return
        for key in ("accepted", "revised", "withdrawn", "unchanged"):
            report[key] += int(answer.get(key) or 0)

    @_locked
    def status(self) -> dict[str, Any]:
        """The projects, their tasks, agreement and held tasks (after the last full pull)."""
        projects = self.projects()
        return {
            "label_studio": self.studio.url,
            "model_name": self.model_name,
            "projects": {
                k: {
                    "id": projects[k],
                    "tasks": self.studio.task_count(projects[k]),
                    "held_for_review": self.held.get(k, []),
                    "agreement": self.agreement.get(k),
                }
                for k in KINDS
            },
        }
