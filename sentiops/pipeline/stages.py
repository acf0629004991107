"""The training pipeline's stages as plain functions over files.

Each KFP component in `components/` is a few lines that turn its typed artifacts into paths and
call one function here, so the stage logic is the same under kfp.local, on a cluster and in the
unit tests. Tables travel between stages as Parquet (columns text, label, _source, _row).

    ingest -> validate -> split -> train -> evaluate -> gate -> register (on approval)

The train step signs the model it writes (`sentiops.security.signing`): on a cluster with the
Kubernetes Secret `sentiops-model-signing` that the training pipeline mounts into that step at
`SIGNING_KEY_DIR` (`use_mounted_signing_key`), else with the environment's key
(`SENTIOPS_MODEL_SIGNING_KEY_FILE`) or this machine's own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sentiops.config import REGISTERED_MODEL, Settings
from sentiops.data import datasets as data_mod
from sentiops.data.datasets import LABEL, LABELS, TEXT
from sentiops.data.validate import check_overlap
from sentiops.data.validate import validate as run_validate
from sentiops.errors import ConfigError, ValidationFailed
from sentiops.evaluation.evaluate import evaluate as run_evaluate
from sentiops.gate.promotion import gate_challenger
from sentiops.gate.promotion import register as push
from sentiops.models import hyperparameters as known
from sentiops.models import load_model
from sentiops.params import PIPELINE_OWNED, TrainConfig, parse
from sentiops.security.signing import SIGNING_KEY_ENV, VERIFY_KEY_ENV

if TYPE_CHECKING:  # heavy modules (torch, MLflow) load only in the stages that use them
    from sentiops.data.validate import Report
    from sentiops.gate.decision import Decision
    from sentiops.params import GateConfig


#: Where the training pipeline mounts the Secret `sentiops-model-signing` into the train step
#: (`kubeflow/training.py`): `signing.key` signs the models it writes (PEM, PKCS#8), and
#: `verify.pub` (the key the predictor and the sidecar verify with) checks them.
SIGNING_KEY_DIR = Path("/var/run/sentiops/model-signing")
SIGNING_KEY_FILE = "signing.key"
VERIFY_KEY_FILE = "verify.pub"


def use_mounted_signing_key(folder: Path = SIGNING_KEY_DIR) -> Path | None:
    """Sign with the mounted Secret's key: `SENTIOPS_MODEL_SIGNING_KEY_FILE` is set to its
    `signing.key` when that is there and the environment names no signing key itself, and
    `SENTIOPS_MODEL_VERIFY_KEY_FILE` to its `verify.pub` likewise, so the step verifies what it
    writes with the predictor's key: a Secret whose two halves do not match fails training,
    not serving. Under kfp.local and in tests nothing is mounted and the environment decides
    (the platform config that mounts it is the cluster's only: a path set in the component's
    environment would name a missing file there). Returns the signing key's path when set."""

    mounted, public = folder / SIGNING_KEY_FILE, folder / VERIFY_KEY_FILE
    if os.environ.get(SIGNING_KEY_ENV, "").strip() or not mounted.is_file():
        return None
    os.environ[SIGNING_KEY_ENV] = str(mounted)
    if public.is_file() and not os.environ.get(VERIFY_KEY_ENV, "").strip():
        os.environ[VERIFY_KEY_ENV] = str(public)
    return mounted


def endpoints(s3_endpoint: str = "", mlflow_tracking_uri: str = "", store: str = "") -> Settings:
    """Settings from the environment with a run's endpoints and artifact store (where the live
    texts are logged; empty = keep the environment's)."""
    overrides = {
        "s3_endpoint": s3_endpoint,
        "mlflow_tracking_uri": mlflow_tracking_uri,
        "store_uri": store,
    }
    return Settings.from_env(**{k: v for k, v in overrides.items() if v})


def _write_table(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)


