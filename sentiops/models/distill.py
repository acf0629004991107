"""A smaller student of a fine-tuned transformer, for a cheaper serving form.

The student is the teacher itself with some of its encoder layers removed (every other one by
default: the layer-dropping initialisation of DistilBERT and of "Poor Man's BERT", Sajjad et
al. 2020), then trained to reproduce the teacher's temperature-softened class probabilities
(Hinton et al. 2015) on a transfer set of texts, plus the cross-entropy to the gold labels
where they exist. The transfer set needs no labels: the training texts, and any other text of
the traffic the model will see (logged requests, other domains).

`sentiops.models.serving_form` offers the result as the `student-int8` form: exported to ONNX
and quantized like the teacher, and kept only when its validation macro-F1 is within the
tolerance of the teacher's fp32 — so the student is what the gate evaluates and what is served.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sentiops.config import SEED
from sentiops.models import windows
from sentiops.models.epoch import run_epoch


def encoder_layers(net: Any) -> tuple[Any, str, torch.nn.ModuleList]:
    """(the encoder module, its config attribute for the layer count, its layer list) of a
    BERT-family (`encoder.layer`) or DistilBERT (`transformer.layer`) classifier."""
    for module in net.modules():
        layers = getattr(module, "layer", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
            attr = "n_layers" if hasattr(net.config, "n_layers") else "num_hidden_layers"
            return module, attr, layers
    raise ValueError(f"no encoder layer list found in {type(net).__name__}")


def drop_layers(teacher: Any, keep: Sequence[int] | None = None) -> Any:
    """A deep copy of `teacher` with only the encoder layers `keep` (default: every other one,
    the first kept)."""
    student = copy.deepcopy(teacher)
    module, attr, layers = encoder_layers(student)
    n = len(layers)
    keep = list(range(0, n, 2)) if keep is None else sorted(set(keep))
    if not keep or keep[0] < 0 or keep[-1] >= n:
        raise ValueError(f"layers to keep {keep} must be within 0..{n - 1}")
    module.layer = torch.nn.ModuleList([layers[i] for i in keep])
    setattr(student.config, attr, len(keep))
    return student


def _windows(
    tokenizer: Any, texts: Sequence[str], max_length: int, max_tokens: int
) -> windows.Windows:
    return windows.split(tokenizer, texts, max_length, max_tokens=max_tokens)


def _logits(net: Any, tokenizer: Any, win: windows.Windows) -> np.ndarray:
    """[n windows, C] logits of `net` on each window."""
    net.eval()
    return windows.forward(
        win.input_ids, net, int(net.config.num_labels), tokenizer.pad_token_id or 0
    )


def distill(
    teacher: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int | None] | None = None,
    *,
    keep: Sequence[int] | None = None,
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 32,
    temperature: float = 2.0,
    hard_weight: float = 0.5,
    max_length: int = 64,
    max_tokens: int = windows.MAX_TOKENS,
    window_pooling: str = windows.DEFAULT_POOLING,
    seed: int = SEED,
    val_texts: Sequence[str] = (),
    val_labels: Sequence[int] = (),
    progress: bool = True,
) -> Any:
    """Train a layer-dropped copy of `teacher` on `texts` to match the teacher's softened
    probabilities; `labels` (class indices, None where unknown) add the gold cross-entropy
    with weight `hard_weight`. With `val_texts`/`val_labels` (class indices) the epoch with
    the best validation macro-F1 is kept, as the teacher's early stopping kept its best.
    Texts are read in windows as the teacher reads them (`sentiops.models.windows`): the
    student learns each window's teacher probabilities, and is scored on validation texts with
    the windows pooled (`window_pooling`). Returns the student network in eval mode."""
    from transformers import get_linear_schedule_with_warmup

    texts = list(texts)
    if not texts:
        raise ValueError("distillation needs transfer texts")
    torch.manual_seed(seed)
    win = _windows(tokenizer, texts, max_length, max_tokens)
    soft = torch.tensor(_logits(teacher, tokenizer, win) / temperature)
    gold = torch.tensor([-100 if y is None else int(y) for y in (labels or [None] * len(texts))])
    gold = gold[torch.as_tensor(win.owner)]  # per window: its text's label
    student = drop_layers(teacher, keep)
    enc = windows.encoded(win)
    optim = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    steps = math.ceil(len(win.owner) / batch_size)
    sched = get_linear_schedule_with_warmup(optim, int(0.1 * steps * epochs), steps * epochs)
    rng = np.random.default_rng(seed)
    best_f1, best_state = -1.0, None
    bar = tqdm(
        total=steps * epochs,
        desc="distilling",
        unit="step",
        disable=not progress,
        mininterval=1.0 if sys.stderr.isatty() else 15.0,
    )
    loss_fn = _distill_loss(soft, gold, temperature, hard_weight)
    for epoch in range(epochs):
        run_epoch(
            student,
            tokenizer,
            enc,
            rng.permutation(len(win.owner)),
            batch_size=batch_size,
            loss_fn=loss_fn,
            optim=optim,
            sched=sched,
            bar=bar,
            epoch=epoch,
        )
        if len(val_texts):
            val = _windows(tokenizer, val_texts, max_length, max_tokens)
            pooled = windows.pool(_logits(student, tokenizer, val), val, window_pooling)
            f1 = _macro_f1(pooled, val_labels)
            bar.write(f"distillation epoch {epoch + 1}: val_macro_f1={f1:.4f}")
            if f1 > best_f1:
                best_f1, best_state = f1, copy.deepcopy(student.state_dict())
    bar.close()
    if best_state is not None:
        student.load_state_dict(best_state)
    return student.eval()


def _distill_loss(
    soft: torch.Tensor, gold: torch.Tensor, temperature: float, hard_weight: float
) -> Callable[[torch.Tensor, np.ndarray], torch.Tensor]:
    """The loss of a batch of windows `idx`: KL divergence from the teacher's softened
    probabilities (`soft`: its logits / temperature), plus `hard_weight` x the gold
    cross-entropy where a label is known (`gold` >= 0)."""

    def loss_fn(logits: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        target = torch.softmax(soft[idx], dim=-1)
        log_p = torch.log_softmax(logits / temperature, dim=-1)
        kd = torch.nn.functional.kl_div(log_p, target, reduction="batchmean")
        loss = (1.0 - hard_weight) * (kd * temperature**2)
        y = gold[idx]
        if hard_weight > 0 and bool((y >= 0).any()):
            loss = loss + hard_weight * torch.nn.functional.cross_entropy(
                logits, y, ignore_index=-100
            )
        return loss

    return loss_fn


def _macro_f1(logits: np.ndarray, gold: Sequence[int]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(list(gold), logits.argmax(axis=1), average="macro"))
