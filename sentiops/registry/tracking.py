"""MLflow tracking: sqlite file under SENTIOPS_HOME by default, MLFLOW_TRACKING_URI overrides.

A training run logs params, metrics, the dataset version and the model directory, and registers
the model (an MLflow pyfunc wrapping our model directory); `sentiops.registry.lifecycle` owns
the aliases (challenger -> candidate -> champion, previous) on top of the low-level calls here.
A remote server is health-checked first so an unreachable MLflow fails fast
with a clear error instead of minutes of retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sentiops.config import EXPERIMENT, REGISTERED_MODEL, Settings, get_settings
from sentiops.errors import TrackingError

__all__ = ["EXPERIMENT", "REGISTERED_MODEL", "configure", "log_training", "run"]
PYFUNC_REQUIREMENTS = [
    "sentiops",
    "mlflow==3.17.2",
    "torch==2.13.0",
    "transformers==4.57.6",
    "scikit-learn",
    "numpy==1.26.4",
    "pandas",
]


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    return mlflow


def client() -> Any:
    """An MlflowClient for the configured store (call `configure()` first)."""
    return _mlflow().MlflowClient()


def download_artifacts(uri: str, dest: Path) -> Path:
    """Download `uri` (runs:/..., models:/...) under `dest`."""
    try:
        return Path(_mlflow().artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(f"MLflow could not download {uri}: {exc}", "check the URI") from exc


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            if resp.status != 200:
                raise TrackingError(
                    f"MLflow at {uri} answered {resp.status} on /health", "check the server logs"
                )
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable: {exc}",
            "start it, fix MLFLOW_TRACKING_URI, or unset it to use the local sqlite store "
            "(or pass --no-track)",
        ) from exc


def configure(settings: Settings | None = None, experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the configured store and make sure the experiment exists."""
    s = settings or get_settings()
    uri = s.tracking_uri
    check_reachable(uri)
    mlflow = _mlflow()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    try:
        if mlflow.get_experiment_by_name(experiment) is None:
            location = None
            if not uri.startswith(("http://", "https://")):
                s.artifact_root.mkdir(parents=True, exist_ok=True)
                location = s.artifact_root.as_uri()
            _create_experiment(experiment, location)
        mlflow.set_experiment(experiment)
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(
            f"MLflow at {uri} refused to set up experiment {experiment!r}: {exc}",
            "check MLFLOW_TRACKING_URI and the server's permissions",
        ) from exc
    return uri


def _create_experiment(name: str, location: str | None) -> None:
    """Create the experiment; another client (a training run or tuning trial started at the
    same time against the same store) may create it between our lookup and this call: its
    experiment is as good as ours (the store's unique name refuses the second one)."""
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    try:
        mlflow.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


class SentimentPyfunc:
    """MLflow pyfunc flavour over a SentiOps model directory (list of texts -> labels)."""

    def load_context(self, context: Any) -> None:
        from sentiops.models import load_model  # lazy: pulls cryptography

        self.model = load_model(context.artifacts["model_dir"])

    # No annotations on purpose: MLflow derives a model signature from predict()'s type hints
    # and warns about any it cannot check; this wrapper validates its input itself.
    def predict(self, context, model_input, params=None):
        import pandas as pd

        from sentiops.models import predict  # lazy: pulls cryptography

        texts = (
            model_input.iloc[:, 0].tolist()
            if isinstance(model_input, pd.DataFrame)
            else list(model_input)
        )
        return pd.DataFrame(
            [
                {"label": p.label, "confidence": p.confidence}
                for p in predict(self.model, texts, max_batch=len(texts) or 1)
            ]
        )


def _pyfunc_model() -> Any:
    _mlflow()
    from mlflow.pyfunc import PythonModel

    class _Wrapped(SentimentPyfunc, PythonModel):
        pass

    return _Wrapped()


@contextlib.contextmanager
def run(
    name: str,
    params: dict[str, Any],
    tags: dict[str, str] | None = None,
    nested: bool = False,
    settings: Settings | None = None,
) -> Iterator[Any]:
    """An MLflow run that is marked FAILED (and registers nothing) if the body raises."""
    if not nested:
        configure(settings)
    mlflow = _mlflow()
    active = mlflow.start_run(run_name=name, nested=nested, tags=tags or {})
    try:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        yield active
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def log_metrics(metrics: dict[str, Any], prefix: str = "") -> None:
    mlflow = _mlflow()
    flat = {
        f"{prefix}{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    mlflow.log_metrics(flat)


def log_model_dir(model_dir: Path, register_as: str | None = REGISTERED_MODEL) -> dict[str, Any]:
    """Log the model directory as a pyfunc model and register it (if `register_as`)."""
    mlflow = _mlflow()
    try:
        with warnings.catch_warnings():
            # MLflow advises on type hints of the wrapper; the wrapper checks its input itself
            warnings.filterwarnings("ignore", category=UserWarning, message=".*type hint")
            warnings.filterwarnings("ignore", category=UserWarning, message="Decorate your")
            # the cloudpickle notice: our wrapper is importable code, the weights stay files
            logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=_pyfunc_model(),
                artifacts={"model_dir": str(model_dir)},
                pip_requirements=PYFUNC_REQUIREMENTS,
                registered_model_name=register_as,
            )
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(
            f"MLflow could not log/register the model: {exc}",
            "check the tracking server and its artifact store",
        ) from exc
    out = {"model_uri": info.model_uri, "registered_version": None}
    if register_as and info.registered_model_version is not None:
        out["registered_version"] = str(info.registered_model_version)
    return out


METRIC_PREFIX = {"validation": "val_"}


def log_training(
    model_dir: Path,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    metrics: dict[str, dict[str, Any]],
    register_as: str | None = REGISTERED_MODEL,
) -> dict[str, Any]:
    """One training run: params, tags, metrics per split (`val_*`, `test_*`, `train_*`), the
    model directory; registered as a new version (`registry.log_training` then makes it the
    `challenger`). A failure inside marks the run FAILED and registers nothing."""
    with run(run_name, params, tags=tags) as active:
        for split_name, values in metrics.items():
            log_metrics(values, METRIC_PREFIX.get(split_name, f"{split_name}_"))
        out = log_model_dir(model_dir, register_as)
        out["run_id"] = active.info.run_id
    return out


#: what a SQL store answers when two clients insert the same row at once (PostgreSQL, sqlite)
_INSERT_RACE = re.compile(r"UniqueViolation|duplicate key|UNIQUE constraint failed|IntegrityError")


def set_alias(name: str, alias: str, version: str, attempts: int = 3) -> None:
    """Point `alias` at `version`. Two clients that set an alias for the first time at the
    same moment (training runs moving `challenger`) both insert it, and the store refuses the
    second insert (a 400 the client does not retry); the alias exists then, so setting it
    again moves it: the last writer wins, as when it already existed."""
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    for attempt in range(1, attempts + 1):
        try:
            mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
            return
        except MlflowException as exc:
            if attempt == attempts or not _INSERT_RACE.search(str(exc)):
                raise
            time.sleep(0.05 * attempt)


def get_alias_version(name: str, alias: str) -> str | None:
    """The registry version behind `alias`, or None when the model or alias does not exist.

    Any other failure (an unreachable server, a refused request) raises TrackingError, so an
    outage is never mistaken for "no champion yet"."""
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise TrackingError(
            f"MLflow could not resolve {name}@{alias}: {exc}",
            "check MLFLOW_TRACKING_URI and the server",
        ) from exc
