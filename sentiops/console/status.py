"""What the platform is doing now, from the sources that know: the model registry (what
serves, what is the candidate, the gate's decisions), the local rollout's records (the canary
in progress or the last decision) and Prometheus (traffic, drift p-values and live accuracy per
model version). `sentiops status` prints it; the web console (`sentiops.console`) shows the
same sections and charts the same series (`sentiops.console.charts`).

Every source is optional and fails soft: a section that cannot be read carries
`error = "unavailable: <why>"` and the others are still shown. Nothing here writes (an absent
sqlite registry is reported, never created).

    sections = gather(prometheus_url="http://127.0.0.1:9090")
    sections["drift"].data    # [{"model_version": "3", "combined": 0.41, ..., "drift": False}]
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentiops.config import MODEL_NAME, REGISTERED_MODEL, Settings, get_settings
from sentiops.console.prometheus import PrometheusClient, Unavailable, quote, selector
from sentiops.errors import SentiOpsError
from sentiops.registry import lifecycle as registry
from sentiops.registry import tracking

#: Environment defaults of `--prometheus-url` / `--predictor-url` / `--mlflow-url`.
PROMETHEUS_URL_ENV = "SENTIOPS_PROMETHEUS_URL"
PREDICTOR_URL_ENV = "SENTIOPS_PREDICTOR_URL"
MLFLOW_URL_ENV = "SENTIOPS_MLFLOW_URL"
#: The local rollout's files (sentiops.local.rollout writes them under $SENTIOPS_HOME/rollout).
PROGRESS, DECISION = "progress.json", "decision.json"
#: Where local rollouts write them, under $SENTIOPS_HOME: `sentiops rollout --local`, and the
#: loop of `make run` / `make up` (sentiops.local.loop). Without --rollout-dir the newest one is
#: read.
ROLLOUT_DIRS = ("rollout", "loop/rollout")
#: Model versions listed beside the aliases (newest first).
VERSIONS_SHOWN = 10
#: Drift tests in the order they are shown (sentiops.metrics.DRIFT_P_VALUE's `test` label).
DRIFT_TESTS = ("combined", "embedding", "label_mix", "confidence")


@dataclass
class Section:
    """One source's view. `data` is JSON-able; `error` is set when the source is unavailable."""

    name: str
    source: str
    data: Any = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def _unavailable(name: str, source: str, why: str) -> Section:
    return Section(name, source, None, f"unavailable: {why}")


def env_url(value: str | None, env: str) -> str | None:
    """An explicit URL, else the environment's, without a trailing slash (None if neither)."""
    url = value or os.environ.get(env) or None
    return url.rstrip("/") if url else None


# ------------------------------------------------------------------------------ registry
def registry_section(
    name: str = REGISTERED_MODEL, settings: Settings | None = None, mlflow_url: str | None = None
) -> Section:
    """The aliases (champion, candidate, previous, challenger) with each version's lifecycle
    stage, reason and gate decision, and the newest versions (rejected ones included)."""
    s = settings or get_settings()
    uri = s.tracking_uri
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.exists():
            return _unavailable(
                "registry",
                uri,
                f"no registry yet ({db} does not exist; `make run` trains and "
                "registers the first models)",
            )
    try:
        import mlflow  # noqa: F401  (the train extra)
    except ImportError as exc:
        return _unavailable(
            "registry", uri, f"MLflow is not installed ({exc}); install sentiops[train]"
        )

    try:
        tracking.check_reachable(uri, timeout=3.0)
        tracking._mlflow().set_tracking_uri(uri)  # before any client: else MLflow's default
        entries = registry.status(name)
        versions = _versions(name)
    except SentiOpsError as exc:
        return _unavailable("registry", uri, exc.message)
    except Exception as exc:  # noqa: BLE001 - any MLflow failure: show it, keep the rest
        return _unavailable("registry", uri, f"MLflow at {uri} failed: {exc}")
    aliases = [
        {"alias": e.alias, "version": e.version, **_describe(e.tags), "storage_uri": e.storage_uri}
        for e in entries
    ]
    data = {
        "model": name,
        "aliases": aliases,
        "versions": versions,
        "mlflow_url": mlflow_url or (uri if uri.startswith("http") else None),
    }
    notes = [] if aliases else [f"no alias is set on {name} yet"]
    return Section("registry", uri, data, None, notes)


