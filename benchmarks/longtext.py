"""Long texts for the quality benchmark, built only from the project's own labelled snippets.

The built-in domains are short (tweets; sentence-long movie, product-review and editorial
snippets). Brand posts, reviews and support tickets are often longer than 50 words, so the
benchmark builds long texts from snippets of ONE split of ONE domain (a test split for the
results, a validation split for choosing the window pooling), two kinds:

    same     3-15 snippets of one label joined into one text of 50-300 words: the label is
             theirs (a review that says one thing at length)
    verdict  snippets of the other labels, then one or two snippets of a polar label at the
             end (negative or positive): the label is that final verdict (praise for three
             sentences, then "returned it, never again")

Every text records its snippets, so the benchmark can also score the snippets one by one (the
short baseline a long text must not fall far below). Seeded: the same sets every run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sentiops.data.datasets import LABEL, TEXT

KINDS = ("same", "verdict")
MIN_WORDS, MAX_WORDS = 50, 300
POLAR = ("negative", "positive")


@dataclass
class LongSet:
    texts: list[str]
    labels: list[str]
    kinds: list[str]
    snippets: list[list[int]]  # row positions in the split the text was built from

    def words(self) -> np.ndarray:
        return np.array([len(t.split()) for t in self.texts])


def build(split: pd.DataFrame, n: int = 300, seed: int = 0) -> LongSet:
    """`n` long texts of each kind from `split` (TEXT, LABEL)."""
    rng = np.random.default_rng(seed)
    by_label = {
        lab: np.flatnonzero(split[LABEL].to_numpy() == lab) for lab in sorted(split[LABEL].unique())
    }
    words = split[TEXT].str.split().str.len().to_numpy()
    out = LongSet([], [], [], [])
    labels = list(by_label)
    for kind in KINDS:
        made = 0
        while made < n:
            if kind == "same":
                label = labels[made % len(labels)]
                rows = _fill(rng, by_label[label], words)
            else:
                label = POLAR[made % 2] if all(p in by_label for p in POLAR) else labels[-1]
                others = np.concatenate([by_label[x] for x in labels if x != label])
                end = list(rng.choice(by_label[label], size=int(rng.integers(1, 3)), replace=False))
                rows = _fill(rng, others, words, reserved=int(words[end].sum())) + end
            total = int(words[rows].sum())
            if not MIN_WORDS <= total <= MAX_WORDS:
                continue
            out.texts.append(" ".join(split[TEXT].iloc[rows]))
            out.labels.append(label)
            out.kinds.append(kind)
            out.snippets.append([int(r) for r in rows])
            made += 1
    return out


def _fill(
    rng: np.random.Generator, pool: np.ndarray, words: np.ndarray, reserved: int = 0
) -> list[int]:
    """Snippets from `pool` until a drawn length (less `reserved`) is reached: lengths drawn
    log-normally around 90 words (10 % over ~160), as long reviews run, within 50-300."""
    target = int(np.clip(np.exp(rng.normal(np.log(90), 0.45)), MIN_WORDS, MAX_WORDS)) - reserved
    rows: list[int] = []
    for r in rng.permutation(pool):
        if sum(words[rows]) >= target or len(rows) >= 20:
            break
        rows.append(int(r))
    return rows
