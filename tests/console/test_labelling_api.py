"""The console's GET /api/labelling answers as documented (sentiops/console/routes/status.py,
docs/labelling.md "Agreement"): the labelling section alone — Krippendorff's alpha per Label
Studio project and the tasks held for review — read from Prometheus, which scrapes the
labelling receiver's /metrics. All real and on loopback: the receiver's own app
(`sentiops.labelling.receiver.create_app`) whose worker ran one round (its gauges set by the
receiver's code from a sync's agreement and held tasks), Debian's Prometheus scraping it, and
the console app in process. Without Prometheus, or with it down, the section says it is
unavailable instead of failing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sentiops.console.app import ConsoleConfig, create_app
from sentiops.local.processes import free_port
from sentiops.local.stack import Prometheus
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

MODEL = "sentiment-labelling-api"  # a model name no other test's gauges use


class RoundSync:
    """What the receiver's worker reads after a push and a full pull (`sync.Sync`'s
    attributes): agreement per project (and per annotator), the tasks held for review."""

    model_name = MODEL

    def __init__(self) -> None:
        self.project_ids = {"queue": 1, "evaluation": 2}
        self.agreement: dict[str, Any] = {
            "queue": {
                "alpha": 0.743,
                "annotators": {"a@x": {"alpha": 0.8}, "b@x": {"alpha": 0.7}},
            },
            "evaluation": {"alpha": None, "annotators": {}},  # too few pairs yet
        }
        self.held: dict[str, list[int]] = {"queue": [11, 12], "evaluation": []}

    def push(self) -> dict[str, int]:
        return {"queue": 3, "evaluation": 1}

    def pull(self, ids: list[int] | None = None) -> dict[str, Any]:
        return {"accepted": 2, "revised": 0, "withdrawn": 0, "unchanged": 0, "refused": {}}


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The receiver's app on loopback after one round; its address (host:port)."""
    import uvicorn

    from sentiops.labelling.receiver import Worker, create_app
    from sentiops.security.auth import TokenFile

    secret = tmp_path_factory.mktemp("receiver") / "webhook-secret"
    secret.write_text("labelstudio:" + "s" * 32 + "\n")
    worker = Worker(RoundSync(), interval=3600)  # type: ignore[arg-type]
    worker.round()  # not started: one round, as the thread's first
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(worker, TokenFile(secret)), host="127.0.0.1", port=port, log_level="error"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20, interval=0.05, what="the receiver started")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def prometheus(receiver: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), [receiver])
    prom.start()
    try:
        query = f'sentiops_labelling_held_tasks{{model_name="{MODEL}"}}'

        def scraped() -> bool:
            r = httpx.get(f"{prom.url}/api/v1/query", params={"query": query}, timeout=5)
            return len(r.json()["data"]["result"]) == 2

        wait_until(scraped, timeout=60, interval=0.5, what="Prometheus' scrape of the receiver")
        yield prom
    finally:
        prom.stop()


def console(prometheus_url: str | None) -> TestClient:
    cfg = ConsoleConfig(prometheus_url=prometheus_url, model_name=MODEL)
    return TestClient(create_app(cfg), base_url="http://localhost")


def test_the_labelling_section_from_prometheus(prometheus: Prometheus) -> None:
    with console(prometheus.url) as c:
        r = c.get("/api/labelling")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "name": "labelling",
        "source": prometheus.url,
        "data": [
            # alpha not defined yet (too few pairs): not exported, so not in the row
            {"project": "evaluation", "held_for_review": 0.0},
            {"project": "queue", "alpha": 0.743, "held_for_review": 2.0},
        ],
        "error": None,
        "notes": [],
        "ok": True,
    }


def test_the_receiver_exports_what_the_console_reads(receiver: str) -> None:
    """The names and labels the console's queries use, on the receiver's /metrics."""
    text = httpx.get(f"http://{receiver}/metrics", timeout=5).text
    for line in (
        f'sentiops_labelling_agreement{{model_name="{MODEL}",project="queue"}} 0.743',
        f'sentiops_labelling_held_tasks{{model_name="{MODEL}",project="queue"}} 2.0',
        f'sentiops_labelling_held_tasks{{model_name="{MODEL}",project="evaluation"}} 0.0',
        f'sentiops_labelling_annotator_agreement{{annotator="a@x",model_name="{MODEL}",'
        'project="queue"} 0.8',
    ):
        assert line in text, line
    status = httpx.get(f"http://{receiver}/status", timeout=5).json()
    assert status["model_name"] == MODEL and status["projects"] == {"queue": 1, "evaluation": 2}
    assert status["held_for_review"] == {"queue": [11, 12], "evaluation": []}


def test_without_prometheus_the_section_says_so() -> None:
    with console(None) as c:
        body = c.get("/api/labelling").json()
    assert body["ok"] is False and body["data"] is None
    assert body["error"].startswith("unavailable: no Prometheus URL (pass --prometheus-url")


def test_prometheus_down_is_unavailable_not_an_error(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with console(down) as c:
        r = c.get("/api/labelling")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "labelling" and body["source"] == down
    assert body["ok"] is False and body["error"].startswith("unavailable: ")
