"""Typed run parameters: what a data preparation, a training run and the gate take.

The CLI, the KFP components and the tests all build these the same way; `parse()` turns a
plain dict (a JSON file, a KFP `dict` parameter, CLI flags) into one, and a bad field into a
ConfigError that names the field and what it accepts. Defaults come from `sentiops.config`.

Each field's default and description are the only ones: `sentiops train`, `sentiops gate` and
`sentiops pipeline run / submit` make their options of these fields (`sentiops.cli.options`),
so a field's help is its description and its default is shown as it is here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sentiops.config import (
    ADDED_SHARE,
    BASE_MODEL_ONLINE,
    EPOCHS,
    REGISTERED_MODEL,
    SEED,
    SOFT_WIDTH,
)
from sentiops.errors import ConfigError
from sentiops.models import MODEL_TYPES

M = TypeVar("M", bound=BaseModel)

#: The column names of a labelled table (sentiops.data.datasets.TEXT / LABEL; written out here
#: so that the command line, which builds its options of these fields, never loads pandas).
TEXT_COLUMN, LABEL_COLUMN = "text", "label"
#: Serving forms a model may be packaged as (sentiops.models.serving_form), "auto" first.
SERVING_FORMS = ("auto", "student-int8", "onnx-int8", "onnx-fp32", "pytorch")
#: Calibrations fitted when a model is packaged (sentiops.estimation.calibration).
CALIBRATIONS = ("temperature", "vector", "none")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    data: list[str] = Field(
        description="CSV/JSONL/Parquet path, s3:// URI or built-in name (vader-tweets, "
        "vader-movies); repeat to concatenate"
    )
    text_column: str = Field(TEXT_COLUMN, description="column holding the text")
    label_column: str = Field(LABEL_COLUMN, description="column holding the label")
    seed: int = Field(SEED, description="seed for splitting and training")
    val_frac: float = Field(0.1, gt=0.0, lt=1.0, description="share of rows for validation")
    test_frac: float = Field(0.2, gt=0.0, lt=1.0, description="share of rows for the test split")
    min_per_class: int = Field(10, ge=1, description="fewest rows a class may have")
    drop_invalid: bool = Field(
        False,
        description="drop empty, non-UTF-8 and unknown-label rows (reported) instead of "
        "refusing the data",
    )
    train_extra: list[str] = Field(
        default_factory=list,
        description="extra labelled data for the train split only (never validation/test; "
        "texts that also occur there are removed, so nothing leaks); repeatable",
    )


class TrainConfig(DataConfig):
    """Every knob of a training run. Model hyperparameters are the fields named by the model
    type's `fit` signature (`sentiops.models.hyperparameters`); `model_params()` picks them."""

    model_type: str = Field("tfidf-logreg", description=f"model type: {' | '.join(MODEL_TYPES)}")
    output: Path = Field(description="model directory to write (atomically)")
    max_train_examples: int | None = Field(
        None, ge=1, description="stratified subsample of the train split"
    )
    # sentiops.training.train.row_weights
    added_share: float = Field(
        ADDED_SHARE,
        ge=0.0,
        lt=1.0,
        description="the added rows (live labels) together weigh at least this share of the "
        "training data (0: every row weighs the same)",
    )
    # tfidf-logreg
    c: float = Field(4.0, gt=0.0, description="tfidf-logreg: inverse regularisation")
    ngram_max: int = Field(2, ge=1, description="tfidf-logreg: longest word n-gram")
    min_df: int = Field(1, ge=1, description="tfidf-logreg: fewest texts a term must occur in")
    char_ngrams: bool = Field(True, description="tfidf-logreg: character n-grams too")
    # transformer
    base_model: str = Field(
        BASE_MODEL_ONLINE,
        description="transformer: hub id, local dir, s3:// prefix, 'offline' "
        "(all-MiniLM-L6-v2 from PyPI) or 'tiny-distilbert' (random, for tests)",
    )
    epochs: int = Field(EPOCHS, ge=1, description="transformer: passes over the train split")
    batch_size: int = Field(32, ge=1, description="transformer: texts per step")
    lr: float = Field(5e-5, gt=0.0, description="transformer: learning rate")
    weight_decay: float = Field(0.01, ge=0.0, description="transformer: AdamW weight decay")
    warmup_ratio: float = Field(
        0.1, ge=0.0, le=1.0, description="transformer: share of steps of linear warm-up"
    )
    max_length: int = Field(64, ge=8, description="transformer: tokens a window")
    # sentiops.models.windows
    window_pooling: Literal["mean", "weighted", "max", "last"] = Field(
        "last",
        description="transformer: long texts are read in windows of --max-length tokens, "
        "their logits pooled this way",
    )
    max_tokens: int = Field(512, ge=8, description="transformer: tokens read of a long text")
    patience: int = Field(2, ge=1, description="transformer: early-stopping patience (epochs)")
    # sentiops.models.transformer.soft_targets and benchmarks/quality.py
    soft_width: float = Field(
        SOFT_WIDTH,
        ge=0.0,
        description="transformer: soft targets from the raters' mean scores (0: hard labels only)",
    )
    # sentiops.models.windows.joined
    joined_share: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description="transformer: extra training texts of 3-8 same-label snippets joined "
        "(a share of the training rows), so the model learns from windows of several sentences",
    )
    threads: int | None = Field(None, ge=1, description="CPU threads (default: all cores)")
    # sentiops.models.serving_form
    serving_form: str = Field(
        "auto",
        description="serving form made when the model is packaged: auto (the fastest form "
        "within --serving-tolerance macro-F1 of PyTorch fp32 on validation, a distilled "
        "half-depth student first, else ONNX int8/fp32 of the model) | "
        + " | ".join(SERVING_FORMS[1:]),
    )
    serving_tolerance: float = Field(
        0.005, ge=0.0, le=1.0, description="macro-F1 the auto serving form may lose"
    )
    distill_epochs: int = Field(
        2,
        ge=0,
        description="passes of the distilled student over its transfer set (0: no student; "
        "auto tries the model's own ONNX forms only)",
    )
    # sentiops.training.transfer
    transfer: list[str] = Field(
        ["builtin", "live"],
        description="unlabelled texts the student also learns its teacher's answers on, "
        "beside the training texts: builtin (every built-in domain) | live (the store's "
        "logged live texts) | a dataset file or s3:// URI",
    )
    transfer_max: int = Field(
        6000, ge=0, description="at most this many unlabelled transfer texts (live first)"
    )
    # sentiops.detection
    drift_detector: bool = Field(
        True,
        description="fit the drift detector on the train split and store it in the model "
        "directory (needs >= 20 train and validation texts; skipped, and recorded, below that)",
    )
    # sentiops.estimation.calibration
    calibration: str = Field(
        "temperature",
        description="fitted on validation when the model is packaged and applied to every "
        "served probability: temperature (one parameter, labels unchanged) | vector (a scale "
        "and a bias per class) | none",
    )
    # both
    class_weights: bool = Field(True, description="weigh classes by their inverse frequency")
    # tracking
    track: bool = Field(True, description="log to MLflow and register the model")
    register_name: str | None = Field(
        REGISTERED_MODEL, description="MLflow registered model the run's model goes to"
    )
    report_dir: Path | None = Field(
        None, description="where the data reports go (default: <output>-reports)"
    )
    tags: dict[str, str] = Field(default_factory=dict, description="MLflow run tags")

    @field_validator("model_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in MODEL_TYPES:
            raise ValueError(f"unknown model type {value!r}; use one of {list(MODEL_TYPES)}")
        return value

    @field_validator("serving_form")
    @classmethod
    def _known_form(cls, value: str) -> str:
        if value not in SERVING_FORMS:
            raise ValueError(f"unknown serving form {value!r}; use one of {list(SERVING_FORMS)}")
        return value

    @field_validator("calibration")
    @classmethod
    def _known_calibration(cls, value: str) -> str:
        if value not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {value!r}; use one of {list(CALIBRATIONS)}")
        return value

    def model_params(self) -> dict[str, Any]:
        """The model type's hyperparameters, with this config's values."""
        from sentiops.models import hyperparameters  # lazy: pulls numpy, cryptography (CLI startup)

        names = hyperparameters(self.model_type)
        missing = sorted(set(names) - set(type(self).model_fields))
        if missing:  # a model type grew a hyperparameter TrainConfig cannot set
            raise ConfigError(
                f"TrainConfig has no field for {self.model_type} hyperparameter(s) {missing}",
                "add the field to sentiops.params.TrainConfig",
            )
        return {name: getattr(self, name) for name in names}


#: TrainConfig fields that a pipeline's `hyperparameters` dict may not set (the pipeline owns
#: them as parameters of their own, or they make no sense inside a pipeline step).
PIPELINE_OWNED = (
    "data",
    "output",
    "model_type",
    "base_model",
    "seed",
    "track",
    "report_dir",
    "tags",
    "register_name",
    "text_column",
    "label_column",
    "val_frac",
    "test_frac",
    "min_per_class",
    "drop_invalid",
)


class GateConfig(_Strict):
    """Gate thresholds; travels as one validated `gate` dict through the pipeline."""

    min_delta: float = Field(0.0, ge=0.0, description="smallest macro-F1 gain that counts")
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="one-sided bootstrap confidence")
    n_resamples: int = Field(2000, ge=1000, description="paired bootstrap resamples (>= 1000)")
    seed: int = Field(SEED, description="seed of the paired bootstrap")
    max_class_recall_drop: float = Field(
        0.05, ge=0.0, le=1.0, description="largest allowed per-class recall drop"
    )
    max_p95_latency_ms: float = Field(
        1000.0, gt=0.0, description="p95 single-text latency budget in ms"
    )
    max_model_size_mb: float = Field(2000.0, gt=0.0, description="model size budget in MB")
    min_macro_f1: float = Field(
        0.5, ge=0.0, le=1.0, description="macro-F1 the first champion needs"
    )
    latency_samples: int = Field(50, ge=5, description="texts timed one by one for the p95")
    balance_sources: bool = Field(
        True,
        description="a test set of the original data plus added data (labels from live "
        "traffic): both halves weigh the same in the metrics and the bootstrap",
    )
    max_group_drop: float = Field(
        0.05, ge=0.0, le=1.0, description="largest macro-F1 drop allowed on any one group"
    )
    max_ece: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="largest expected calibration error of a calibrated challenger's served "
        "probabilities on the test set (estimates without labels rest on calibration)",
    )


def parse(cls: type[M], values: dict[str, Any] | None, what: str = "") -> M:
    """`cls(**values)` with every problem reported as one ConfigError."""
    try:
        return cls.model_validate(values or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        known = ", ".join(cls.model_fields)
        raise ConfigError(
            f"invalid {what or cls.__name__}: {problems}", f"fields of {cls.__name__}: {known}"
        ) from None
