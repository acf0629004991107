"""One training epoch of a sequence classifier: what fine-tuning (`sentiops.models.transformer`)
and distillation (`sentiops.models.distill`) share. Below both, so neither imports the other."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def run_epoch(
    net: Any,
    tokenizer: Any,
    enc: Any,
    order: np.ndarray,
    *,
    batch_size: int,
    loss_fn: Any,
    optim: Any,
    sched: Any,
    bar: Any,
    epoch: int,
) -> float:
    """One training pass of `net` over the pre-tokenized rows `enc` in the given `order`:
    each batch padded to its own longest row, `loss_fn(logits, row indices)` backpropagated,
    gradients clipped to norm 1, optimizer and schedule stepped, the progress bar advanced.
    Fine-tuning and distillation (`sentiops.models.distill`) both train through it. Returns
    the epoch's mean loss."""
    net.train()
    steps = math.ceil(len(order) / batch_size)
    running = 0.0
    for step in range(steps):
        idx = order[step * batch_size : (step + 1) * batch_size]
        batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in enc}, return_tensors="pt")
        logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = loss_fn(logits, idx)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad()
        running += float(loss.item())
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{running / (step + 1):.3f}", refresh=False)
    return running / steps
