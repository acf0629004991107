"""The console's test stack, all real and on loopback: a sqlite MLflow registry made by the
real training + gate + lifecycle code (champion, previous, a rejected candidate), MLflow's own
web UI over it, a real predictor (`python -m serving`, TF-IDF model) serving the champion, a
real Prometheus scraping the predictor and a stand-in for the drift sidecar's and feedback
API's gauges (tests/console/exporter.py: sentiops.metrics' own objects), the local rollout's
decision record written by sentiops.rollout's own dataclasses, and `sentiops console` itself
started through its CLI entry point."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentiops.gate import promotion
from sentiops.gate.decision import decide
from sentiops.local.processes import Process, free_port, start_process, wait_http
from sentiops.local.stack import Predictor, Prometheus
from sentiops.local.traffic import Replay
from sentiops.models import load_model, modeldir
from sentiops.models.tfidf import TfidfModel
from sentiops.params import GateConfig
from sentiops.records import write_json
from sentiops.registry import lifecycle as registry
from sentiops.registry import tracking
from sentiops.rollout.judge import Verdict
from sentiops.rollout.record import Record, Step
from tests.conftest import make_frame
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("SENTIOPS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("SENTIOPS_CHROMEDRIVER", "/usr/bin/chromedriver"))
PREDICTOR_MAX_CHARS = 1000
#: Replayed live traffic and what an annotator says about each text (the feedback API gets it).
TRUTH = {
    "the service was great and amazing": "positive",
    "awful app, terrible update": "negative",
    "the flight was okay": "neutral",
    "i love this phone": "positive",
    "worst coffee ever, so bad": "negative",
    "a normal average store": "neutral",
    "not bad at all, i guess": "positive",
    "the update is fine but slow": "negative",
}
TEXTS = list(TRUTH)


@dataclass
class Stack:
    home: Path
    console_url: str
    predictor: Predictor
    prometheus: Prometheus
    mlflow_url: str
    champion: str
    previous: str
    rejected: str
    console: Process
    warm_up_seconds: float
    store: Path  # the predictor's --feedback_store (its labels)

    @property
    def env(self) -> dict[str, str]:
        return {"SENTIOPS_HOME": str(self.home)}


def _trained(folder: Path, seed: int, n: int = 30, classes: int = 3) -> tuple[Path, str]:
    df = make_frame(n, seed=seed)
    df = df[df.label.isin(["positive", "negative", "neutral"][:classes])]
    model = TfidfModel.fit(df.text, df.label, char_ngrams=False)
    out = modeldir.write(folder, model.save, {"model_type": "tfidf-logreg", "labels": model.labels})
    fitted = registry.log_training(
        out, f"train-{seed}", {"seed": seed}, {}, {"validation": {"macro_f1": 0.9}}
    )
    return out, fitted["registered_version"]


def _gate(model_dir: Path, champion: Path | None) -> Any:
    test = make_frame(20, seed=9)
    champ = load_model(champion) if champion else None
    return decide(load_model(model_dir), test.text, test.label, champ, GateConfig(n_resamples=1000))


def seed_registry(work: Path) -> tuple[Path, dict[str, str]]:
    """The lifecycle of three versions, through the real gate and registry: v1 (trained on two
    classes) is the first champion; v2 is approved by the gate, then rolled back by its canary
    (rejected); v3 is approved and promoted, so v3 is champion and v1 previous. Returns v3's
    model directory."""
    tracking.configure()
    store = str(work / "store")
    d1, v1 = _trained(work / "m1", 1, classes=2)
    g1 = _gate(d1, None)
    registry.record_gate(g1, v1)
    promotion.register(d1, g1, store, registry_version=v1)
    registry.promote(v1, "first champion (no model served before)")
    d2, v2 = _trained(work / "m2", 2, 40)
    g2 = _gate(d2, d1)
    registry.record_gate(g2, v2)
    promotion.register(d2, g2, store, registry_version=v2)
    registry.reject(v2, ["error_rate: canary 12% vs stable 0%"])
    d3, v3 = _trained(work / "m3", 3, 40)
    g3 = _gate(d3, d1)
    registry.record_gate(g3, v3)
    promotion.register(d3, g3, store, registry_version=v3)
    registry.promote(v3, "canary healthy at 10/50/100%")
    return d3, {"champion": v3, "previous": v1, "rejected": v2}


def write_rollout(folder: Path, canary: str, stable: str) -> None:
    """The last local rollout's decision record, as sentiops.local.rollout writes it."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    steps = []
    for traffic, verdict in ((10, "continue"), (50, "continue"), (100, "promote")):
        checks = [
            Verdict("error_rate", "pass", 0.0, 0.01, 1.0, 0.0, 0.0, "error rate 0% vs 0%"),
            Verdict("latency_p95", "pass", 0.001, 0.05, 0.4, 0.011, 0.010, "p95 11 ms vs 10 ms"),
        ]
        steps.append(
            Step(
                traffic,
                verdict,
                checks,
                100.0,
                {"requests": 10 * traffic},
                {"requests": 1000 - 10 * traffic},
                now,
                now,
                "live" if traffic < 100 else "step 2",
            )
        )
    record = Record("promoted", canary, stable, steps, [], {"alpha": 0.05}, now, now)
    write_json(record.to_dict(), folder / "decision.json")


def spawn_console(home: Path, work: Path, *args: str) -> tuple[Process, str]:
    """`sentiops console ...` as a child process (not waited for)."""
    port = free_port()
    exe = Path(sys.executable).with_name("sentiops")
    proc = start_process(
        f"console-{port}",
        [str(exe), "console", "--port", str(port), *args],
        work,
        {"SENTIOPS_HOME": str(home)},
    )
    return proc, f"http://127.0.0.1:{port}"


