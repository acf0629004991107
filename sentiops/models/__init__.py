"""Model types, loading from the one directory format, and prediction with input checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sentiops import modeldir
from sentiops.errors import InvalidInput, ModelError

MAX_BATCH = 256
MAX_CHARS = 5000


class SentimentModel(Protocol):
    model_type: str
    labels: list[str]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...


def _registry() -> dict[str, Any]:
    from sentiops.models.tfidf import MODEL_TYPE as TFIDF
    from sentiops.models.tfidf import TfidfModel
    from sentiops.models.transformer import MODEL_TYPE as TRANSFORMER
    from sentiops.models.transformer import TransformerModel

    return {TFIDF: TfidfModel, TRANSFORMER: TransformerModel}


MODEL_TYPES = ("tfidf-logreg", "transformer")


@dataclass
class LoadedModel:
    """A model plus its manifest: what the predictor, gate and drift detector work with."""

    model: SentimentModel
    manifest: dict[str, Any]
    path: Path

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.predict_proba(texts)


def load_model(folder: str | Path, verify: bool = True) -> LoadedModel:
    """Load any SentiOps model directory (checksums verified first)."""
    path = Path(folder)
    manifest = modeldir.read_manifest(path, verify=verify)
    kind = manifest.get("model_type")
    cls = _registry().get(str(kind))
    if cls is None:
        raise ModelError(f"{path}: unknown model type {kind!r}", f"known types: {MODEL_TYPES}")
    try:
        model = cls.load(path, manifest)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure means a broken directory
        raise ModelError(
            f"cannot load {kind} model from {path}: {type(exc).__name__}: {exc}",
            "the directory is incomplete or corrupt; retrain or re-download",
        ) from exc
    return LoadedModel(model, manifest, path)


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
    out = []
    for row in proba:
        k = int(np.argmax(row))
        out.append(
            Prediction(
                labels[k],
                float(row[k]),
                {lab: float(p) for lab, p in zip(labels, row, strict=True)},
            )
        )
    return out
