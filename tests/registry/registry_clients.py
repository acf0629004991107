"""One client process of tests/registry/test_registry_concurrency.py: what a training pod and a
tuning pod do against the cluster's MLflow tracking server, through the product's own code.

Run by `multiprocessing` (spawn): the function below is imported by name in a fresh
interpreter, so this module imports nothing of the test suite."""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

SHARED_ROUNDS = 2  # training runs per client into the shared registered model
TRIALS = 3  # tuning trials per client (each an MLflow child run)


def own_model(index: int) -> str:
    """The registered model a client walks through the whole lifecycle on its own."""
    return f"sentiops-sentiment-client-{index}"


def client_process(
    index: int, url: str, folder: str, data: str, barrier: Any, results: Any
) -> None:
    """Train into the shared model (a new version, `challenger` moved), tune (a parent run
    with a child run per trial), then train twice into a model of its own and walk it through
    candidate -> champion, champion -> previous and a revert: alias moves on the same tables
    at the same time as the others. Puts ("ok", index, what it did) or ("error", index,
    traceback) on `results`."""
    os.environ["MLFLOW_TRACKING_URI"] = url
    os.environ["SENTIOPS_HOME"] = str(Path(folder) / "home")
    try:
        from sentiops.params import TrainConfig
        from sentiops.registry import lifecycle
        from sentiops.training.train import train
        from sentiops.training.tune import tune

        def config(name: str, seed: int, **fields: Any) -> TrainConfig:
            return TrainConfig.model_validate(
                {
                    "data": [data],
                    "output": Path(folder) / name,
                    "seed": seed,
                    "drift_detector": False,
                    "tags": {"client": str(index)},
                    **fields,
                }
            )

        out: dict[str, Any] = {"trained": [], "own": []}
        barrier.wait(timeout=600)  # every client imported and ready: start together
        for r in range(SHARED_ROUNDS):
            result = train(config(f"shared-{r}", 100 * index + r), progress=False)
            out["trained"].append(
                {
                    "run_id": result.tracking["run_id"],
                    "version": result.tracking["registered_version"],
                    "val_macro_f1": result.metrics["validation"]["macro_f1"],
                    "test_macro_f1": result.metrics["test"]["macro_f1"],
                }
            )
        out["tuned"] = tune(config("tune", index), TRIALS, progress=False)
        name = own_model(index)
        for r in range(2):
            result = train(config(f"own-{r}", 1000 + r, register_name=name), progress=False)
            out["own"].append(result.tracking["registered_version"])
        first, second = out["own"]
        approved = {"approved": True}
        lifecycle.mark_candidate(first, f"s3://b/models/{name}/{first}", approved, name)
        lifecycle.promote(first, "canary healthy", name)
        lifecycle.mark_candidate(second, f"s3://b/models/{name}/{second}", approved, name)
        lifecycle.promote(second, "canary healthy", name)
        out["reverted"] = lifecycle.revert("error rate", name)
        results.put(("ok", index, out))
    except BaseException:  # noqa: BLE001 - the parent reports it
        results.put(("error", index, traceback.format_exc()))
