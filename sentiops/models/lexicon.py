"""The VADER lexicon (Hutto & Gilbert, ICWSM 2014; `vaderSentiment` on PyPI, MIT): the
rule-based yardstick that every quality claim is put beside, on every domain.

Labels follow VADER's own documented thresholds on its compound score: >= 0.05 positive,
<= -0.05 negative, else neutral. Features (neg, neu, pos, compound) are what a model may learn
from (`sentiops.models`' ensembling uses them).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from sentiops.errors import ModelError

POSITIVE_AT, NEGATIVE_AT = 0.05, -0.05
FEATURES = ("neg", "neu", "pos", "compound")


@lru_cache(maxsize=1)
def analyzer() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:
        raise ModelError(
            "the VADER lexicon is not installed", "pip install vaderSentiment==3.3.2"
        ) from exc
    return SentimentIntensityAnalyzer()


def features(texts: Sequence[str]) -> np.ndarray:
    """[n, 4] VADER scores (neg, neu, pos, compound) of each text."""
    sia = analyzer()
    rows = [sia.polarity_scores(str(t)) for t in texts]
    return np.array([[r[k] for k in FEATURES] for r in rows], dtype=np.float64).reshape(-1, 4)


def labels(texts: Sequence[str]) -> list[str]:
    """VADER's label of each text (compound score thresholds)."""
    compound = features(texts)[:, 3]
    return [
        "positive" if c >= POSITIVE_AT else "negative" if c <= NEGATIVE_AT else "neutral"
        for c in compound
    ]
