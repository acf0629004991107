"""The webhook receiver (`sentiops labels serve`): Label Studio's annotation webhooks in, the
platform's labels out, plus a periodic push and pull so nothing waits for a webhook that never
came (Label Studio down, a webhook timed out, an installation without webhooks).

- `POST /webhook`: an `ANNOTATION_CREATED`, `ANNOTATIONS_CREATED`, `ANNOTATION_UPDATED` or
  `ANNOTATIONS_DELETED` event. Its `Authorization: Bearer <secret>` must be the shared webhook
  secret (compared in constant time: `sentiops.security.auth`), else 401/403 and nothing is
  done; a body that is not such an event (malformed, too deep, over 1 MB) is a 4xx. The event
  is only a hint: its task ids are queued (202) and a worker pulls those tasks from Label
  Studio's API and stores their labels (`sync.Sync.pull`), so a forged or stale payload can
  say nothing about a label.
- `GET /healthz`, `GET /status` (the last push and pull, projects, agreement, held tasks),
  `GET /metrics` (Prometheus).

The receiver holds the webhook secret, Label Studio's API token and the feedback token, each
read from a file; annotators hold none of them. Every `interval` seconds it pushes new texts
and pulls every task; when Label Studio or the feedback API is down it waits longer each time
(up to `max_backoff`) and tries again — the texts keep waiting in the store.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from sentiops.errors import InvalidInput
from sentiops.labelling.sync import Sync
from sentiops.security.auth import AuthError
from sentiops.security.limits import json_body

logger = logging.getLogger("sentiops.labelling.receiver")
MAX_BODY = 1024 * 1024
EVENTS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")

AGREEMENT = Gauge(
    "sentiops_labelling_agreement",
    "Krippendorff's alpha (nominal) of a project's annotators (last full pull)",
    ["model_name", "project"],
)
ANNOTATOR_AGREEMENT = Gauge(
    "sentiops_labelling_annotator_agreement",
    "Krippendorff's alpha on the pairs an annotator is part of",
    ["model_name", "project", "annotator"],
)
HELD = Gauge(
    "sentiops_labelling_held_tasks",
    "Tasks whose annotations disagree without a majority (held for review)",
    ["model_name", "project"],
)
TASKS = Counter(
    "sentiops_labelling_tasks_total", "Tasks made in Label Studio", ["model_name", "project"]
)
LABELS = Counter(
    "sentiops_labelling_labels_total",
    "Labels sent to the feedback intake, by what they did",
    ["model_name", "outcome"],
)
ERRORS = Counter(
    "sentiops_labelling_sync_errors_total",
    "Pushes or pulls that failed (retried with backoff)",
    ["model_name", "reason"],
)
WEBHOOKS = Counter("sentiops_labelling_webhooks_total", "Webhook requests by outcome", ["outcome"])


#: The hint "pull every task" (a deletion names its annotations, not their tasks).
EVERYTHING = 0


def task_ids(event: Any) -> list[int]:
    """The task ids a Label Studio webhook event names — [EVERYTHING] for a deletion, whose
    payload names only the deleted annotations' ids — or ValueError when it is none of the
    annotation events."""
    if not isinstance(event, dict) or event.get("action") not in EVENTS:
        raise ValueError(f'expected one of {", ".join(EVENTS)} as "action"')
    if event["action"] == "ANNOTATIONS_DELETED":
        return [EVERYTHING]
    found = [event["task"].get("id")] if isinstance(event.get("task"), dict) else []
    for annotation in event.get("annotation"), *(event.get("annotations") or []):
        task = annotation.get("task") if isinstance(annotation, dict) else None
        found.append(task.get("id") if isinstance(task, dict) else task)
    ids = {v for v in found if isinstance(v, int) and not isinstance(v, bool) and v > 0}
    if not ids:
        raise ValueError("the event names no task")
    return sorted(ids)


class Worker(threading.Thread):
    """Pulls the tasks webhooks name, and every `interval` pushes and pulls everything."""

    def __init__(self, sync: Sync, interval: float = 10.0, max_backoff: float = 120.0) -> None:
        super().__init__(daemon=True, name="sentiops-labelling")
        self.sync, self.interval, self.max_backoff = sync, interval, max_backoff
        self.hints: queue.Queue[int] = queue.Queue(maxsize=100_000)
        self.stopped = threading.Event()
        self.last: dict[str, Any] = {}
        self.failures = 0

    def run(self) -> None:
        due = 0.0
        while not self.stopped.is_set():
            wait = self.interval * 2 ** min(self.failures, 8)
            first = None  # a due round comes first: a steady stream of hints must not starve it
            if time.monotonic() < due:
                try:
                    first = self.hints.get(timeout=max(0.0, min(due - time.monotonic(), 1.0)))
                except queue.Empty:
                    first = None
            try:
                if first is not None:
                    self.pull_tasks(first)
                elif time.monotonic() >= due:
                    self.round()
                    due = time.monotonic() + self.interval
                self.failures = 0
            except Exception as exc:  # noqa: BLE001 - down for a while: wait, then again
                self.failures += 1
                ERRORS.labels(self.sync.model_name, type(exc).__name__).inc()
                logger.warning(
                    "labelling: %s (try %d; again in %.0f s)",
                    exc,
                    self.failures,
                    min(wait, self.max_backoff),
                )
                due = time.monotonic() + min(wait, self.max_backoff)
                if first is not None:
                    self.hints.put_nowait(first)  # the hint stays for the next try
                self.stopped.wait(min(wait, self.max_backoff, 5.0))

    def pull_tasks(self, first: int) -> None:
        ids = {first}
        while True:
            try:
                ids.add(self.hints.get_nowait())
            except queue.Empty:
                break
        try:
            everything = EVERYTHING in ids
            self.note("webhook", self.sync.pull(None if everything else sorted(ids)))
        except BaseException:
            for i in ids - {first}:
                self.hints.put_nowait(i)
            raise

    def round(self) -> dict[str, Any]:
        """One push and one full pull; the metrics follow."""
        made = self.sync.push()
        for kind, n in made.items():
            TASKS.labels(self.sync.model_name, kind).inc(n)
        report = self.sync.pull()
        for kind, found in self.sync.agreement.items():
            if found.get("alpha") is not None:
                AGREEMENT.labels(self.sync.model_name, kind).set(found["alpha"])
            for who, a in found.get("annotators", {}).items():
                if a.get("alpha") is not None:
                    ANNOTATOR_AGREEMENT.labels(self.sync.model_name, kind, who).set(a["alpha"])
        for kind, held in self.sync.held.items():
            HELD.labels(self.sync.model_name, kind).set(len(held))
        self.note("round", {"pushed": made, **report})
        return report

    def note(self, what: str, report: dict[str, Any]) -> None:
        for key in ("accepted", "revised", "withdrawn", "unchanged"):
            LABELS.labels(self.sync.model_name, key).inc(int(report.get(key) or 0))
        LABELS.labels(self.sync.model_name, "refused").inc(len(report.get("refused") or {}))
        self.last[what] = {"at": time.time(), **report}

    def stop(self) -> None:
        self.stopped.set()


def create_app(worker: Worker, secret: Any) -> Any:
    """The receiver's Starlette app: `secret` is a `sentiops.security.auth.TokenFile` (or
    `Tokens`) holding the webhook's shared secret."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def refuse(status: int, error: str, outcome: str) -> JSONResponse:
        WEBHOOKS.labels(outcome).inc()
        logger.warning("webhook refused (%d): %s", status, error)
        return JSONResponse({"error": error}, status_code=status)

    async def webhook(request: Request) -> Response:
        try:
            secret.check(request.headers.get("authorization"))
        except AuthError as exc:
            return refuse(exc.status, f"{exc.message}; {exc.hint}", "unauthorized")
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return refuse(413, f"the body is over {MAX_BODY} bytes", "too_large")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return refuse(413, f"the body is over {MAX_BODY} bytes", "too_large")
        try:
            ids = task_ids(json_body(body, what="the webhook's body"))
        except InvalidInput as exc:
            return refuse(400, f"{exc.message}; {exc.hint}", "bad")
        except ValueError as exc:
            return refuse(400, f"{exc}: send Label Studio's annotation webhooks here", "bad")
        for i in ids:
            try:
                worker.hints.put_nowait(i)
            except queue.Full:
                return refuse(429, "too many tasks waiting; the periodic pull takes them", "full")
        WEBHOOKS.labels("accepted").inc()
        return JSONResponse({"queued": ids}, status_code=202)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"alive": worker.is_alive()})

    async def status(_: Request) -> Response:
        return JSONResponse(
            {
                "model_name": worker.sync.model_name,
                "failures": worker.failures,
                "projects": worker.sync.project_ids,
                "last": worker.last,
                "agreement": worker.sync.agreement,
                "held_for_review": worker.sync.held,
            }
        )

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/webhook", webhook, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/status", status),
            Route("/metrics", metrics),
        ]
    )
