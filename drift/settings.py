"""The sidecar's settings: one field of `SidecarSettings` per knob, each with an environment
variable (`ENV`, what the Helm chart sets) and a flag (`--window-size` for `window_size`); flags
win.

Defaults: port 9081 (KServe's predictor has 8080 HTTP and 8081 gRPC), windows of 200
predictions closed after at most 600 s (tested from 30), K = 3 drifting windows before the
labelling queue, retraining off unless SENTIOPS_RETRAIN_ENABLED (adapter `kfp` or `command`,
cooldown 6 h, at least 50 new labelled rows). Without SENTIOPS_DRIFT_DETECTOR (a model
directory) each model version's detector is read from `config.model_uri(store, version)`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sentiops.config import DATASET, EXPERIMENT, MODEL_NAME, get_settings

DEFAULT_PORT = 9081


@dataclass
class SidecarSettings:
    port: int = DEFAULT_PORT
    host: str = "0.0.0.0"  # noqa: S104 - a container's port; loopback in tests
    detector: str | None = None
    store: str = ""
    model_name: str = MODEL_NAME
    model_version: str = ""
    predictor_url: str | None = None
    window_size: int = 200
    window_seconds: float = 600.0
    min_window: int = 30
    alpha: float | None = None
    queue_size: int = 10_000
    join_timeout: float = 60.0
    prediction_log: bool = True
    flush_rows: int = 1000
    flush_seconds: float = 60.0
    consecutive: int = 3
    labelling_per_window: int = 100
    # how often (s) the estimate's own error is refreshed from the random sample's labels in
    # the store (sentiops_estimate_error; 0: off)
    estimate_labels_seconds: float = 60.0
    retrain_enabled: bool = False
    retrain_mode: str = "kfp"
    retrain_cooldown: float = 6 * 3600.0
    retrain_min_labels: int = 50
    # the poisoning guard (sentiops.feedback.live.review_burst): a burst of labels more than this
    # share of which comes from one token is held for review (1.0: off; e.g. 0.9 with teams),
    # and one whose labels contradict the model beyond the random sample's rate and the
    # model's own expected error on more than this share of the labels that should agree
    retrain_max_token_share: float = 1.0
    retrain_max_excess: float = 0.3
    kfp_host: str | None = None
    kfp_experiment: str = EXPERIMENT
    retrain_command: str | None = None
    retrain_datasets: list[str] = field(default_factory=lambda: [DATASET])
    workdir: Path = Path("/tmp/sentiops-drift")  # noqa: S108 - the container's emptyDir
    # tokens (`sentiops.security.auth`): when set, POST / (events that become the prediction
    # log, which labels join and retraining reads) needs `Authorization: Bearer <token>`
    auth_token_file: str | None = None
    # events a second per client address on POST / (0: no limit); over it 429 + Retry-After
    rate_limit: float = 0.0

    def __post_init__(self) -> None:
        if not self.store:
            self.store = str(get_settings().local_store)
        if self.window_size < 2 or self.min_window < 2 or self.min_window > self.window_size:
            raise ValueError(
                f"window size {self.window_size} / min window {self.min_window}: need "
                "2 <= min window <= window size"
            )
        for name in ("retrain_max_token_share", "retrain_max_excess"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(
                    f"{ENV[name]}={getattr(self, name)}: need a share in (0, 1] "
                    "(1: that check is off)"
                )


ENV: dict[str, str] = {
    "port": "SENTIOPS_DRIFT_PORT",
    "host": "SENTIOPS_DRIFT_HOST",
    "detector": "SENTIOPS_DRIFT_DETECTOR",
    "store": "SENTIOPS_STORE",
    "model_name": "SENTIOPS_MODEL_NAME",
    "model_version": "SENTIOPS_MODEL_VERSION",
    "predictor_url": "SENTIOPS_PREDICTOR_URL",
    "window_size": "SENTIOPS_DRIFT_WINDOW_SIZE",
    "window_seconds": "SENTIOPS_DRIFT_WINDOW_SECONDS",
    "min_window": "SENTIOPS_DRIFT_MIN_WINDOW",
    "alpha": "SENTIOPS_DRIFT_P_VALUE",
    "queue_size": "SENTIOPS_DRIFT_QUEUE",
    "join_timeout": "SENTIOPS_DRIFT_JOIN_TIMEOUT",
    "prediction_log": "SENTIOPS_PREDICTION_LOG",
    "flush_rows": "SENTIOPS_PREDICTION_LOG_FLUSH_ROWS",
    "flush_seconds": "SENTIOPS_PREDICTION_LOG_FLUSH_SECONDS",
    "consecutive": "SENTIOPS_DRIFT_CONSECUTIVE",
    "labelling_per_window": "SENTIOPS_LABELLING_PER_WINDOW",
    "estimate_labels_seconds": "SENTIOPS_ESTIMATE_LABELS_SECONDS",
    "retrain_enabled": "SENTIOPS_RETRAIN_ENABLED",
    "retrain_mode": "SENTIOPS_RETRAIN_MODE",
    "retrain_cooldown": "SENTIOPS_RETRAIN_COOLDOWN",
    "retrain_min_labels": "SENTIOPS_RETRAIN_MIN_LABELS",
    "retrain_max_token_share": "SENTIOPS_RETRAIN_MAX_TOKEN_SHARE",
    "retrain_max_excess": "SENTIOPS_RETRAIN_MAX_EXCESS",
    "kfp_host": "SENTIOPS_KFP_HOST",
    "kfp_experiment": "SENTIOPS_KFP_EXPERIMENT",
    "retrain_command": "SENTIOPS_RETRAIN_COMMAND",
    "retrain_datasets": "SENTIOPS_RETRAIN_DATASETS",
    "workdir": "SENTIOPS_DRIFT_WORKDIR",
    "auth_token_file": "SENTIOPS_AUTH_TOKEN_FILE",
    "rate_limit": "SENTIOPS_DRIFT_RATE_LIMIT",
}


def _convert(name: str, raw: str) -> Any:
    kind = {f.name: f.type for f in fields(SidecarSettings)}[name]
    kind = str(kind)
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    if kind.startswith("bool"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind.startswith("list"):
        return [x.strip() for x in raw.split(",") if x.strip()]
    if kind == "Path":
        return Path(raw)
    return raw


def from_env(environ: dict[str, str] | None = None, **overrides: Any) -> SidecarSettings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, var in ENV.items():
        raw = env.get(var)
        if raw not in (None, ""):
            try:
                values[name] = _convert(name, str(raw))
            except ValueError as exc:
                raise SystemExit(f"error: {var}={raw!r}: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SidecarSettings(**values)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m drift",
        description="SentiOps drift sidecar: KServe inference-log CloudEvents on POST /, "
        "Prometheus metrics on GET /metrics. Every flag also has an environment variable "
        "(see drift/settings.py).",
    )
    for name in ENV:
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    return ap


def from_args(argv: list[str] | None = None) -> SidecarSettings:
    args = vars(parser().parse_args(argv))
    overrides = {k: _convert(k, v) for k, v in args.items() if v is not None}
    return from_env(**overrides)
