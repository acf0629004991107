"""Model types, loading from the one directory format, and prediction with input checks.

    (this module)   the registry of model types, `load_model`, `predict`
    modeldir        the one model directory format (atomic writes, checksums)
    tfidf           the TF-IDF + logistic regression baseline
    transformer     the fine-tuned transformer
    serving_form    its optimized serving form (ONNX Runtime int8)
    lexicon         the VADER lexicon: the rule-based yardstick beside every quality figure

Probabilities leave through `LoadedModel.predict_proba`, calibrated by the model directory's
calibrator when it has one (`sentiops.estimation.calibration`, fitted when the model was
packaged): whatever a model type returns, every caller sees calibrated probabilities.

A new model type: its module here, and one line in MODEL_TYPES (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sentiops.errors import ConfigError, InvalidInput, ModelError
from sentiops.estimation import calibration
from sentiops.models import modeldir
from sentiops.scoring import labels_from_proba

MAX_BATCH = 256
MAX_CHARS = 5000


class SentimentModel(Protocol):
    model_type: str
    labels: list[str]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...


#: The one registry of model types: name -> "module:class". A model type is a class with
#: `model_type`, `labels`, `predict_proba(texts)`, `save(dir)`, classmethods `load(dir, manifest)`
#: and `fit(texts, labels, *, <hyperparameters>, val_texts=(), val_labels=(), progress=True)`.
#: Its hyperparameters are the keyword-only arguments of `fit` (minus the FIT_CONTEXT ones).
MODEL_TYPES: dict[str, str] = {
    "tfidf-logreg": "sentiops.models.tfidf:TfidfModel",
    "transformer": "sentiops.models.transformer:TransformerModel",
}
FIT_CONTEXT = ("val_texts", "val_labels", "progress", "label_set", "scores", "sample_weight")


def model_class(model_type: str) -> Any:
    """The class of a registered model type (imported on first use: torch only if needed)."""
    target = MODEL_TYPES.get(str(model_type))
    if target is None:
        raise ConfigError(
            f"unknown model type {model_type!r}", f"use one of: {', '.join(MODEL_TYPES)}"
        )
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def hyperparameters(model_type: str) -> dict[str, Any]:
    """A model type's hyperparameters and their defaults (from its `fit` signature)."""
    sig = inspect.signature(model_class(model_type).fit)
    return {
        name: p.default
        for name, p in sig.parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in FIT_CONTEXT
    }


def fit_model(
    model_type: str,
    texts: Sequence[str],
    labels: Sequence[str],
    params: dict[str, Any],
    **context: Any,
) -> SentimentModel:
    """Fit a model type with exactly `params`; an unknown parameter is an error, never dropped."""
    known = hyperparameters(model_type)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(
            f"{model_type} has no hyperparameter(s) {unknown}",
            f"{model_type} takes: {', '.join(sorted(known))}",
        )
    extra = sorted(set(context) - set(FIT_CONTEXT))
    if extra:  # a programming error, not a user's: FIT_CONTEXT lists what fit() may get
        raise TypeError(f"unknown fit context {extra}; allowed: {FIT_CONTEXT}")
    model: SentimentModel = model_class(model_type).fit(texts, labels, **params, **context)
    return model


@dataclass
class LoadedModel:
    """A model plus its manifest: what the predictor, gate and drift detector work with.
    `calibrator`: the directory's calibration (None: the model type's raw probabilities)."""

    model: SentimentModel
    manifest: dict[str, Any]
    path: Path
    calibrator: calibration.Calibrator | None = None

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    def predict_proba(self, texts: Sequence[str], calibrated: bool = True) -> np.ndarray:
        """Probabilities of `texts` in `labels` order: calibrated (what is served), or with
        `calibrated=False` as the model type returns them."""
        proba = self.model.predict_proba(texts)
        return self.calibrate(proba) if calibrated else proba

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """The model's raw probabilities through its calibrator (unchanged without one)."""
        return proba if self.calibrator is None else self.calibrator.apply(proba)

    def read_fraction(self, texts: Sequence[str]) -> np.ndarray:
        """The share of each text the model reads: 1.0 unless a transformer's text is longer
        than its `max_tokens` (`sentiops.models.windows`; a bag of words reads everything)."""
        reader = getattr(self.model, "read_fraction", None)
        return reader(texts) if reader is not None else np.ones(len(texts))

    def predict_labels(self, texts: Sequence[str], batch_size: int = 256) -> list[str]:
        """The most probable label of every text (any number of texts, in batches)."""
        texts = list(texts)
        out: list[str] = []
        for start in range(0, len(texts), batch_size):
            out += labels_from_proba(
                self.predict_proba(texts[start : start + batch_size]), self.labels
            )
        return out


def load_model(folder: str | Path, verify: bool = True) -> LoadedModel:
    """Load any SentiOps model directory (checksums verified first)."""
    path = Path(folder)
    manifest = modeldir.read_manifest(path, verify=verify)
    kind = manifest.get("model_type")
    if kind not in MODEL_TYPES:
        raise ModelError(
            f"{path}: unknown model type {kind!r}", f"known types: {', '.join(MODEL_TYPES)}"
        )
    cls = model_class(str(kind))
    try:
        model = cls.load(path, manifest)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure means a broken directory
        raise ModelError(
            f"cannot load {kind} model from {path}: {type(exc).__name__}: {exc}",
            "the directory is incomplete or corrupt; retrain or re-download",
        ) from exc
    return LoadedModel(model, manifest, path, calibration.read(path, manifest))


def check_texts(texts: Any, max_batch: int = MAX_BATCH, max_chars: int = MAX_CHARS) -> list[str]:
    """Validate a prediction batch; raises InvalidInput naming the offending items."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidInput("expected a list of strings", 'send {"instances": ["text", ...]}')
    if len(texts) == 0:
        raise InvalidInput("empty batch", "send at least one text")
    if len(texts) > max_batch:
        raise InvalidInput(
            f"batch of {len(texts)} texts exceeds the limit of {max_batch}",
            f"split the request into batches of at most {max_batch}",
        )
    bad_type = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad_type:
        raise InvalidInput(f"items {bad_type[:10]} are not strings", "send only strings")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise InvalidInput(f"items {empty[:10]} are empty or whitespace", "remove empty texts")
    long = [i for i, t in enumerate(texts) if len(t) > max_chars]
    if long:
        raise InvalidInput(
            f"items {long[:10]} are longer than {max_chars} characters",
            "truncate long texts before sending them",
        )
    return list(texts)


@dataclass
class Prediction:
    label: str
    confidence: float
    scores: dict[str, float]


def predict(model: LoadedModel, texts: Any, max_batch: int = MAX_BATCH) -> list[Prediction]:
    """Checked, labelled predictions for a batch of texts."""
    batch = check_texts(texts, max_batch=max_batch)
    proba = model.predict_proba(batch)
    labels = model.labels
    return [
        Prediction(
            label, float(row.max()), {lab: float(p) for lab, p in zip(labels, row, strict=True)}
        )
        for label, row in zip(labels_from_proba(proba, labels), proba, strict=True)
    ]
