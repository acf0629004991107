"""Reading a whole text with an encoder that reads at most `max_length` tokens at a time.

A text is tokenized once without truncation; when its tokens (without the special ones) fit
one window it is one window, exactly as a truncating tokenizer would have encoded it. A longer
text is cut into overlapping windows of `max_length - 2` tokens (`[CLS] ... [SEP]` each), a
new window every `stride` tokens, the last one aligned with the text's end so the end is read
whole (reviews end with their verdict). The model scores every window; the windows' logits
are pooled into one answer per text:

    mean      the windows' logits averaged (each window votes alike)
    weighted  averaged with each window weighted by the tokens it reads first (overlaps not
              counted twice): a length-weighted mean over the text
    max       the logits of the window the model is surest about
    last      the mean, with the last window counted twice as much as all the others together
              (two thirds of the answer: the verdict at the end weighs most)

Which pooling serves is chosen by measurement (`benchmarks/quality.py`, long texts) and
recorded in the model's parameters (`window_pooling`; DEFAULT_POOLING, `last`, unless
recorded). A text longer
than `max_tokens` is read up to `max_tokens` tokens (its start and, when it is cut, its end:
the first and last halves of the budget), and the answer says how much was read
(`Windows.read`).

The windows go through the network (`forward`: PyTorch or an ONNX Runtime session) in length
buckets. Plain numpy (torch only inside `forward`, for a PyTorch network); the tokenizer is
any Hugging Face tokenizer with `cls_token_id`/`sep_token_id`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

POOLINGS = ("mean", "weighted", "max", "last")
#: The pooling a model trained today serves: best on every domain's long validation texts of
#: `make bench-quality` (macro-F1 over all long texts, MiniLM trained on tweets, product
#: reviews and editorials: movies 0.420 vs mean 0.388 / first window 0.300; product reviews
#: 0.575 vs 0.505 / 0.423; editorials 0.619 vs 0.546 / 0.444). The last window's weight was
#: measured too: as much as the others together 0.403 / 0.539 / 0.602, twice 0.420 / 0.575 /
#: 0.619, three times 0.441 / 0.576 / 0.620 (twice: the smallest with the gain).
DEFAULT_POOLING = "last"
#: How much the last window weighs in `last`, in units of all the other windows together.
LAST_WEIGHT = 2.0
#: Most tokens of a text that are read (8 windows of 64 at stride 48: ~380 words). Longer
#: texts are read at their start and end, and the answer says which share was read.
MAX_TOKENS = 512


@dataclass
class Windows:
    """The windows of a batch of texts: `input_ids[k]` (with special tokens) belongs to text
    `owner[k]` and reads `fresh[k]` tokens no earlier window of that text read; per text,
    `tokens` it has and `read` of them read (both without special tokens)."""

    input_ids: list[list[int]]
    owner: np.ndarray
    fresh: np.ndarray
    tokens: np.ndarray
    read: np.ndarray

    @property
    def fraction(self) -> np.ndarray:
        """Share of each text's tokens that was read (1.0 for an empty text)."""
        return np.where(self.tokens > 0, self.read / np.maximum(self.tokens, 1), 1.0)


#: Windows whose token counts differ by at most this many share a padded batch.
BUCKET_SLACK = 4


def length_buckets(
    lengths: Sequence[int], batch_size: int, slack: int = BUCKET_SLACK
) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted by length; a batch closes at
    `batch_size` items or when the next is more than `slack` tokens longer than its first)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if (
            buckets
            and len(buckets[-1]) < batch_size
            and lengths[i] - lengths[buckets[-1][0]] <= slack
        ):
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


def forward(
    ids: Sequence[Sequence[int]], runner: Any, n_labels: int, pad: int, batch_size: int = 64
) -> np.ndarray:
    """[n, C] logits of encoded windows: sorted by token count and cut into length buckets
    (at most `batch_size` windows whose lengths differ by at most `BUCKET_SLACK` tokens), each
    padded only to its own longest — short tweets never pay for a long one. `runner` is an
    ONNX Runtime session (it has `run`) or a PyTorch classifier."""
    out = np.zeros((len(ids), n_labels), dtype=np.float64)
    onnx = hasattr(runner, "run") and not hasattr(runner, "forward")
    for idx in length_buckets([len(x) for x in ids], batch_size):
        width = max(len(ids[i]) for i in idx)
        input_ids = np.full((len(idx), width), pad, dtype=np.int64)
        attention = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            input_ids[row, : len(ids[i])] = ids[i]
            attention[row, : len(ids[i])] = 1
        if onnx:
            out[idx] = runner.run(
                ["logits"], {"input_ids": input_ids, "attention_mask": attention}
            )[0]
        else:
            import torch

            with torch.inference_mode():
                out[idx] = (
                    runner(
                        input_ids=torch.from_numpy(input_ids),
                        attention_mask=torch.from_numpy(attention),
                    )
                    .logits.float()
                    .numpy()
                )
    return out