def start_console(home: Path, work: Path, *args: str) -> tuple[Process, str]:
    proc, url = spawn_console(home, work, *args)
    wait_http(url + "/healthz", proc, 60, "console ready")
    return proc, url


def wait_warm(url: str, timeout: float = 90) -> float:
    """Until the console has imported MLflow and read the registry once; its warm-up time."""

    def warm() -> dict | None:
        health = httpx.get(url + "/healthz", timeout=10).json()
        return health if health["warm"] else None

    health = wait_until(warm, timeout=timeout, what=f"the console at {url} warm")
    return float(health["warm_up_seconds"])


def wait_for_series(prom_url: str, promql: str, points: int, timeout: float = 60) -> None:
    def enough() -> bool:
        now = time.time()
        params = {"query": promql, "start": now - 120, "end": now, "step": 1}
        r = httpx.get(f"{prom_url}/api/v1/query_range", params=params)
        result = r.json()["data"]["result"] if r.status_code == 200 else []
        return bool(result) and all(len(s["values"]) >= points for s in result)

    what = f"{points} points of {promql} in Prometheus"
    wait_until(enough, timeout=timeout, interval=0.5, what=what)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for every console test (it takes about a minute to start), stopped after
    the last of them: its replayed traffic must not run beside the rest of the suite."""
    work = tmp_path_factory.mktemp("console-stack")
    home = work / "home"
    with pytest.MonkeyPatch.context() as mp:  # the registry is made in this process
        mp.setenv("SENTIOPS_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", "")  # recorded as absent: MLflow's export is undone
        mp.delenv("MLFLOW_TRACKING_URI")
        champion_dir, v = seed_registry(work)
    write_rollout(home / "rollout", v["champion"], v["previous"])
    with contextlib.ExitStack() as stop:
        mlflow_port = free_port()
        mlflow = start_process(
            "mlflow-ui",
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--backend-store-uri",
                f"sqlite:///{home / 'mlflow.db'}",
                "--workers",
                "1",
            ],
            work,
        )
        stop.callback(mlflow.stop)
        # a lower text limit than the console's (5000): the predictor's own 400 passes through
        predictor = Predictor(
            champion_dir,
            v["champion"],
            work / "predictor",
            extra_args=[f"--max_chars={PREDICTOR_MAX_CHARS}", f"--feedback_store={work / 'store'}"],
        )
        stop.callback(predictor.stop)
        predictor.start(timeout=120)
        exporter_port = free_port()
        exporter = start_process(
            "exporter",
            [
                sys.executable,
                "-m",
                "tests.console.exporter",
                "--port",
                str(exporter_port),
                "--version",
                v["champion"],
                "--version",
                v["previous"],
                "--accuracy",
                v["previous"],
            ],
            work,
            {"PYTHONPATH": str(REPO)},
        )
        stop.callback(exporter.stop)
        prometheus = Prometheus(
            work / "prometheus", [f"127.0.0.1:{predictor.http_port}", f"127.0.0.1:{exporter_port}"]
        )
        stop.callback(prometheus.stop)
        prometheus.start()
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        wait_http(mlflow_url + "/health", mlflow, 120, "mlflow ui ready")
        console, url = start_console(
            home,
            work,
            "--predictor-url",
            predictor.url,
            "--prometheus-url",
            prometheus.url,
            "--mlflow-url",
            mlflow_url,
        )
        stop.callback(console.stop)
        # live traffic, labelled by an "annotator" through the predictor's feedback API
        feedback_url = f"{predictor.url}/v1/models/sentiment:feedback"

        def annotate(text: str, _: object, request_id: str) -> None:
            httpx.post(feedback_url, json={"id": request_id, "label": TRUTH[text]}, timeout=30)

        replay = Replay(predictor.url, TEXTS, rate=4.0, concurrency=1, on_response=annotate)
        stop.callback(replay.stop)
        replay.start()
        # the serving version's live accuracy: the predictor re-exports it from the store
        # every 30 s, so this waits up to about half a minute
        served = f'sentiops_live_accuracy{{model_version="{v["champion"]}"}}'
        wait_for_series(prometheus.url, served, 3, timeout=120)
        wait_for_series(prometheus.url, "sentiops_live_accuracy", 3)
        wait_for_series(prometheus.url, "rate(sentiops_predictions_total[1m])", 3)
        warm_up = wait_warm(url)
        yield Stack(
            home,
            url,
            predictor,
            prometheus,
            mlflow_url,
            v["champion"],
            v["previous"],
            v["rejected"],
            console,
            warm_up,
            work / "store",
        )
        log = console.tail()
        assert "Traceback" not in log, f"the console logged a traceback:\n{log}"
        # MLflow's own default (./mlflow.db in the working directory) is never touched
        assert not (work / "mlflow.db").exists()


def chromium_paths() -> tuple[Path, Path]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing or shutil.which(str(CHROMIUM)) is None:
        pytest.fail(
            f"headless Chromium is missing ({', '.join(missing) or CHROMIUM}): run "
            "`make browser-tools` (scripts/console/install-browser.sh: Debian's chromium + "
            "chromium-driver)",
            pytrace=False,
        )
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    chromium, driver_path = chromium_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1700",
    ):
        options.add_argument(flag)
    service = Service(
        executable_path=str(driver_path), log_output=str(profile.parent / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
