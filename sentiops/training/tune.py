"""Hyperparameter search with Optuna; every trial is an MLflow child run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentiops.config import Settings, get_settings
from sentiops.data.datasets import LABEL, TEXT
from sentiops.data.prepare import prepare
from sentiops.evaluation.evaluate import evaluate
from sentiops.models import LoadedModel
from sentiops.params import TrainConfig
from sentiops.registry import tracking
from sentiops.training.train import fit


def search_space(trial: Any, model_type: str) -> dict[str, Any]:
    if model_type == "tfidf-logreg":
        return {
            "c": trial.suggest_float("c", 0.05, 50.0, log=True),
            "ngram_max": trial.suggest_int("ngram_max", 1, 3),
            "char_ngrams": trial.suggest_categorical("char_ngrams", [True, False]),
        }
    return {
        "lr": trial.suggest_float("lr", 1e-5, 3e-4, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32]),
        "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
    }


def tune(
    base: TrainConfig, trials: int, settings: Settings | None = None, progress: bool = True
) -> dict[str, Any]:
    """Maximise validation macro-F1 over `trials`; returns best params and all trials."""
    import optuna

    s = settings or get_settings()
    prep = prepare(base, None, s)
    train_df, val_df = prep.splits["train"], prep.splits["validation"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=base.seed)
    )

    def objective(trial: optuna.Trial) -> float:
        cfg = base.model_copy(update=search_space(trial, base.model_type))
        model = fit(cfg, train_df, val_df, progress=False)
        loaded = LoadedModel(model, {"version": f"trial-{trial.number}"}, Path("."))
        f1 = float(evaluate(loaded, val_df[TEXT], val_df[LABEL], behavioural=False)["macro_f1"])
        if base.track:
            with tracking.run(
                f"trial-{trial.number}",
                cfg.model_params(),
                nested=True,
                tags={"dataset_version": prep.manifest.version},
            ):
                tracking.log_metrics({"val_macro_f1": f1})
        return f1

    def run_study() -> None:
        study.optimize(objective, n_trials=trials, show_progress_bar=progress)

    if base.track:
        with tracking.run(
            f"tune-{base.model_type}",
            {"trials": trials, "dataset_version": prep.manifest.version},
            settings=s,
        ):
            run_study()
            tracking.log_metrics({"best_val_macro_f1": study.best_value})
    else:
        run_study()
    return {
        "best_params": study.best_params,
        "best_val_macro_f1": study.best_value,
        "dataset_version": prep.manifest.version,
        "trials": [
            {"number": t.number, "params": t.params, "value": t.value} for t in study.trials
        ],
    }
