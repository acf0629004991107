"""TF-IDF + logistic regression baseline (scikit-learn); the first champion."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from sentiops.config import SEED

MODEL_TYPE = "tfidf-logreg"
WEIGHTS = "pipeline.joblib"


class TfidfModel:
    model_type = MODEL_TYPE

    def __init__(self, pipeline: Pipeline, labels: list[str]) -> None:
        self.pipeline = pipeline
        self.labels = labels

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        c: float = 4.0,
        ngram_max: int = 2,
        min_df: int = 1,
        char_ngrams: bool = True,
        class_weights: bool = True,
        seed: int = SEED,
        val_texts: Sequence[str] = (),  # fit context every model type takes; a linear model
        val_labels: Sequence[str] = (),  # has no early stopping, so it does not use these
        label_set: Sequence[str] | None = None,
        scores: Sequence[float] | None = None,  # raters' mean scores: a linear model on hard
        progress: bool = False,  # labels does not use them
        sample_weight: Sequence[float] | None = None,  # per row (new labels weigh more)
    ) -> TfidfModel:
        features: list[tuple[str, Any]] = [
            (
                "word",
                TfidfVectorizer(
                    ngram_range=(1, ngram_max), min_df=min_df, sublinear_tf=True, lowercase=True
                ),
            ),
        ]
        if char_ngrams:
            features.append(
                (
                    "char",
                    TfidfVectorizer(
                        analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True
                    ),
                )
            )
        pipe = Pipeline(
            [
                ("features", FeatureUnion(features)),
                (
                    "clf",
                    LogisticRegression(
                        C=c,
                        max_iter=2000,
                        random_state=seed,
                        class_weight="balanced" if class_weights else None,
                    ),
                ),
            ]
        )
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        fit_params = {} if weights is None else {"clf__sample_weight": weights}
        pipe.fit(list(texts), list(labels), **fit_params)
        return cls(pipe, [str(x) for x in pipe.classes_])

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(list(texts)), dtype=np.float64)

    def save(self, folder: Path) -> None:
        joblib.dump(self.pipeline, folder / WEIGHTS)

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any]) -> TfidfModel:
        pipe = joblib.load(folder / WEIGHTS)
        return cls(pipe, list(manifest["labels"]))