def encoded(windows: Windows) -> dict[str, list[list[int]]]:
    """The windows as a tokenizer's output (`input_ids`, `attention_mask`), for training."""
    return {
        "input_ids": windows.input_ids,
        "attention_mask": [[1] * len(x) for x in windows.input_ids],
    }


def stride_for(max_length: int) -> int:
    """The default step between windows: three quarters of a window (a quarter overlaps, so
    no sentence is only ever seen cut at a window's edge)."""
    return max(1, (max_length - 2) * 3 // 4)


def spans(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) of each window over `n` tokens: every `stride` tokens, the last aligned
    with the end."""
    if n <= size:
        return [(0, n)]
    starts = list(range(0, n - size, stride))
    starts.append(n - size)
    return [(s, s + size) for s in starts]


def split(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    stride: int | None = None,
    max_tokens: int = MAX_TOKENS,
) -> Windows:
    """The windows of `texts` (see the module's doc)."""
    size = max(1, max_length - 2)
    stride = stride or stride_for(max_length)
    content = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    ids: list[list[int]] = []
    owner: list[int] = []
    fresh: list[int] = []
    tokens = np.zeros(len(content), dtype=np.int64)
    read = np.zeros(len(content), dtype=np.int64)
    for i, toks in enumerate(content):
        tokens[i] = len(toks)
        if len(toks) > max_tokens:  # the start and the end of an over-long text
            head = max_tokens // 2
            toks = toks[:head] + toks[len(toks) - (max_tokens - head) :]
        read[i] = len(toks)
        seen = 0
        for start, end in spans(len(toks), size, stride):
            ids.append([cls, *toks[start:end], sep])
            owner.append(i)
            fresh.append(max(1, end - max(start, seen)))
            seen = end
    return Windows(
        ids, np.asarray(owner, dtype=np.int64), np.asarray(fresh, dtype=np.float64), tokens, read
    )


def pool(logits: np.ndarray, windows: Windows, how: str = "mean") -> np.ndarray:
    """[n texts, C] logits from the windows' [n windows, C] logits."""
    if how not in POOLINGS:
        raise ValueError(f"unknown window pooling {how!r}; known: {POOLINGS}")
    n, owner = len(windows.tokens), windows.owner
    logits = np.asarray(logits, dtype=np.float64)
    if how == "max":
        out = np.zeros((n, logits.shape[1]))
        sure = _margin(logits)
        best = np.full(n, -np.inf)
        for k, i in enumerate(owner):
            if sure[k] > best[i]:
                best[i], out[i] = sure[k], logits[k]
        return out
    weight = np.ones(len(owner))
    if how == "weighted":
        weight = windows.fresh.copy()
    elif how == "last":
        counts = np.bincount(owner, minlength=n)
        last = np.r_[owner[1:] != owner[:-1], True]  # the last window of each text
        weight[last] = np.maximum(counts[owner[last]] - 1, 1) * LAST_WEIGHT
    total = np.bincount(owner, weights=weight, minlength=n)
    out = np.zeros((n, logits.shape[1]))
    np.add.at(out, owner, logits * weight[:, None])
    return out / np.maximum(total, 1e-12)[:, None]


def _margin(logits: np.ndarray) -> np.ndarray:
    """How sure each row is: the top probability."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).max(axis=1)


@dataclass
class Joined:
    """Training rows made of snippets joined into longer texts (`joined`)."""

    texts: list[str]
    labels: list[str]
    scores: list[float] | None
    weights: list[float] | None


def joined(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    share: float,
    scores: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    parts: tuple[int, int] = (3, 8),
    seed: int = 0,
) -> Joined:
    """`share` x len(texts) extra training texts, each 3-8 snippets of one label joined in a
    random order (its score: their mean; its weight: their mean): built-in data are sentences
    and short posts, so a model trained on them alone has never read a window of several
    sentences, which is what long posts and reviews are made of. One label throughout, so every
    window of a joined text has its text's label. Labels with fewer snippets than `parts[0]`
    get none. Returns the joined rows only."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_label.setdefault(str(lab), []).append(i)
    pools = {lab: idx for lab, idx in by_label.items() if len(idx) >= parts[0]}
    n = round(share * len(texts)) if pools else 0
    names = sorted(pools)
    size = np.array([len(pools[lab]) for lab in names], dtype=np.float64)
    out = Joined([], [], [] if scores is not None else None, [] if weights is not None else None)
    for lab in rng.choice(names, size=n, p=size / size.sum()) if n else []:
        pool = pools[str(lab)]
        k = int(rng.integers(parts[0], min(parts[1], len(pool)) + 1))
        pick = rng.choice(pool, size=k, replace=False)
        out.texts.append(" ".join(str(texts[i]).strip() for i in pick))
        out.labels.append(str(lab))
        if out.scores is not None and scores is not None:
            out.scores.append(float(np.nanmean([float(scores[i]) for i in pick])))
        if out.weights is not None and weights is not None:
            out.weights.append(float(np.mean([float(weights[i]) for i in pick])))
    return out