def ingest(
    datasets: list[str],
    out: Path,
    text_column: str = TEXT,
    label_column: str = LABEL,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Read built-in names, files or s3:// URIs into one table."""
    df = data_mod.load(list(datasets), text_column, label_column, settings)
    _write_table(df, out)
    return {"rows": len(df), "sources": list(datasets)}


def validate(
    inp: Path, out: Path, report_dir: Path, min_per_class: int = 10, drop_invalid: bool = False
) -> tuple[Report, str]:
    """Validate and clean; writes the report first, then raises ValidationFailed if fatal.

    Returns the report and the dataset version (content hash, as `data.snapshot` names it).
    """

    clean, report = run_validate(pd.read_parquet(inp), LABELS, min_per_class, drop_invalid)
    report.write(report_dir)
    if not report.ok:
        errs = "; ".join(f"{f.check}: {f.message}" for f in report.errors)
        raise ValidationFailed(
            f"data validation failed: {errs}",
            report.to_dict(),
            "fix the rows named in the validation report, or set "
            "drop_invalid to drop row-level problems",
        )
    _write_table(clean, out)
    return report, data_mod.content_hash(clean)[:12]


def split(
    inp: Path, outs: dict[str, Path], seed: int = 42, val_frac: float = 0.1, test_frac: float = 0.2
) -> dict[str, Any]:
    """Stratified train/validation/test tables; reports texts shared across splits."""
    from sentiops.data.split import split as run_split  # lazy: pulls scikit-learn

    parts = run_split(pd.read_parquet(inp), seed, val_frac, test_frac)
    for name, part in parts.items():
        _write_table(part, outs[name])
    overlap = check_overlap(parts)
    return {
        "rows": {k: len(v) for k, v in parts.items()},
        "overlap": overlap.count if overlap else 0,
    }


def train_config(
    model_type: str, base_model: str, hyperparameters: dict[str, Any], seed: int, output: Path
) -> TrainConfig:
    """A TrainConfig from pipeline parameters. `hyperparameters` may set the model type's
    hyperparameters and the training knobs (`max_train_examples`, `max_length`,
    `class_weights`, ...); anything else is an error naming what is allowed."""

    knobs = {
        "max_train_examples",
        "max_length",
        "added_share",
        "serving_form",
        "serving_tolerance",
        "distill_epochs",
        "transfer",
        "transfer_max",
    }
    allowed = (set(known(model_type)) | knobs) - set(PIPELINE_OWNED)
    unknown = sorted(set(hyperparameters) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter(s) {unknown} for model type {model_type}",
            f"{model_type} takes: {', '.join(sorted(allowed))}",
        )
    return parse(
        TrainConfig,
        {
            "data": ["(pipeline split)"],
            "output": output,
            "model_type": model_type,
            "base_model": base_model,
            "seed": seed,
            "track": False,
            **hyperparameters,
        },
        "hyperparameters",
    )


def train(
    train_path: Path,
    val_path: Path,
    out: Path,
    cfg: TrainConfig,
    dataset_version: str | None,
    register_name: str | None = REGISTERED_MODEL,
    track: bool = True,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Fit on the train table, score the validation table, write the model directory and
    (with `track`) log the run and register the model with the alias `challenger`. The model
    is signed with the mounted Secret's key on a cluster (`use_mounted_signing_key`)."""
    from sentiops.training.train import train_on_splits  # lazy: pulls scikit-learn, scipy

    use_mounted_signing_key()

    cfg = cfg.model_copy(
        update={
            "output": out,
            "track": track,
            "register_name": register_name,
            "tags": cfg.tags | {"source": "pipeline"},
        }
    )
    train_df = pd.read_parquet(train_path)
    dataset = {"version": dataset_version, "source": ["pipeline"], "rows": len(train_df)}
    fitted = train_on_splits(
        cfg, train_df, pd.read_parquet(val_path), None, dataset, settings, progress=True
    )
    return {
        "version": fitted.version,
        "model_type": cfg.model_type,
        "val_macro_f1": fitted.metrics["validation"]["macro_f1"],
        "train_seconds": round(fitted.seconds, 2),
        "registered_version": fitted.tracking.get("registered_version") or "",
        "run_id": fitted.tracking.get("run_id", ""),
    }


def evaluate(model_dir: Path, test_path: Path) -> dict[str, Any]:
    """All evaluation metrics of a model directory on the test table (with predictions)."""

    test = pd.read_parquet(test_path)
    return run_evaluate(load_model(model_dir), test[TEXT], test[LABEL])


def gate(
    challenger_dir: Path,
    test_path: Path,
    cfg: GateConfig,
    champion_source: str,
    work: Path,
    dataset_version: str | None = None,
    *,
    registered_model: str = REGISTERED_MODEL,
    challenger_registry_version: str | None = None,
    settings: Settings | None = None,
) -> Decision:
    """`promotion.gate_challenger` on the test table."""

    return gate_challenger(
        challenger_dir,
        pd.read_parquet(test_path),
        cfg,
        champion_source,
        work,
        dataset_version,
        registered_model=registered_model,
        challenger_registry_version=challenger_registry_version,
        settings=settings,
    )


def register(
    model_dir: Path,
    decision: dict[str, Any],
    store: str,
    model_name: str,
    registered_model: str = REGISTERED_MODEL,
    registry_version: str | None = None,
    settings: Settings | None = None,
) -> dict[str, str]:
    """`promotion.register`: push an approved model to the store; it becomes the candidate."""

    return push(
        model_dir, decision, store, model_name, registered_model, registry_version, settings
    )


SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def rollout(
    storage_uri: str,
    version: str,
    namespace: str = "",
    prometheus_url: str = "",
    *,
    registered_model: str = REGISTERED_MODEL,
    settings: Settings | None = None,
    kubeconfig: str | None = None,
    mode: str = "",
    overrides: dict[str, Any] | None = None,
    run_id: str = "",
) -> Any:
    """Canary-roll the model at `storage_uri` (registry `version`) into the cluster's
    InferenceService with the settings of the `sentiops-rollout` ConfigMap, then settle the
    registry (`rollout.settle.roll_out`). `mode` canary or shadow ("" = the ConfigMap's
    `rolloutMode`, default canary): a shadow gets a mirrored copy of the predictions
    (`rollout.shadow`). `overrides`: ConfigMap keys set for this run only (e.g.
    `{"approveBefore": "100", "notify": "slack=https://..."}`). A person approves through the
    InferenceService's annotation (`rollout.kserve.AnnotationGate`); notifications link to the
    ConfigMap's `recordUrl` with `{run_id}` and `{version}` filled in. Returns the record."""
    from sentiops.rollout.kserve import (
        AnnotationGate,
        KServeExecutor,
        api_client,
    )  # lazy: pulls scipy, prometheus_client
    from sentiops.rollout.notify import (
        Notifier,
        parse_targets,
    )  # lazy: pulls scipy, prometheus_client
    from sentiops.rollout.prometheus import PrometheusSource  # lazy: pulls scipy, prometheus_client
    from sentiops.rollout.settle import roll_out  # lazy: pulls scipy, prometheus_client
    from sentiops.rollout.shadow import ShadowExecutor  # lazy: pulls scipy, prometheus_client
    from sentiops.rollout.steps import CANARY, SHADOW  # lazy: pulls scipy, prometheus_client

    if not namespace and SA_NAMESPACE.exists():
        namespace = SA_NAMESPACE.read_text().strip()
    if not namespace:
        raise ConfigError("no namespace for the rollout", "pass namespace (e.g. sentiops)")
    api = api_client(kubeconfig)
    cfg, url, mode = _rollout_settings(api, namespace, overrides, prometheus_url, mode)
    kserve = KServeExecutor(api, namespace, cfg.inference_service, storage_uri, version)
    current = kserve.get()
    executor: KServeExecutor | ShadowExecutor = kserve
    if mode == SHADOW and current is not None:  # the first deployment has nothing to shadow
        executor = ShadowExecutor(api, namespace, cfg.inference_service, storage_uri, version)
    # a first deployment is no shadow
    plan = _rollout_plan(cfg, version, current, mode if executor is not kserve else CANARY)
    record_url = cfg.record_url.replace("{run_id}", run_id).replace("{version}", version)
    return roll_out(
        plan,
        executor,
        PrometheusSource(url, cfg.inference_service),
        version,
        registered_model,
        settings,
        gate=AnnotationGate(kserve),
        notifier=Notifier(parse_targets(cfg.notify)) if cfg.notify else None,
        record_url=record_url,
        model=cfg.inference_service,
    )


def _rollout_settings(
    api: Any,
    namespace: str,
    overrides: dict[str, Any] | None,
    prometheus_url: str,
    mode: str,
) -> tuple[Any, str, str]:
    """The `sentiops-rollout` ConfigMap's settings with this run's `overrides`, the Prometheus
    URL of the judge and the rollout mode (each: the argument, else the ConfigMap's)."""
    from sentiops.rollout.kserve import (
        RolloutSettings,
        load_settings,
    )  # lazy: pulls scipy, prometheus_client
    from sentiops.rollout.steps import MODES  # lazy: pulls scipy, prometheus_client

    cfg = load_settings(api, namespace)
    if overrides:
        cfg = RolloutSettings.from_configmap(cfg.source | {k: str(v) for k, v in overrides.items()})
    url = prometheus_url or cfg.prometheus_url
    if not url:
        raise ConfigError(
            "no Prometheus URL for the canary judge",
            "set inferenceService.canary.prometheusUrl in the chart or pass prometheus_url",
        )
    mode = mode or cfg.mode
    if mode not in MODES:
        raise ConfigError(
            f"rollout mode {mode!r} is not one of {MODES}",
            "set rolloutMode in the sentiops-rollout ConfigMap or pass mode",
        )
    return cfg, url, mode


def _rollout_plan(cfg: Any, version: str, current: dict[str, Any] | None, mode: str) -> Any:
    """The rollout's plan from the settings; settings that do not fit together are a
    ConfigError."""
    from sentiops.rollout.kserve import served_version  # lazy: pulls scipy, prometheus_client
    from sentiops.rollout.steps import RolloutPlan  # lazy: pulls scipy, prometheus_client

    try:
        return RolloutPlan(
            canary_version=version,
            stable_version=served_version(current) if current else None,
            steps=cfg.steps,
            step_seconds=cfg.step_seconds,
            max_holds=cfg.max_holds,
            judge=cfg.judge,
            mode=mode,
            approval=cfg.approval,
        )
    except ValueError as exc:
        raise ConfigError(
            f"the rollout settings do not fit together: {exc}",
            "fix the sentiops-rollout ConfigMap (chart values) or the run's overrides",
        ) from exc
