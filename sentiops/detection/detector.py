"""The drift detector of one model: fitted once per model (a pipeline step after train, or
`sentiops drift fit`) and stored inside the model directory, under the model's checksums, so
the sidecar loads it from the same place as the model and a new model always comes with its
own detector:

    <model>/drift/detector.json    settings, the encoder's identity, labels, reference sizes
    <model>/drift/reference.npy    sentence embeddings of the reference texts (float32 [n, 384])
    <model>/drift/predictions.npy  the model's probabilities on held-out texts (float32 [m, C])

The prediction-level references come from held-out texts: on its own training texts a model is
over-confident, and the confidence test would fire on any new traffic. Fitting needs only
torch + transformers (no Alibi) and runs anywhere the models extra is installed, the
pipeline's components image included; this module imports neither at import time.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentiops.config import SEED
from sentiops.detection.encoder import MAX_LENGTH, Embedder
from sentiops.errors import DataError, DriftError, ValidationFailed
from sentiops.store.checksum import sha256_file

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
TESTS = ("embedding", "label_mix", "confidence")
CORRECTION = "bonferroni"


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
    from sentiops.data.prepare import prepare  # lazy: drift env: pydantic 2
    from sentiops.models import modeldir  # lazy: pulls cryptography
    from sentiops.params import DataConfig  # lazy: drift env: pydantic 2

    manifest = modeldir.read_manifest(Path(model_dir), verify=False)
    ds = manifest.get("dataset") or {}
    fix = (
        "pass --holdout PATH with texts the model was never trained on (e.g. its validation "
        "split; the same file as --data if the model never saw --data)"
    )
    split = {
        k: ds["split"][k] for k in ("seed", "val_frac", "test_frac") if k in (ds.get("split") or {})
    }
    try:
        cfg = DataConfig(
            data=list(specs), text_column=text_column, label_column=label_column, **split
        )
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
    from sentiops.models import load_model, modeldir  # lazy: pulls cryptography

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
        from sentiops.models import modeldir  # lazy: pulls cryptography

        # the signature (when a verify key is configured) before anything is read: a partial
        # copy (the sidecar fetches only drift/ and the manifest) checks its own files below
        manifest = modeldir.read_manifest(path, verify=False, check_signature=True)
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
        reference = np.load(folder / "reference.npy", allow_pickle=False)
        predictions = np.load(folder / "predictions.npy", allow_pickle=False)
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
