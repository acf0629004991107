"""Training: fit a model type on prepared data, package it, score it, track it.

    train       fit, package (serving form, drift detector), score, write the model directory,
                log the run and register the challenger
    warm_start  `--base-model champion`: the registry's champion as the starting checkpoint
    tune        hyperparameter search (Optuna; each trial an MLflow child run)

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
