"""Typed run parameters: what a data preparation, a training run and the gate take.

The CLI, the KFP components and the tests all build these the same way; `parse()` turns a
plain dict (a JSON file, a KFP `dict` parameter, CLI flags) into one, and a bad field into a
ConfigError that names the field and what it accepts. Defaults come from `sentiops.config`.
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
from sentiops.data.datasets import LABEL, TEXT
from sentiops.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    data: list[str]
    text_column: str = TEXT
    label_column: str = LABEL
    seed: int = SEED
    val_frac: float = Field(0.1, gt=0.0, lt=1.0)
    test_frac: float = Field(0.2, gt=0.0, lt=1.0)
    min_per_class: int = Field(10, ge=1)
    drop_invalid: bool = False
    # extra labelled data used for training only (never in validation/test); texts that also
    # occur in validation/test are removed from it so nothing leaks
    train_extra: list[str] = Field(default_factory=list)


class TrainConfig(DataConfig):
    """Every knob of a training run. Model hyperparameters are the fields named by the model
    type's `fit` signature (`sentiops.models.hyperparameters`); `model_params()` picks them."""

    model_type: str = "tfidf-logreg"
    output: Path
    max_train_examples: int | None = Field(None, ge=1)
    # the added rows (live labels) together weigh at least this share of the training data
    # (sentiops.train.row_weights; 0: every row weighs the same)
    added_share: float = Field(ADDED_SHARE, ge=0.0, lt=1.0)
    # tfidf-logreg
    c: float = Field(4.0, gt=0.0)
    ngram_max: int = Field(2, ge=1)
    min_df: int = Field(1, ge=1)
    char_ngrams: bool = True
    # transformer
    base_model: str = BASE_MODEL_ONLINE
    epochs: int = Field(EPOCHS, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-5, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    max_length: int = Field(64, ge=8)
    # long texts are read in windows of max_length tokens (sentiops.models.windows), up to
    # max_tokens tokens a text, the windows' logits pooled: mean | weighted | max | last
    window_pooling: Literal["mean", "weighted", "max", "last"] = "last"
    max_tokens: int = Field(512, ge=8)
    patience: int = Field(2, ge=1)
    # soft targets from the raters' mean scores (0: hard labels only), see
    # sentiops.models.transformer.soft_targets and benchmarks/quality.py
    soft_width: float = Field(SOFT_WIDTH, ge=0.0)
    threads: int | None = Field(None, ge=1)
    # serving form made when the model is packaged (sentiops.models.serving_form): "auto" =
    # the fastest form within `serving_tolerance` macro-F1 of PyTorch fp32 on validation,
    # trying a distilled half-depth student first; "onnx-int8" etc. name one form
    serving_form: str = "auto"
    serving_tolerance: float = Field(0.005, ge=0.0, le=1.0)
    # passes of the distilled student over the training texts (the auto form's first choice;
    # 0: no student, auto tries the model's own ONNX forms only)
    distill_epochs: int = Field(2, ge=0)
    # fit the drift detector (sentiops.drift) on the training split and store it in the model
    # directory, so the sidecar loads it from where the model is (needs >= 20 train and
    # validation texts; skipped, and recorded as skipped, below that)
    drift_detector: bool = True
    # calibration fitted on the validation split when the model is packaged and applied to
    # every served probability (sentiops.estimation.calibration): "temperature" (one
    # parameter, labels unchanged), "vector" (a scale and a bias per class) or "none"
    calibration: str = "temperature"
    # both
    class_weights: bool = True
    # tracking
    track: bool = True
    register_name: str | None = REGISTERED_MODEL
    report_dir: Path | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("model_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        from sentiops.models import MODEL_TYPES

        if value not in MODEL_TYPES:
            raise ValueError(f"unknown model type {value!r}; use one of {list(MODEL_TYPES)}")
        return value

    @field_validator("serving_form")
    @classmethod
    def _known_form(cls, value: str) -> str:
        forms = ("auto", "student-int8", "onnx-int8", "onnx-fp32", "pytorch")
        if value not in forms:
            raise ValueError(f"unknown serving form {value!r}; use one of {list(forms)}")
        return value

    @field_validator("calibration")
    @classmethod
    def _known_calibration(cls, value: str) -> str:
        methods = ("temperature", "vector", "none")
        if value not in methods:
            raise ValueError(f"unknown calibration {value!r}; use one of {list(methods)}")
        return value

    def model_params(self) -> dict[str, Any]:
        """The model type's hyperparameters, with this config's values."""
        from sentiops.models import hyperparameters

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
    n_resamples: int = Field(2000, ge=1000, description="paired bootstrap resamples")
    seed: int = Field(SEED, description="seed of the paired bootstrap")
    max_class_recall_drop: float = Field(0.05, ge=0.0, le=1.0)
    max_p95_latency_ms: float = Field(1000.0, gt=0.0, description="single-text p95 budget")
    max_model_size_mb: float = Field(2000.0, gt=0.0)
    min_macro_f1: float = Field(0.5, ge=0.0, le=1.0, description="bar for the first champion")
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
