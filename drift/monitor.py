"""The sidecar's work, off the request path.

    POST /  -> parse (cheap) -> bounded queue -> [joiner thread] request + response by ce-id
            -> prediction log (buffered Parquet) + the model version's open window
            -> window full or too old -> [tester thread] embed + three tests -> metrics
               + the window's estimated performance (drift/estimate.py) -> metrics
            -> K drifting windows in a row -> labelling queue + retraining decision

One window per model version (stable and canary are told apart). A closed window waits for the
tester in a queue of two; when the tester is still busy with older windows it is skipped and
counted (sentiops_drift_windows_total{result="skipped"}), so the sidecar never falls behind
without saying so.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from drift import estimate
from drift.events import BadEvent, InferenceEvent, Joiner, LoggedPrediction
from drift.predlog import PredictionLog
from drift.retrain import Retrainer, write_labelling
from drift.settings import SidecarSettings
from drift.versions import VersionGate
from sentiops import metrics
from sentiops.config import model_uri
from sentiops.detection import detector, windows
from sentiops.detection.detector import DETECTOR_DIR
from sentiops.detection.encoder import Embedder
from sentiops.feedback.labels import RANDOM, TARGETED
from sentiops.security.secrets import SampleKey
from sentiops.store import layout

logger = logging.getLogger("sentiops.drift")
#: Tested windows' records kept per model version for /status (drift and estimate).
RECENT = 20


@dataclass
class Window:
    version: str
    opened: float = field(default_factory=time.monotonic)
    rows: list[dict[str, Any]] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass
class VersionState:
    """What the sidecar knows about one model version."""

    window: Window
    consecutive: int = 0
    drift_since: datetime | None = None
    drifting: deque[tuple[Window, float]] = field(default_factory=lambda: deque(maxlen=64))
    last: dict[str, Any] | None = None
    windows: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))


class DetectorSource:
    """The detector for a model version: one fixed model directory (`detector`), or the
    model's directory in the store, `config.model_uri(store, version)`, fetched on first use.
    All testers share one sentence encoder."""

    def __init__(self, settings: SidecarSettings) -> None:
        self.settings = settings
        self.testers: dict[str, Any] = {}
        self.missing: dict[str, str] = {}
        self.lock = threading.Lock()
        self._embedder: Any = None
        self.fixed: Any = None
        self.fixed_error = ""

    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = Embedder()
        return self._embedder

    def _tester(self, path: Path) -> Any:
        det = detector.load(path)
        if self.settings.alpha is not None:
            det.config["alpha"] = float(self.settings.alpha)
        tester = windows.WindowTester(det, self.embedder())
        _ = tester.mmd  # build Alibi's detector now, not on the first window
        return tester

    def load_fixed(self) -> None:
        with self.lock:
            if self.settings.detector and self.fixed is None:
                if self.fixed_error:
                    raise RuntimeError(self.fixed_error)
                try:
                    self.fixed = self._tester(Path(self.settings.detector))
                except Exception as exc:
                    self.fixed_error = str(exc)  # not retried on every event
                    raise
                self._log_fixed()

    def _log_fixed(self) -> None:
        if self.fixed is not None:
            logger.info(
                "detector %s loaded (model version %s, labels %s, alpha %s)",
                self.settings.detector,
                self.fixed.detector.version,
                self.fixed.detector.labels,
                self.fixed.detector.alpha,
            )

    def get(self, version: str) -> Any:
        if self.settings.detector:
            try:
                self.load_fixed()
            except Exception as exc:  # noqa: BLE001 - served on /readyz, windows count errors
                logger.error("drift detector %s: %s", self.settings.detector, exc)
            return self.fixed
        with self.lock:
            if version in self.testers:
                return self.testers[version]
            if version in self.missing:
                return None
            try:
                tester = self._tester(self._fetch(version))
            except Exception as exc:  # noqa: BLE001 - reported once per version, then skipped
                self.missing[version] = str(exc)
                logger.error("no drift detector for model version %s: %s", version, exc)
                return None
            self.testers[version] = tester
            return tester

    def _fetch(self, version: str) -> Path:
        from sentiops.store.storage import is_s3  # lazy: pulls minio

        uri = model_uri(self.settings.store, version, self.settings.model_name)
        if not is_s3(uri):
            return Path(uri)

        local = self.settings.workdir / "models" / version
        (local / DETECTOR_DIR).mkdir(parents=True, exist_ok=True)
        for f in layout.list_files(f"{uri}/{DETECTOR_DIR}"):
            rel = f.uri[len(uri) + 1 :]
            (local / rel).write_bytes(layout.get_bytes(f.uri))
        from sentiops.models.modeldir import MANIFEST, SIGNATURE  # lazy: pulls cryptography

        (local / MANIFEST).write_bytes(layout.get_bytes(f"{uri}/{MANIFEST}"))
        # its signature, if it has one (detector.load refuses an unsigned model when a verify
        # key is configured)
        if any(f.uri.endswith(f"/{SIGNATURE}") for f in layout.list_files(uri)):
            (local / SIGNATURE).write_bytes(layout.get_bytes(f"{uri}/{SIGNATURE}"))
        return local


class Monitor:
    def __init__(
        self,
        settings: SidecarSettings,
        detectors: DetectorSource | None = None,
        log: PredictionLog | None = None,
        retrainer: Retrainer | None = None,
    ) -> None:
        self.settings = settings
        # which predictions are in the random evaluation sample (the predictors decide the same
        # with the same secret: SENTIOPS_SAMPLE_SECRET_FILE)
        self.sample_key = SampleKey.from_env()
        self.detectors = detectors or DetectorSource(settings)
        self.versions = VersionGate(None if settings.detector else self._in_store)
        self.log = log
        self.retrainer = retrainer
        self.labelled = estimate.Labelled(
            settings.store, settings.model_name, settings.estimate_labels_seconds
        )
        self.events: queue.Queue[InferenceEvent] = queue.Queue(settings.queue_size)
        self.closed: queue.Queue[Window] = queue.Queue(2)
        self.joiner = Joiner(settings.join_timeout)
        self.states: dict[str, VersionState] = {}
        self.stopping = threading.Event()
        self.ready_reason = "loading the detector"
        self.ready = False
        self._predictor_version: tuple[float, str] | None = None
        self.threads = [
            threading.Thread(target=self._join_loop, daemon=True, name="drift-joiner"),
            threading.Thread(target=self._test_loop, daemon=True, name="drift-tester"),
        ]

    # ------------------------------------------------------------------------- lifecycle
    def start(self) -> Monitor:
        for t in self.threads:
            t.start()
        if self.log is not None:
            self.log.start()
        threading.Thread(target=self._load, daemon=True, name="drift-load").start()
        return self

    def _load(self) -> None:
        try:
            self.detectors.load_fixed()
            if not self.settings.detector:
                self.detectors.embedder()._load()
                windows._need_alibi()
            self.ready, self.ready_reason = True, "ready"
        except Exception as exc:  # noqa: BLE001 - the reason is served on /readyz
            self.ready_reason = f"detector failed to load: {exc}"
            logger.error("%s", self.ready_reason)

    def close(self) -> None:
        self.stopping.set()
        if self.log is not None:
            self.log.close()

    def _in_store(self, version: str) -> bool:
        uri = model_uri(self.settings.store, version, self.settings.model_name)
        try:
            return any(f.uri.endswith("/model.json") for f in layout.list_files(uri))
        except Exception as exc:  # noqa: BLE001 - the store is down: not known (retried later)
            logger.warning("cannot look up model version %s in the store: %s", version, exc)
            return False

    def offer(self, event: InferenceEvent) -> bool:
        try:
            self.events.put_nowait(event)
        except queue.Full:
            metrics.DRIFT_EVENTS.labels("dropped").inc()
            return False
        metrics.DRIFT_EVENTS.labels("accepted").inc()
        return True

    # ------------------------------------------------------------------------- joiner
    def version_of(self, pred: LoggedPrediction) -> str:
        if pred.model_version:
            return pred.model_version
        if self.settings.predictor_url:
            cached = self._predictor_version
            if cached is None or time.monotonic() - cached[0] > 30:
                cached = self._predictor_version = (time.monotonic(), self._ask_predictor())
            if cached[1]:
                return cached[1]
        if self.settings.model_version:
            return self.settings.model_version
        fixed = self.detectors.fixed
        return fixed.detector.version if fixed is not None else "unknown"

    def _ask_predictor(self) -> str:
        url = f"{self.settings.predictor_url.rstrip('/')}/v2/models/{self.settings.model_name}"  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - localhost
                versions = json.loads(resp.read()).get("versions") or []
                return str(versions[0]) if versions else ""
        except Exception:  # noqa: BLE001 - fall back to the configured version
            return ""

    def _join_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                event = None
            if event is not None:
                try:
                    preds = self.joiner.add(event)
                except BadEvent as exc:
                    metrics.DRIFT_BAD_EVENTS.labels(exc.reason).inc()
                    metrics.DRIFT_EVENTS.labels("bad").inc()
                    logger.warning("bad event pair: %s", exc)
                    preds = []
                if preds:
                    self._add(preds)
            expired = self.joiner.expire()
            if expired:
                metrics.DRIFT_EVENTS.labels("unmatched").inc(expired)
            self._close_old_windows()

    def _row(self, pred: LoggedPrediction, version: str) -> dict[str, Any]:
        classes: list[str]
        tester = self.detectors.testers.get(version) or self.detectors.fixed
        if tester is None and not isinstance(pred.probabilities, dict):
            tester = self.detectors.get(version)  # v2 rows need the label order (once)
        labels = tester.detector.labels if tester is not None else None
        if isinstance(pred.probabilities, dict):
            classes = labels or list(pred.probabilities)
            probs = [float(pred.probabilities.get(c, 0.0)) for c in classes]
        else:
            probs = [float(p) for p in pred.probabilities]
            classes = labels if labels and len(labels) == len(probs) else []

        return {
            "id": pred.id,
            "request_id": pred.request_id,
            "index": pred.index,
            "time": pred.time,
            "model_name": self.settings.model_name,
            "model_version": version,
            "text": pred.text,
            "label": pred.label,
            "confidence": max(probs) if probs else None,
            "probabilities": probs,
            "classes": classes,
            "client_id": pred.client_id,
            "sample": RANDOM if self.sample_key.in_sample(pred.id) else TARGETED,
        }

    def _add(self, preds: list[LoggedPrediction]) -> None:
        rows = []
        for pred in preds:
            version = self.version_of(pred)
            row = self._row(pred, version)
            rows.append(row)
            state = self.states.get(version)
            if state is None:
                state = self.states[version] = VersionState(Window(version))
            state.window.rows.append(row)
            if len(state.window.rows) >= self.settings.window_size:
                self._close(state)
            metrics.DRIFT_WINDOW_SIZE.labels(self.settings.model_name, version).set(
                len(state.window.rows)
            )
        if self.log is not None:
            self.log.add(rows)

    def _close_old_windows(self) -> None:
        now = time.monotonic()
        for state in self.states.values():
            w = state.window
            if (
                now - w.opened >= self.settings.window_seconds
                and len(w.rows) >= self.settings.min_window
            ):
                self._close(state)

    def _close(self, state: VersionState) -> None:
        window, state.window = state.window, Window(state.window.version)
        metrics.DRIFT_WINDOW_SIZE.labels(self.settings.model_name, window.version).set(0)
        try:
            self.closed.put_nowait(window)
        except queue.Full:
            metrics.DRIFT_WINDOWS.labels(self.settings.model_name, window.version, "skipped").inc()
            logger.warning(
                "window of %d predictions of model %s skipped: the tester is busy",
                len(window.rows),
                window.version,
            )

    # ------------------------------------------------------------------------- tester
    def _test_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                window = self.closed.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.test(window)
            except Exception as exc:  # noqa: BLE001 - one bad window never stops the sidecar
                metrics.DRIFT_WINDOWS.labels(
                    self.settings.model_name, window.version, "error"
                ).inc()
                logger.exception("testing window %s failed: %s", window.id, exc)

    def test(self, window: Window) -> dict[str, Any] | None:
        name, version = self.settings.model_name, window.version
        tester = self.detectors.get(version)
        if tester is None:
            metrics.DRIFT_WINDOWS.labels(name, version, "error").inc()
            return None
        labels = tester.detector.labels
        probs = np.array(
            [
                r["probabilities"]
                if r["classes"] == labels
                or (not r["classes"] and len(r["probabilities"]) == len(labels))
                else [
                    dict(zip(r["classes"], r["probabilities"], strict=False)).get(c, 0.0)
                    for c in labels
                ]
                for r in window.rows
            ],
            dtype=np.float64,
        )
        result = tester.test([r["text"] for r in window.rows], probs)
        metrics.DRIFT_TEST_SECONDS.observe(result.seconds)
        metrics.DRIFT_P_VALUE.labels(name, version, "combined").set(result.p_value)
        for test, values in result.tests.items():
            metrics.DRIFT_P_VALUE.labels(name, version, test).set(float(values["p_value"]))
        metrics.DRIFT_DETECTED.labels(name, version).set(1 if result.is_drift else 0)
        metrics.DRIFT_WINDOWS.labels(
            name, version, "drift" if result.is_drift else "no_drift"
        ).inc()
        state = self.states.setdefault(version, VersionState(Window(version)))
        state.windows += 1
        summary = {
            "window_id": window.id,
            "size": result.size,
            "p_value": result.p_value,
            "is_drift": result.is_drift,
            "tests": {t: v["p_value"] for t, v in result.tests.items()},
            "seconds": round(result.seconds, 3),
            "first": _iso(window.rows[0]["time"]),
            "last": _iso(window.rows[-1]["time"]),
            "estimate": estimate.window(
                name, version, labels, probs, estimate.reference_accuracy(tester.detector)
            ),
        }
        state.last = summary
        state.recent.append(summary)
        self.labelled.refresh()
        logger.info(
            "model %s window %s (%d): p=%.3g %s %s",
            version,
            window.id,
            result.size,
            result.p_value,
            "DRIFT" if result.is_drift else "ok",
            summary["tests"],
        )
        if not result.is_drift:
            state.consecutive, state.drift_since = 0, None
            state.drifting.clear()
        else:
            state.consecutive += 1
            if state.drift_since is None:
                state.drift_since = window.rows[0]["time"]
            state.drifting.append((window, result.p_value))
            if state.consecutive >= self.settings.consecutive:
                self._persistent(state, version)
        metrics.DRIFT_CONSECUTIVE.labels(name, version).set(state.consecutive)
        return summary

    def _persistent(self, state: VersionState, version: str) -> None:
        """K drifting windows in a row: queue their texts for labelling (each window once),
        then ask the retrainer."""
        while state.drifting:
            window, p_value = state.drifting.popleft()
            try:
                uri = write_labelling(
                    self.settings.store,
                    version,
                    window.rows,
                    window.id,
                    p_value,
                    self.settings.labelling_per_window,
                    estimated=_estimated_accuracy(state, window.id),
                )
                logger.warning(
                    "drift for %d consecutive windows (model %s): window %s queued for "
                    "labelling at %s",
                    state.consecutive,
                    version,
                    window.id,
                    uri,
                )
            except Exception as exc:  # noqa: BLE001 - the store may be down; alert still fires
                logger.error("labelling queue: cannot write window %s: %s", window.id, exc)
        if self.retrainer is not None and state.drift_since is not None:
            self.retrainer.consider(version, state.drift_since, state.consecutive)

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "reason": self.ready_reason,
            "queue": self.events.qsize(),
            "pending_joins": len(self.joiner.pending),
            "versions": {
                v: {
                    "open_window": len(s.window.rows),
                    "windows": s.windows,
                    "consecutive_drift": s.consecutive,
                    "last": s.last,
                    "recent": list(s.recent),
                    "estimate_error": self.labelled.errors.get(v),
                }
                for v, s in self.states.items()
            },
            "retrain": self.retrainer.history[-5:] if self.retrainer else [],
        }


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _estimated_accuracy(state: VersionState, window_id: str) -> float | None:
    """The estimated accuracy recorded for one of the version's recent windows."""
    for record in reversed(state.recent):
        if record["window_id"] == window_id:
            return float(record["estimate"]["accuracy"]["value"])
    return None