def _describe(tags: dict[str, str]) -> dict[str, Any]:
    stage = tags.get("lifecycle.stage")
    approved = tags.get("gate.approved")
    return {
        "stage": stage,
        "since": tags.get(f"lifecycle.{stage}_at") if stage else None,
        "reason": tags.get(f"lifecycle.{stage}_reason") if stage else None,
        "gate": {"true": "approved", "false": "rejected"}.get(approved or ""),
        "gate_delta_macro_f1": _float(tags.get("gate.delta_macro_f1")),
        "gate_confidence": _float(tags.get("gate.confidence")),
        "gate_reasons": tags.get("gate.reasons") or None,
        "gate_champion_version": tags.get("gate.champion_registry_version"),
    }


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "none") else None
    except ValueError:
        return None


def _versions(name: str) -> list[dict[str, Any]]:
    found = tracking.client().search_model_versions(f"name='{name}'")
    found = sorted(found, key=lambda v: int(v.version), reverse=True)[:VERSIONS_SHOWN]
    return [
        {
            "version": str(v.version),
            "aliases": sorted(getattr(v, "aliases", []) or []),
            "created": _ms_iso(v.creation_timestamp),
            **_describe(dict(v.tags or {})),
        }
        for v in found
    ]


def _ms_iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else None


# ------------------------------------------------------------------------------ rollout
def find_rollout_dir(home: Path) -> Path:
    """Of ROLLOUT_DIRS under `home`, the one whose records were written last."""

    def newest(folder: Path) -> float:
        times = [p.stat().st_mtime for p in (folder / PROGRESS, folder / DECISION) if p.exists()]
        return max(times, default=-1.0)

    return max((home / d for d in ROLLOUT_DIRS), key=newest)


def rollout_section(workdir: Path | None = None, now: float | None = None) -> Section:
    """The local rollout in progress (`progress.json`: steps so far) and the last decision
    (`decision.json`: sentiops.rollout.Record), from the rollout's workdir (default: the
    newest of ROLLOUT_DIRS under $SENTIOPS_HOME)."""
    folder = workdir or find_rollout_dir(get_settings().home)
    now = time.time() if now is None else now
    data: dict[str, Any] = {"in_progress": None, "last": None}
    notes = []
    for key, fname in (("in_progress", PROGRESS), ("last", DECISION)):
        path = folder / fname
        if not path.exists():
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _unavailable("rollout", str(folder), f"cannot read {path}: {exc}")
        if not isinstance(record, dict):
            return _unavailable("rollout", str(folder), f"{path} holds no JSON object")
        record["updated_seconds_ago"] = round(now - path.stat().st_mtime, 1)
        record["steps"] = [_step(s) for s in record.get("steps") or [] if isinstance(s, dict)]
        data[key] = record
    if data["in_progress"] is None and data["last"] is None:
        notes.append(f"no local rollout recorded in {folder}")
    return Section("rollout", str(folder), data, None, notes)


def _step(step: dict[str, Any]) -> dict[str, Any]:
    checks = [c for c in step.get("checks") or [] if isinstance(c, dict)]
    return {
        "traffic": step.get("traffic"),
        "verdict": step.get("verdict"),
        "score": step.get("score"),
        "baseline": step.get("baseline", "live"),
        "started_at": step.get("started_at"),
        "ended_at": step.get("ended_at"),
        "checks": [
            {
                k: c.get(k)
                for k in (
                    "name",
                    "result",
                    "value",
                    "threshold",
                    "p_value",
                    "canary",
                    "stable",
                    "message",
                )
            }
            for c in checks
        ],
        "failed": [c.get("name") for c in checks if c.get("result") == "fail"],
    }


# ------------------------------------------------------------------------------ Prometheus views
def traffic_section(prom: PrometheusClient | None, model_name: str = MODEL_NAME) -> Section:
    """Predictions a second per model version over the last minute (who serves, the canary's
    share) and the scrape targets that are up."""
    if prom is None:
        return _no_prometheus("traffic")
    sel = selector(model_name)
    try:
        rates = prom.instant(f"sum by (model_version) (rate(sentiops_predictions_total{sel}[1m]))")
        errors = dict(
            (m.get("model_version", ""), v)
            for m, v in prom.instant(
                f"sum by (model_version) (rate(sentiops_request_errors_total{sel}[1m]))"
            )
        )
        up = prom.instant("up")
    except Unavailable as exc:
        return _unavailable("traffic", prom.url, str(exc))
    total = sum(v for _, v in rates) or 0.0
    rows = [
        {
            "model_version": m.get("model_version", ""),
            "predictions_per_s": v,
            "share": (v / total) if total else None,
            "errors_per_s": errors.get(m.get("model_version", ""), 0.0),
        }
        for m, v in sorted(rates, key=lambda mv: -mv[1])
    ]
    targets = [{"job": m.get("job"), "instance": m.get("instance"), "up": v == 1.0} for m, v in up]
    notes = [] if rows else ["no predictions in the last minute"]
    return Section("traffic", prom.url, {"versions": rows, "targets": targets}, None, notes)


