"""TF-IDF + logistic regression baseline (scikit-learn); the first champion.

Saved without pickle, so loading a model can never run code (a joblib/pickle file executes
whatever its author put in it when it is loaded):

    tfidf.json   the structure: each vectorizer's settings and vocabulary (terms in column
                 order), the feature union's weights, the classifier's settings and classes
    tfidf.npz    the numbers: each vectorizer's idf, the classifier's coef, intercept, n_iter
                 (plain arrays, read with `np.load(allow_pickle=False)`)

Loading builds the same scikit-learn objects from these (a fixed structure: a FeatureUnion of
TfidfVectorizers, then LogisticRegression; only settings that are plain values, checked
against an allow-list where a value could reach outside the text: `input` must be "content",
no callables) and sets their fitted attributes, so predictions are the very same floats. A
directory of an older SentiOps, with the pickled `pipeline.joblib`, is refused: retrain it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from sentiops.config import SEED
from sentiops.errors import ModelError

MODEL_TYPE = "tfidf-logreg"
STRUCTURE = "tfidf.json"
ARRAYS = "tfidf.npz"
#: The pickle an older SentiOps saved; never loaded.
LEGACY_PICKLE = "pipeline.joblib"
FORMAT = "sentiops-tfidf-logreg"
FORMAT_VERSION = 1
#: Vectorizer settings that only steer fitting or are set from the saved vocabulary.
_FIT_ONLY = ("vocabulary", "max_df", "min_df", "max_features")
#: Settings that must be None: callables cannot be saved as data.
_NONE_ONLY = ("preprocessor", "tokenizer")
_ALLOWED = {
    "input": ("content",),  # "filename" / "file" would make the model open the texts as paths
    "analyzer": ("word", "char", "char_wb"),
    "decode_error": ("strict", "ignore", "replace"),
    "strip_accents": (None, "ascii", "unicode"),
    "norm": (None, "l1", "l2"),
    "stop_words": (None, "english"),
}
_DTYPES = {"float64": np.float64, "float32": np.float32}


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _vectorizer_params(vec: Any) -> dict[str, Any]:
    params = vec.get_params(deep=False)
    for name in _NONE_ONLY:
        if params.get(name) is not None:
            raise ModelError(
                f"cannot save a TF-IDF vectorizer with a custom {name}",
                "use the built-in analyzers (TfidfModel.fit does)",
            )
    dtype = np.dtype(params.pop("dtype")).name
    out = {k: v for k, v in params.items() if k not in _FIT_ONLY and k not in _NONE_ONLY}
    bad = sorted(k for k, v in out.items() if not _plain(v))
    if bad or dtype not in _DTYPES:
        raise ModelError(
            f"cannot save TF-IDF settings {bad or ['dtype']} as plain values",
            "use TfidfModel.fit's settings",
        )
    return out | {"dtype": dtype}


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ModelError(
            f"the TF-IDF model files are inconsistent: {what}",
            "the model directory is corrupt or was not written by SentiOps; retrain it",
        )


def _build_vectorizer(spec: dict[str, Any], idf: np.ndarray) -> TfidfVectorizer:
    params = dict(spec.get("params") or {})
    allowed = set(TfidfVectorizer().get_params()) - set(_FIT_ONLY) - set(_NONE_ONLY)
    unknown = sorted(set(params) - allowed)
    _check(not unknown, f"unknown vectorizer settings {unknown}")
    _check(all(_plain(v) for v in params.values()), "a vectorizer setting is not a plain value")
    for name, values in _ALLOWED.items():
        _check(params.get(name, values[0]) in values, f"{name}={params.get(name)!r}")
    _check(params.get("dtype", "float64") in _DTYPES, f"dtype={params.get('dtype')!r}")
    params["dtype"] = _DTYPES[params.get("dtype", "float64")]
    if "ngram_range" in params:
        ngrams = params["ngram_range"]
        ok = isinstance(ngrams, list) and len(ngrams) == 2
        _check(ok and all(isinstance(n, int) and 0 < n <= 10 for n in ngrams), "ngram_range")
        params["ngram_range"] = tuple(ngrams)
    _check(params.get("use_idf", True) is True, "use_idf must be true")
    terms = spec.get("vocabulary")
    _check(
        isinstance(terms, list) and len(terms) > 0 and all(isinstance(t, str) for t in terms),
        "vocabulary",
    )
    assert isinstance(terms, list)
    vocabulary = {t: i for i, t in enumerate(terms)}
    _check(len(vocabulary) == len(terms), "repeated vocabulary terms")
    _check(idf.shape == (len(terms),), f"idf of shape {idf.shape} for {len(terms)} terms")
    vec = TfidfVectorizer(**params)
    vec.vocabulary_ = vocabulary
    vec.fixed_vocabulary_ = False
    vec.idf_ = idf  # builds the fitted TfidfTransformer inside
    vec._tfidf.n_features_in_ = len(terms)
    return vec


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: np.asarray(npz[name]) for name in npz.files}
    for name, arr in arrays.items():
        _check(arr.dtype.kind in "fiu", f"{name} is not numeric ({arr.dtype})")
    return arrays


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
        """tfidf.json + tfidf.npz (module docstring): no pickle."""
        features, clf = self.pipeline.named_steps["features"], self.pipeline.named_steps["clf"]
        if not isinstance(features, FeatureUnion) or not isinstance(clf, LogisticRegression):
            raise ModelError("cannot save this TF-IDF pipeline", "build it with TfidfModel.fit")
        arrays: dict[str, np.ndarray] = {}
        specs = []
        for i, (name, vec) in enumerate(features.transformer_list):
            if not isinstance(vec, TfidfVectorizer):
                raise ModelError(
                    f"feature {name!r} is not a TfidfVectorizer",
                    "build the model with TfidfModel.fit",
                )
            terms = [""] * len(vec.vocabulary_)
            for term, col in vec.vocabulary_.items():
                terms[col] = term
            specs.append({"name": name, "params": _vectorizer_params(vec), "vocabulary": terms})
            arrays[f"idf_{i}"] = np.asarray(vec.idf_, dtype=np.float64)
        params = clf.get_params(deep=False)
        if not all(_plain(v) for v in params.values()):
            raise ModelError(
                "cannot save the classifier's settings as plain values",
                "use TfidfModel.fit's settings",
            )
        arrays |= {"coef": clf.coef_, "intercept": clf.intercept_, "n_iter": clf.n_iter_}
        structure = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sklearn_version": sklearn.__version__,
            "features": specs,
            "transformer_weights": features.transformer_weights,
            "classifier": {"params": params, "classes": [str(c) for c in clf.classes_]},
        }
        (folder / STRUCTURE).write_text(json.dumps(structure, ensure_ascii=False))
        np.savez(folder / ARRAYS, **arrays)

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any]) -> TfidfModel:
        """The model from tfidf.json + tfidf.npz; a pickled model of an older SentiOps is
        refused without being opened."""
        folder = Path(folder)
        structure = _read_structure(folder, manifest)
        arrays = _read_arrays(folder / ARRAYS)
        features = _load_features(structure, arrays)
        weights = structure.get("transformer_weights")
        _check(
            weights is None or (isinstance(weights, dict) and _plain(weights)),
            "transformer_weights",
        )
        union = FeatureUnion(features, transformer_weights=weights)
        width = sum(len(vec.vocabulary_) for _, vec in features)
        clf, classes = _load_classifier(structure, arrays, width)
        pipe = Pipeline([("features", union), ("clf", clf)])
        labels = list(manifest.get("labels") or classes)
        _check(labels == classes, f"labels {labels} differ from the classes {classes}")
        return cls(pipe, labels)


def _read_structure(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """tfidf.json of a model directory in this SentiOps's format (a legacy pickle, a missing
    file or another format is a ModelError)."""
    if LEGACY_PICKLE in manifest.get("files", {}) or (folder / LEGACY_PICKLE).exists():
        raise ModelError(
            f"{folder} holds a TF-IDF model an older SentiOps saved as a pickle "
            f"({LEGACY_PICKLE}); loading a pickle can run any code, so SentiOps no longer "
            "loads one",
            "retrain the model with this SentiOps (`sentiops train --model-type "
            "tfidf-logreg ...` or the pipeline): it is saved as JSON + npz and signed",
        )
    for name in (STRUCTURE, ARRAYS):
        if not (folder / name).is_file():
            raise ModelError(
                f"{folder}: the TF-IDF model has no {name}",
                "the directory is incomplete; re-download or retrain it",
            )
    try:
        structure = json.loads((folder / STRUCTURE).read_text())
    except ValueError as exc:
        raise ModelError(
            f"{folder / STRUCTURE} is not valid JSON: {exc}", "re-download or retrain the model"
        ) from exc
    _check(
        isinstance(structure, dict) and structure.get("format") == FORMAT,
        f"{STRUCTURE} is not a {FORMAT} file",
    )
    if structure.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{folder}: TF-IDF format {structure.get('format_version')!r} is not supported",
            f"this SentiOps reads format {FORMAT_VERSION}; retrain the model",
        )
    return structure


def _load_features(structure: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[Any]:
    """The (name, vectorizer) pairs of the FeatureUnion, each with its idf weights."""
    specs = structure.get("features")
    _check(isinstance(specs, list) and len(specs) > 0, "no features")
    assert isinstance(specs, list)
    features = []
    for i, spec in enumerate(specs):
        _check(
            isinstance(spec, dict) and isinstance(spec.get("name"), str) and f"idf_{i}" in arrays,
            f"feature {i}",
        )
        idf = arrays[f"idf_{i}"].astype(np.float64, copy=False)
        features.append((spec["name"], _build_vectorizer(spec, idf)))
    return features


def _load_classifier(
    structure: dict[str, Any], arrays: dict[str, np.ndarray], width: int
) -> tuple[LogisticRegression, list[str]]:
    """The fitted LogisticRegression over `width` features, and its classes."""
    spec = structure.get("classifier")
    _check(isinstance(spec, dict), "no classifier")
    assert isinstance(spec, dict)
    params, classes = spec.get("params") or {}, spec.get("classes")
    allowed = set(LogisticRegression().get_params())
    _check(
        isinstance(params, dict) and set(params) <= allowed and _plain(params),
        "classifier settings",
    )
    _check(
        isinstance(classes, list)
        and len(classes) >= 2
        and all(isinstance(c, str) for c in classes),
        "classes",
    )
    assert isinstance(classes, list)
    coef, intercept = arrays.get("coef"), arrays.get("intercept")
    rows = 1 if len(classes) == 2 else len(classes)
    shape = None if coef is None else coef.shape
    _check(shape == (rows, width), f"coef of shape {shape}, not {(rows, width)}")
    _check(intercept is not None and intercept.shape == (rows,), "intercept")
    assert coef is not None and intercept is not None
    clf = LogisticRegression(**params)
    clf.classes_ = np.asarray(classes)
    clf.coef_ = coef.astype(np.float64, copy=False)
    clf.intercept_ = intercept.astype(np.float64, copy=False)
    clf.n_iter_ = arrays.get("n_iter", np.zeros(1, dtype=np.int32))
    clf.n_features_in_ = width
    return clf, classes
