"""The drift sidecar as a real server: `.venv-drift/bin/python -m drift` on loopback (the drift
environment, alibi-detect 0.11.4 + pydantic 1), a small TF-IDF model with a small detector,
and real binary CloudEvents posted over HTTP."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentiops.detection import environment
from sentiops.detection.detector import fit_model_dir
from sentiops.local.processes import Process, free_port, start_process, wait_http
from sentiops.models import load_model, modeldir
from sentiops.models.tfidf import TfidfModel
from tests.conftest import make_frame
from tests.helpers import metric_value, wait_until

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"

FILMS = ["film", "picture", "drama", "thriller", "documentary", "western", "biopic", "sequel"]
CRAFT = ["cinematography", "screenplay", "editing", "score", "ensemble cast", "pacing"]
ERAS = ["Victorian", "postwar", "Cold War", "Depression-era", "Renaissance", "jazz-age"]


def shifted_texts(n: int, seed: int = 0) -> list[str]:
    """Another domain: long, formal film-criticism sentences."""
    rng = random.Random(seed)
    return [
        f"The {rng.choice(CRAFT)} of this {rng.choice(ERAS)} {rng.choice(FILMS)} lingers "
        f"over its {rng.choice(CRAFT)}, while the director's {rng.choice(CRAFT)} recalls "
        f"{rng.choice(ERAS)} melodrama ({i})"
        for i in range(n)
    ]


def drift_python() -> Path:
    path = environment.drift_python()
    if path is None:
        pytest.fail(
            "the drift environment is missing (.venv-drift or $SENTIOPS_DRIFT_PYTHON): "
            "run `make drift-install` (part of `make install`)"
        )
    return path


@dataclass
class Corpus:
    train: list[str]
    holdout: list[str]
    traffic: list[str]  # in-domain, never seen by the model or the detector


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    df = make_frame(120, seed=0)
    texts = df.text.tolist()
    return Corpus(texts[:180], texts[180:270], texts[270:])


@pytest.fixture(scope="session")
def detector_model(tmp_path_factory: pytest.TempPathFactory, corpus: Corpus) -> Path:
    """A TF-IDF model (trained on the corpus' train part) with a small detector."""
    folder = tmp_path_factory.mktemp("drift-model") / "model"
    df = make_frame(120, seed=0)
    model = TfidfModel.fit(df.text[:180], df.label[:180], char_ngrams=False)
    modeldir.write(folder, model.save, {"model_type": "tfidf-logreg", "labels": model.labels})
    fit_model_dir(folder, corpus.train, corpus.holdout, permutations=100)
    return folder


def predictions(model_dir: Path, texts: list[str]) -> list[dict[str, float]]:
    model = load_model(model_dir)
    proba = model.predict_proba(texts)
    return [dict(zip(model.labels, map(float, row), strict=True)) for row in proba]


def cloudevent(kind: str, event_id: str, body: bytes, version: str | None) -> tuple[dict, bytes]:
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    attrs = {
        "type": kind,
        "source": "http://localhost/sentiment",
        "id": event_id,
        "datacontenttype": "application/json",
        "inferenceservicename": "sentiment",
        "namespace": "default",
        "component": "predictor",
        "endpoint": "default",
    }
    if version:
        attrs["modelversion"] = version
    headers, data = to_binary(CloudEvent(attrs, body))
    return dict(headers), bytes(data or b"")


def v1_pair(texts: list[str], probs: list[dict[str, float]]) -> tuple[dict, dict]:
    req = {"instances": texts}
    resp = {
        "predictions": [
            {"label": max(p, key=p.__getitem__), "score": max(p.values()), "probabilities": p}
            for p in probs
        ]
    }
    return req, resp


def v2_pair(texts: list[str], probs: list[dict[str, float]], version: str) -> tuple[dict, dict]:
    labels = list(probs[0])
    req = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
    resp = {
        "model_name": "sentiment",
        "model_version": version,
        "id": "x",
        "outputs": [
            {
                "name": "label",
                "datatype": "BYTES",
                "shape": [len(texts)],
                "data": [max(p, key=p.__getitem__) for p in probs],
            },
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [len(texts), len(labels)],
                "data": [p[k] for p in probs for k in labels],
            },
        ],
    }
    return req, resp


@dataclass
class Sidecar:
    url: str
    store: Path | str
    process: Process
    counter: list[int] = field(default_factory=lambda: [0])

    def post_pair(
        self,
        texts: list[str],
        probs: list[dict[str, float]],
        version: str | None = "7",
        protocol: str = "v1",
        client: httpx.Client | None = None,
    ) -> str:
        import json

        self.counter[0] += 1
        event_id = f"req-{self.counter[0]}"
        if protocol == "v1":
            req, resp = v1_pair(texts, probs)
        else:
            req, resp = v2_pair(texts, probs, version or "")
            version = None  # the KServe agent sends no ce-modelversion; v2 carries it
        post = (client or httpx).post
        for kind, body in ((REQUEST, req), (RESPONSE, resp)):
            headers, data = cloudevent(kind, event_id, json.dumps(body).encode(), version)
            r = post(self.url + "/", headers=headers, content=data, timeout=10)
            assert r.status_code == 202, r.text
        return event_id

    def post_texts(
        self, model_dir: Path, texts: list[str], per_request: int = 1, **kw: Any
    ) -> None:
        probs = predictions(model_dir, texts)
        with httpx.Client() as client:
            for i in range(0, len(texts), per_request):
                self.post_pair(
                    texts[i : i + per_request], probs[i : i + per_request], client=client, **kw
                )

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=10).text

    def sample(self, name: str, **labels: str) -> float:
        """The value of one series on /metrics (0 if absent)."""
        return metric_value(self.metrics(), name, **labels)

    def wait_for(self, check: Callable[[], bool], timeout: float = 120, what: str = "") -> None:
        """Until `check()` holds, while the sidecar runs (its log tail on a failure)."""

        def holds() -> bool:
            if check():
                return True
            if not self.process.alive():
                raise AssertionError(f"the sidecar exited:\n{self.process.tail()}")
            return False

        wait_until(
            holds, timeout=timeout, interval=0.3, what=what, detail=lambda: self.process.tail(4000)
        )

    def windows(self, version: str, result: str) -> float:
        return self.sample("sentiops_drift_windows_total", model_version=version, result=result)


def start_sidecar(
    workdir: Path, detector: Path | None, store: Path | str, *args: str, env: dict | None = None
) -> Sidecar:
    port = free_port()
    argv = [
        str(drift_python()),
        "-m",
        "drift",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--store",
        str(store),
        "--workdir",
        str(workdir),
        *args,
    ]
    if detector is not None:
        argv += ["--detector", str(detector)]
    proc = start_process(f"drift-{port}", argv, workdir, {"MALLOC_ARENA_MAX": "2", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/readyz", proc, 180, "drift sidecar ready")
    except Exception:
        proc.stop()
        raise
    return Sidecar(url, store, proc)


@pytest.fixture
def sidecar_factory(tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []

    def make(
        detector: Path | None, *args: str, store: Path | str | None = None, **kw: Any
    ) -> Sidecar:
        s = start_sidecar(
            tmp_path / f"sidecar-{len(started)}",
            detector,
            store or tmp_path / "store",
            *args,
            **kw,
        )
        started.append(s)
        return s

    yield make
    for s in started:
        s.process.stop()
