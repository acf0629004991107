"""Module boundaries the containers rely on, checked in fresh interpreters: the modules the
predictor and the drift detector need import no kfp / kserve / mlflow / optuna / pydantic,
and the data side of evaluation and the gate imports no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = {"kfp", "kserve", "mlflow", "optuna"}


def _loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    return {name.split(".")[0] for name in out}


def test_model_side_imports_nothing_heavy() -> None:
    loaded = _loaded(
        "import sentiops.models, sentiops.models.modeldir, sentiops.store.storage, "
        "sentiops.config, sentiops.data.datasets, sentiops.data.split, sentiops.data.validate, "
        "sentiops.scoring"
    )
    assert not HEAVY & loaded
    assert "pydantic" not in loaded  # the drift image pins pydantic<2 (alibi-detect 0.11.4)
    assert "torch" not in loaded  # a TF-IDF model needs no torch until it is loaded


@pytest.mark.parametrize(
    "module",
    [
        "sentiops.evaluation.evaluate",
        "sentiops.evaluation.report",
        "sentiops.gate.decision",
        "sentiops.data.prepare",
        "sentiops.gate.report",
    ],
)
def test_evaluation_and_gate_do_not_import_torch(module: str) -> None:
    loaded = _loaded(f"import {module}")
    assert "torch" not in loaded and "transformers" not in loaded
    assert not {"kfp", "kserve"} & loaded


def test_cli_starts_without_the_heavy_stack() -> None:
    assert not (HEAVY | {"torch"}) & _loaded("import sentiops.cli.main")


def test_drift_modules_import_nothing_heavy() -> None:
    """The drift detector's core and the sidecar import no torch, transformers, alibi-detect,
    pydantic, kfp, kserve or mlflow until they run: the CLI can say "run this in the drift
    environment", and the pipeline's fit step needs no alibi."""
    loaded = _loaded(
        "import sentiops.detection.detector, sentiops.detection.windows, "
        "sentiops.detection.environment, sentiops.store.layout, sentiops.cli.drift, drift.events, "
        "drift.settings, drift.predlog, drift.retrain, drift.monitor, drift.server, "
        "drift.estimate, sentiops.estimation.calibration, sentiops.estimation.performance"
    )
    assert not (HEAVY | {"torch", "transformers", "alibi_detect", "pydantic"}) & loaded
