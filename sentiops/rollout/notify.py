"""Notifications of a rollout: every hold, promotion, rollback and approval request is posted to
the configured webhooks, with the decision's summary and a link to its record.

A target is `FORMAT=URL` (a bare URL is `generic`), one of three body formats:

    generic       {"event", "summary", "reasons", "model", "canary_version", "stable_version",
                   "mode", "step", "traffic", "record_url", "at"}: for your own receiver
    slack         {"text", "blocks"}: a Slack-compatible incoming webhook (Mattermost, Rocket.Chat
                   and Teams' Slack connector take it too)
    alertmanager  Alertmanager's `POST /api/v2/alerts` list (the path is added to a base URL):
                   alertname SentiOpsRollout, labels event/model/versions/severity, annotations
                   summary/description/record, generatorURL = the record's link

Notifying never holds up the rollout (Flagger's and Argo Rollouts' notifications do the same):
`send` only queues; one background thread posts with a short timeout; a failed post (refused,
timed out, non-2xx) or an event dropped from a full queue is counted, in the notifier
(`counts`, which the rollout record keeps) and in the Prometheus counter
`sentiops_rollout_notifications_total{format, outcome}`, and logged, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sentiops.errors import ConfigError
from sentiops.metrics import NOTIFY_FORMATS as FORMATS
from sentiops.metrics import ROLLOUT_NOTIFICATIONS

HOLD_EVENT, PROMOTE_EVENT, ROLLBACK_EVENT = "hold", "promote", "rollback"
APPROVAL_EVENT = "approval"
ALERTMANAGER_PATH = "/api/v2/alerts"
SEVERITY = {
    ROLLBACK_EVENT: "warning",
    APPROVAL_EVENT: "warning",
    HOLD_EVENT: "info",
    PROMOTE_EVENT: "info",
}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    format: str
    url: str

    @property
    def endpoint(self) -> str:
        if self.format == "alertmanager" and not self.url.rstrip("/").endswith(ALERTMANAGER_PATH):
            return self.url.rstrip("/") + ALERTMANAGER_PATH
        return self.url


def parse_targets(specs: Iterable[str]) -> list[Target]:
    """`FORMAT=URL` entries (comma-separated or one per item; a bare URL is generic)."""
    out = []
    for spec in (s.strip() for item in specs for s in str(item).split(",")):
        if not spec:
            continue
        kind, sep, url = spec.partition("=")
        if not sep or "://" in kind:
            kind, url = "generic", spec
        if kind not in FORMATS or not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"notification target {spec!r} is not FORMAT=URL",
                f"use one of {', '.join(FORMATS)} and an http(s) URL, e.g. "
                "slack=https://hooks.slack.com/services/...",
            )
        out.append(Target(kind, url))
    return out


@dataclass
class Notification:
    """What happened, for people: a one-line summary, the reasons, where the record is."""

    event: str  # hold | promote | rollback | approval
    summary: str
    reasons: list[str] = field(default_factory=list)
    model: str = ""
    canary_version: str = ""
    stable_version: str | None = None
    mode: str = "canary"
    step: int = 0
    traffic: int = 0
    record_url: str = ""
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def body(fmt: str, e: Notification) -> Any:
    """The JSON body of `e` in a target's format."""
    if fmt == "slack":
        lines = "\n".join(f"• {r}" for r in e.reasons[:10])
        link = f"<{e.record_url}|decision record>" if e.record_url else "no record link configured"
        return {
            "text": f"[{e.event}] {e.summary}",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{e.summary}*"}},
                *(
                    [{"type": "section", "text": {"type": "mrkdwn", "text": lines}}]
                    if lines
                    else []
                ),
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": f"{e.mode} v{e.canary_version} vs "
                            f"v{e.stable_version or '-'}, step {e.step} ({e.traffic}%) · {link}",
                        }
                    ],
                },
            ],
        }
    if fmt == "alertmanager":
        start = datetime.fromisoformat(e.at)
        alert = {
            "labels": {
                "alertname": "SentiOpsRollout",
                "event": e.event,
                "model": e.model,
                "canary_version": e.canary_version,
                "stable_version": e.stable_version or "",
                "mode": e.mode,
                "severity": SEVERITY.get(e.event, "info"),
            },
            "annotations": {
                "summary": e.summary,
                "description": "\n".join(e.reasons),
                "record": e.record_url,
            },
            "startsAt": e.at,
            "endsAt": (start + timedelta(hours=1)).isoformat(timespec="seconds"),
        }
        if e.record_url.startswith(("http://", "https://")):
            alert["generatorURL"] = e.record_url
        return [alert]
    return asdict(e)


class Notifier:
    """Posts events to `targets`, one background thread and queue per target (a dead or slow
    receiver delays no other); never blocks the caller, never raises."""

    def __init__(self, targets: Iterable[Target], timeout: float = 5.0, max_queued: int = 100):
        self.targets = list(targets)
        self.timeout, self.max_queued = timeout, max_queued
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._workers: dict[Target, tuple[queue.Queue[Notification | None], threading.Thread]] = {}

    def send(self, event: Notification) -> None:
        for target in self.targets:
            inbox = self._worker(target)
            try:
                inbox.put_nowait(event)
            except queue.Full:
                self._count(target, "dropped")
                log.warning("notification %s to %s dropped: queue full", event.event, target.url)

    def close(self, wait: float = 10.0) -> dict[str, int]:
        """Let queued posts finish for up to `wait` seconds in all (the rollout is over; what
        is still queued then is left to the daemon threads); returns the counts so far."""
        deadline = time.monotonic() + wait
        workers, self._workers = list(self._workers.values()), {}
        for inbox, _ in workers:
            with contextlib.suppress(queue.Full):
                inbox.put(None, timeout=max(deadline - time.monotonic(), 0.001))
        for _, thread in workers:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            return dict(self.counts)

    def _worker(self, target: Target) -> queue.Queue[Notification | None]:
        if target not in self._workers:
            inbox: queue.Queue[Notification | None] = queue.Queue(self.max_queued)
            thread = threading.Thread(
                target=self._post_all,
                args=(target, inbox),
                daemon=True,
                name=f"rollout-notify-{target.format}",
            )
            thread.start()
            self._workers[target] = (inbox, thread)
        return self._workers[target][0]

    def _count(self, target: Target, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
        ROLLOUT_NOTIFICATIONS.labels(target.format, outcome).inc()

    def _post_all(self, target: Target, inbox: queue.Queue[Notification | None]) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            while (event := inbox.get()) is not None:
                try:
                    r = client.post(target.endpoint, json=body(target.format, event))
                    ok, why = r.is_success, f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    ok, why = False, f"{type(exc).__name__}: {exc}"
                self._count(target, "sent" if ok else "failed")
                if not ok:
                    log.warning("notification %s to %s failed: %s", event.event, target.url, why)
