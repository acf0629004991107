"""The sidecar's HTTP routes in process (no servers, no detector): `drift.server.create_app`
over a stand-in monitor, each route module's answers (`drift.routes`), the refusals of POST /
in their order (rate, token, size, event, version, queue) and their counts."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from drift.deps import MAX_BODY, Sidecar
from drift.server import create_app
from sentiops import metrics
from sentiops.security.auth import Tokens
from sentiops.security.ratelimit import RateLimiter
from tests.drift.conftest import REQUEST, cloudevent

TOKEN = "t" * 48
TEXTS = json.dumps({"instances": ["a text"]}).encode()


class Versions:
    """Version 7 known (cached), 8 known once asked, every other refused."""

    def cached(self, version: str) -> str | None:
        return "" if version == "7" else None

    def check(self, version: str) -> str:
        return "" if version == "8" else f"model version {version} is not in the store"


class StandInMonitor:
    def __init__(self, *, full: bool = False, ready: bool = True) -> None:
        self.ready, self.ready_reason = ready, "ready" if ready else "loading the detector"
        self.events: queue.Queue[Any] = queue.Queue(5)
        self.versions, self.full = Versions(), full
        self.offered: list[Any] = []
        self.closed = 0

    def offer(self, event: Any) -> bool:
        self.offered.append(event)
        return not self.full

    def status(self) -> dict[str, Any]:
        return {"versions": {"7": {"windows": 2, "since": object()}}}

    def close(self) -> None:
        self.closed += 1


def bad_count(reason: str) -> float:
    return metrics.DRIFT_BAD_EVENTS.labels(reason)._value.get()


@pytest.fixture
def monitor() -> StandInMonitor:
    return StandInMonitor()


@pytest.fixture
def client(monitor: StandInMonitor) -> Iterator[TestClient]:
    with TestClient(create_app(monitor)) as c:  # type: ignore[arg-type]
        yield c
    assert monitor.closed == 1  # the lifespan flushes the prediction log on the way out


def test_health_ready_status_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json() == {"ready": True, "reason": "ready"}
    status = client.get("/status").json()
    assert status["versions"]["7"]["windows"] == 2  # what JSON cannot hold, as a string
    assert isinstance(status["versions"]["7"]["since"], str)
    assert "sentiops_drift_events_total" in client.get("/metrics").text
    assert client.post("/status").status_code == 405


def test_not_ready_is_a_503_with_the_reason() -> None:
    with TestClient(create_app(StandInMonitor(ready=False))) as c:  # type: ignore[arg-type]
        r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["reason"] == "loading the detector"


def test_an_event_is_accepted_and_offered(client: TestClient, monitor: StandInMonitor) -> None:
    headers, body = cloudevent(REQUEST, "e1", TEXTS, "7")
    r = client.post("/", headers=headers, content=body)
    assert r.status_code == 202 and r.json() == {"status": "accepted", "id": "e1"}
    headers, body = cloudevent(REQUEST, "e2", TEXTS, "8")  # known once asked
    assert client.post("/", headers=headers, content=body).status_code == 202
    assert [e.id for e in monitor.offered] == ["e1", "e2"]


def test_bad_events_are_named_and_counted(client: TestClient, monitor: StandInMonitor) -> None:
    before = bad_count("unknown_version"), bad_count("not_cloudevent"), bad_count("too_large")
    headers, body = cloudevent(REQUEST, "e3", TEXTS, "9")
    r = client.post("/", headers=headers, content=body)
    assert r.status_code == 400 and r.json()["reason"] == "unknown_version"
    r = client.post("/", headers={"content-type": "application/json"}, content=TEXTS)
    assert r.status_code == 400 and r.json()["reason"] == "not_cloudevent"
    headers, _ = cloudevent(REQUEST, "e4", TEXTS, "7")
    r = client.post("/", headers=headers, content=b"x" * (MAX_BODY + 1))
    assert r.status_code == 413 and r.json()["reason"] == "too_large"
    after = bad_count("unknown_version"), bad_count("not_cloudevent"), bad_count("too_large")
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    assert not monitor.offered


def test_a_full_queue_is_a_429_never_a_5xx() -> None:
    with TestClient(create_app(StandInMonitor(full=True))) as c:  # type: ignore[arg-type]
        headers, body = cloudevent(REQUEST, "e5", TEXTS, "7")
        r = c.post("/", headers=headers, content=body)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["reason"] == "queue_full"


def test_a_token_is_needed_when_the_sidecar_has_them(monitor: StandInMonitor) -> None:
    tokens = Tokens.from_mapping({"predictor": TOKEN})
    with TestClient(create_app(monitor, tokens)) as c:  # type: ignore[arg-type]
        headers, body = cloudevent(REQUEST, "e6", TEXTS, "7")
        r = c.post("/", headers=headers, content=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="sentiops"'
        wrong = c.post(
            "/", headers={**headers, "authorization": "Bearer " + "x" * 48}, content=body
        )
        assert wrong.status_code == 403 and "www-authenticate" not in wrong.headers
        right = c.post("/", headers={**headers, "authorization": f"Bearer {TOKEN}"}, content=body)
        assert right.status_code == 202


def test_the_rate_limit_comes_first(monitor: StandInMonitor) -> None:
    app = create_app(monitor, None, RateLimiter(1, 1))  # type: ignore[arg-type]
    assert isinstance(app.state.sidecar, Sidecar)
    with TestClient(app) as c:
        headers, body = cloudevent(REQUEST, "e7", TEXTS, "7")
        assert c.post("/", headers=headers, content=body).status_code == 202
        r = c.post("/", headers={"content-type": "text/plain"}, content=b"not even an event")
    assert r.status_code == 429 and r.json()["reason"] == "rate_limited"
    assert r.headers["retry-after"] == "1"