def drift_section(prom: PrometheusClient | None, model_name: str = MODEL_NAME) -> Section:
    """The last tested window per model version: p-value of each test, the drift flag and the
    run of drifting windows (the drift sidecar's gauges)."""
    if prom is None:
        return _no_prometheus("drift")
    sel = selector(model_name)
    try:
        pvalues = prom.instant(f"min by (model_version, test) (sentiops_drift_p_value{sel})")
        flags = prom.instant(f"max by (model_version) (sentiops_drift_detected{sel})")
        runs = prom.instant(f"max by (model_version) (sentiops_drift_consecutive_windows{sel})")
        sizes = prom.instant(f"max by (model_version) (sentiops_drift_window_size{sel})")
    except Unavailable as exc:
        return _unavailable("drift", prom.url, str(exc))
    rows: dict[str, dict[str, Any]] = {}

    def row(labels: dict[str, str]) -> dict[str, Any]:
        v = labels.get("model_version", "")
        return rows.setdefault(
            v,
            {
                "model_version": v,
                **dict.fromkeys(DRIFT_TESTS),
                "drift": None,
                "consecutive_windows": None,
                "open_window": None,
            },
        )

    for labels, value in pvalues:
        row(labels)[labels.get("test", "combined")] = value
    for labels, value in flags:
        row(labels)["drift"] = value >= 1.0
    for labels, value in runs:
        row(labels)["consecutive_windows"] = int(value)
    for labels, value in sizes:
        row(labels)["open_window"] = int(value)
    data = sorted(rows.values(), key=lambda r: _version_key(r["model_version"]))
    notes = (
        []
        if data
        else ["no drift window tested yet (the drift sidecar exports after its first full window)"]
    )
    return Section("drift", prom.url, data, None, notes)


#: The estimate section's gauges (the drift sidecar's, and live accuracy beside them), by the
#: name they get in a row.
ESTIMATE_GAUGES = {
    "sentiops_estimated_accuracy": "estimated_accuracy",
    "sentiops_estimated_accuracy_low": "estimated_accuracy_low",
    "sentiops_estimated_accuracy_high": "estimated_accuracy_high",
    "sentiops_estimated_macro_f1": "estimated_macro_f1",
    "sentiops_estimated_macro_f1_low": "estimated_macro_f1_low",
    "sentiops_estimated_macro_f1_high": "estimated_macro_f1_high",
    "sentiops_validation_accuracy": "validation_accuracy",
    "sentiops_live_accuracy": "live_accuracy",
    "sentiops_estimate_error": "estimate_error",
    "sentiops_estimate_error_labels": "estimate_error_labels",
}


def estimate_section(prom: PrometheusClient | None, model_name: str = MODEL_NAME) -> Section:
    """Performance estimated without labels per model version (the drift sidecar's last
    window, from the served calibrated probabilities): accuracy and macro-F1 with their 95 %
    intervals, per-class recall, the version's validation accuracy, and beside them the
    realized live accuracy of the random sample and the estimate's own error on those labels."""
    if prom is None:
        return _no_prometheus("estimate")
    names = "|".join(ESTIMATE_GAUGES)
    try:
        found = prom.instant(
            f'avg by (__name__, model_version) ({{__name__=~"{names}",'
            f"model_name={quote(model_name)}}})"
        )
        recalls = prom.instant(
            f"avg by (model_version, label) (sentiops_estimated_recall{selector(model_name)})"
        )
    except Unavailable as exc:
        return _unavailable("estimate", prom.url, str(exc))
    rows: dict[str, dict[str, Any]] = {}
    for labels, value in found:
        key = ESTIMATE_GAUGES.get(labels.get("__name__", ""))
        if key:
            rows.setdefault(labels.get("model_version", ""), {})[key] = value
    for labels, value in recalls:
        row = rows.get(labels.get("model_version", ""))
        if row is not None:
            row.setdefault("recall", {})[labels.get("label", "?")] = value
    data = []
    for version, row in rows.items():
        if "estimated_accuracy" not in row:
            continue  # live accuracy alone is the live_accuracy section's
        est, ref = row["estimated_accuracy"], row.get("validation_accuracy")
        data.append(
            {
                "model_version": version,
                **dict.fromkeys(ESTIMATE_GAUGES.values()),
                **row,
                "drop": (ref - est) if ref is not None else None,
            }
        )
    data.sort(key=lambda r: _version_key(r["model_version"]))
    notes = (
        []
        if data
        else [
            "no estimate yet (the drift sidecar estimates each tested window "
            "from its calibrated probabilities)"
        ]
    )
    return Section("estimate", prom.url, data, None, notes)


def accuracy_section(prom: PrometheusClient | None, model_name: str = MODEL_NAME) -> Section:
    """Live accuracy per model version from the labels of the random evaluation sample
    (`sentiops_live_accuracy`),
    with every other `sentiops_live_*` gauge the feedback API exports (e.g. macro-F1)."""
    if prom is None:
        return _no_prometheus("live_accuracy")
    sel = f'{{__name__=~"sentiops_live_.+",model_name={quote(model_name)}}}'
    try:
        found = prom.instant(f"avg by (__name__, model_version) ({sel})")
    except Unavailable as exc:
        return _unavailable("live_accuracy", prom.url, str(exc))
    rows: dict[str, dict[str, Any]] = {}
    for labels, value in found:
        v = labels.get("model_version", "")
        metric = labels.get("__name__", "sentiops_live_accuracy").removeprefix("sentiops_live_")
        rows.setdefault(v, {"model_version": v})[metric] = value
    data = sorted(rows.values(), key=lambda r: _version_key(r["model_version"]))
    notes = (
        []
        if data
        else ["no labelled feedback yet (live accuracy needs labels for earlier predictions)"]
    )
    return Section("live_accuracy", prom.url, data, None, notes)


def labelling_section(prom: PrometheusClient | None, model_name: str = MODEL_NAME) -> Section:
    """Label Studio's annotators (`sentiops labels serve`): Krippendorff's alpha per project
    and the tasks held for review (annotations without a majority)."""
    if prom is None:
        return _no_prometheus("labelling")
    sel = f"model_name={quote(model_name)}"
    try:
        alpha = prom.instant(f"max by (project) (sentiops_labelling_agreement{{{sel}}})")
        held = prom.instant(f"max by (project) (sentiops_labelling_held_tasks{{{sel}}})")
    except Unavailable as exc:
        return _unavailable("labelling", prom.url, str(exc))
    rows: dict[str, dict[str, Any]] = {}
    for key, found in (("alpha", alpha), ("held_for_review", held)):
        for labels, value in found:
            rows.setdefault(labels.get("project", ""), {"project": labels.get("project", "")})[
                key
            ] = value
    return Section("labelling", prom.url, sorted(rows.values(), key=lambda r: r["project"]))


def _no_prometheus(name: str) -> Section:
    return _unavailable(
        name, "-", f"no Prometheus URL (pass --prometheus-url or set {PROMETHEUS_URL_ENV})"
    )


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


# ------------------------------------------------------------------------------ everything
def gather(
    prometheus_url: str | None = None,
    rollout_dir: Path | None = None,
    settings: Settings | None = None,
    model_name: str = MODEL_NAME,
    registered_model: str = REGISTERED_MODEL,
    mlflow_url: str | None = None,
) -> dict[str, Section]:
    """Every section, each failing on its own."""
    prom = PrometheusClient(prometheus_url) if prometheus_url else None
    s = settings or get_settings()
    return {
        "registry": registry_section(registered_model, s, mlflow_url),
        "rollout": rollout_section(rollout_dir or find_rollout_dir(s.home)),
        "traffic": traffic_section(prom, model_name),
        "drift": drift_section(prom, model_name),
        "estimate": estimate_section(prom, model_name),
        "live_accuracy": accuracy_section(prom, model_name),
    }


def to_json(sections: dict[str, Section]) -> dict[str, Any]:
    return {name: section.to_dict() for name, section in sections.items()}
