"""Promotion gate: may the challenger replace the champion?

Both models predict the same held-out test set. The macro-F1 difference (challenger minus
champion) is tested with a paired bootstrap: each resample draws the same examples for both
models, so the spread reflects the test set, not the models' independent noise.

Approve only if every check passes:
  improvement     delta macro-F1 > 0 and >= `min_delta`
  confidence      share of bootstrap resamples with delta > `min_delta` >= `confidence`
                  (the one-sided bootstrap confidence that the true gain exceeds `min_delta`)
  class_recall    no class's recall drops by more than `max_class_recall_drop`
  latency_p95     the challenger's p95 single-text latency <= `max_p95_latency_ms`
  model_size      the challenger's model directory <= `max_model_size_mb`
No champion yet: `min_macro_f1` (challenger macro-F1 >= `min_macro_f1`) replaces the first three;
the latency and size budgets still apply, since they protect serving whatever came before.

`compare()` works on predictions only (the property tests drive it); `decide()` loads nothing
itself, it takes `LoadedModel`s of any type, measures them and calls `compare()`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sklearn.metrics import f1_score

from sentiops import tracking
from sentiops.errors import SentiOpsError, TrackingError
from sentiops.evaluate import metrics_from_predictions
from sentiops.models import LoadedModel

BATCH = 64
MB = 1_000_000


class GateRejected(SentiOpsError):
    """Something tried to promote a model the gate did not approve."""


class GateConfig(BaseModel):
    """Gate thresholds; the CLI, the KFP gate component and the tests all build this."""

    min_delta: float = Field(0.0, ge=0.0, description="smallest macro-F1 gain that counts")
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="one-sided bootstrap confidence")
    n_resamples: int = Field(2000, ge=1000, description="paired bootstrap resamples")
    seed: int = 0
    max_class_recall_drop: float = Field(0.05, ge=0.0, le=1.0)
    max_p95_latency_ms: float = Field(1000.0, gt=0.0, description="single-text p95 budget")
    max_model_size_mb: float = Field(2000.0, gt=0.0)
    min_macro_f1: float = Field(0.5, ge=0.0, le=1.0, description="bar for the first champion")
    latency_samples: int = Field(50, ge=5, description="texts timed one by one for the p95")


@dataclass
class Check:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    message: str


@dataclass
class ModelSummary:
    """One side of the comparison: what the record says about a model."""

    version: str | None = None
    model_type: str | None = None
    path: str | None = None
    registry_version: str | None = None
    macro_f1: float = 0.0
    accuracy: float = 0.0
    recall: dict[str, float] = field(default_factory=dict)
    p95_latency_ms: float | None = None
    size_mb: float | None = None


@dataclass
class Bootstrap:
    delta: float
    confidence: float
    lower: float
    ci_low: float
    ci_high: float
    n_resamples: int
    seed: int


@dataclass
class Decision:
    """The decision record: every number, the thresholds, both models and the dataset."""

    approved: bool
    delta_macro_f1: float
    reasons: list[str]
    checks: list[Check]
    challenger: ModelSummary
    champion: ModelSummary | None
    bootstrap: Bootstrap | None
    thresholds: dict[str, Any]
    dataset: dict[str, Any]
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def to_markdown(self) -> str:
        verdict = "APPROVED" if self.approved else "REJECTED"
        ch, cp = self.challenger, self.champion
        lines = [
            f"# Promotion gate: {verdict}",
            "",
            f"Dataset {self.dataset.get('version')} (n={self.dataset.get('n')}), "
            f"decided {self.decided_at}.",
            "",
            "| | challenger | champion |",
            "|---|---|---|",
            f"| model | {ch.model_type} {ch.version} | "
            + (f"{cp.model_type} {cp.version} |" if cp else "none yet |"),
            f"| registry version | {ch.registry_version or '-'} | "
            f"{(cp.registry_version or '-') if cp else '-'} |",
            f"| macro-F1 | {ch.macro_f1:.4f} | {f'{cp.macro_f1:.4f}' if cp else '-'} |",
            f"| accuracy | {ch.accuracy:.4f} | {f'{cp.accuracy:.4f}' if cp else '-'} |",
        ]
        for lab in sorted(set(ch.recall) | set(cp.recall if cp else {})):
            theirs = f"{cp.recall.get(lab, 0.0):.4f}" if cp else "-"
            lines.append(f"| recall {lab} | {ch.recall.get(lab, 0.0):.4f} | {theirs} |")
        lines += [
            f"| p95 latency (ms) | {_fmt(ch.p95_latency_ms)} | "
            f"{_fmt(cp.p95_latency_ms) if cp else '-'} |",
            f"| size (MB) | {_fmt(ch.size_mb)} | {_fmt(cp.size_mb) if cp else '-'} |",
            "",
        ]
        if self.bootstrap:
            b = self.bootstrap
            lines += [
                f"Paired bootstrap ({b.n_resamples} resamples, seed {b.seed}): "
                f"delta macro-F1 {b.delta:+.4f}, 95% CI [{b.ci_low:+.4f}, {b.ci_high:+.4f}], "
                f"P(delta > min_delta) = {b.confidence:.3f}.",
                "",
            ]
        lines += ["| check | result | value | threshold | |", "|---|---|---|---|---|"]
        for c in self.checks:
            lines.append(
                f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {_fmt(c.value)} "
                f"| {_fmt(c.threshold)} | {c.message} |"
            )
        lines += ["", "Thresholds: " + ", ".join(f"{k}={v}" for k, v in self.thresholds.items())]
        return "\n".join(lines) + "\n"

    def mlflow_tags(self) -> dict[str, str]:
        """Flat `gate.*` tags for the challenger's model version and run."""
        tags = {
            "gate.approved": str(self.approved).lower(),
            "gate.delta_macro_f1": f"{self.delta_macro_f1:.6f}",
            "gate.challenger_macro_f1": f"{self.challenger.macro_f1:.6f}",
            "gate.champion_version": str(self.champion.version if self.champion else "none"),
            "gate.champion_registry_version": str(
                (self.champion.registry_version if self.champion else None) or "none"
            ),
            "gate.challenger_version": str(self.challenger.version),
            "gate.dataset_version": str(self.dataset.get("version")),
            "gate.decided_at": self.decided_at,
            "gate.reasons": "; ".join(self.reasons)[:4900],
        }
        if self.bootstrap:
            tags["gate.confidence"] = f"{self.bootstrap.confidence:.4f}"
            tags["gate.ci_low"] = f"{self.bootstrap.ci_low:.6f}"
            tags["gate.ci_high"] = f"{self.bootstrap.ci_high:.6f}"
        for c in self.checks:
            tags[f"gate.check.{c.name}"] = "pass" if c.passed else "fail"
        tags |= {f"gate.threshold.{k}": str(v) for k, v in self.thresholds.items()}
        return tags


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _onehot(codes: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float64)[codes]


def _macro_f1(w: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Macro-F1 under example weights `w` (rows = resamples); F1 = 0 for an absent class."""
    tp = w @ (truth * pred)
    denom = w @ truth + w @ pred  # |true_k| + |pred_k| = 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return np.asarray(f1.mean(axis=-1))


def paired_bootstrap(
    y_true: Sequence[str],
    champion_pred: Sequence[str],
    challenger_pred: Sequence[str],
    n_resamples: int = 2000,
    seed: int = 0,
    min_delta: float = 0.0,
    confidence: float = 0.95,
) -> Bootstrap:
    """Bootstrap distribution of macro-F1(challenger) - macro-F1(champion) on shared resamples.

    Classes are those in the truth or either prediction on the full test set, so every
    resample scores both models over the same classes (as sklearn does with `labels=`).
    """
    n = len(y_true)
    if n == 0 or len(champion_pred) != n or len(challenger_pred) != n:
        raise ValueError("y_true and both predictions must be non-empty and of equal length")
    labels = sorted(set(y_true) | set(champion_pred) | set(challenger_pred))
    code = {lab: i for i, lab in enumerate(labels)}
    truth, a, b = (
        _onehot(np.array([code[x] for x in seq]), len(labels))
        for seq in (y_true, champion_pred, challenger_pred)
    )
    ones = np.ones((1, n))
    delta = float(_macro_f1(ones, truth, b)[0] - _macro_f1(ones, truth, a)[0])
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - start)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=m).astype(np.float64)
        deltas[start : start + m] = _macro_f1(w, truth, b) - _macro_f1(w, truth, a)
    return Bootstrap(
        delta=delta,
        confidence=float(np.mean(deltas > min_delta + 1e-12)),
        lower=float(np.quantile(deltas, 1.0 - confidence)),
        ci_low=float(np.quantile(deltas, 0.025)),
        ci_high=float(np.quantile(deltas, 0.975)),
        n_resamples=n_resamples,
        seed=seed,
    )


def _summary(
    y_true: Sequence[str], pred: Sequence[str], labels: list[str], base: ModelSummary | None
) -> ModelSummary:
    m = metrics_from_predictions(list(y_true), list(pred), labels)
    s = base or ModelSummary()
    # macro-F1 over the shared class list, so challenger - champion equals the bootstrap delta
    s.macro_f1 = float(
        f1_score(list(y_true), list(pred), labels=labels, average="macro", zero_division=0)
    )
    s.accuracy = m["accuracy"]
    s.recall = {lab: v["recall"] for lab, v in m["per_class"].items() if v["support"] > 0}
    return s


def compare(
    y_true: Sequence[str],
    challenger_pred: Sequence[str],
    champion_pred: Sequence[str] | None = None,
    config: GateConfig | None = None,
    challenger: ModelSummary | None = None,
    champion: ModelSummary | None = None,
    dataset_version: str | None = None,
) -> Decision:
    """The decision from predictions on one test set (plus latency/size in the summaries)."""
    cfg = config or GateConfig()
    labels = sorted(set(y_true) | set(challenger_pred) | set(champion_pred or []))
    ch = _summary(y_true, challenger_pred, labels, challenger)
    checks: list[Check] = []
    boot = None
    cp = None
    if champion_pred is None:
        delta = 0.0
        checks.append(
            Check(
                "min_macro_f1",
                ch.macro_f1 >= cfg.min_macro_f1,
                ch.macro_f1,
                cfg.min_macro_f1,
                f"no champion yet: challenger macro-F1 {ch.macro_f1:.4f} must be >= "
                f"{cfg.min_macro_f1}",
            )
        )
    else:
        cp = _summary(y_true, champion_pred, labels, champion)
        boot = paired_bootstrap(
            y_true,
            champion_pred,
            challenger_pred,
            cfg.n_resamples,
            cfg.seed,
            cfg.min_delta,
            cfg.confidence,
        )
        delta = boot.delta
        checks.append(
            Check(
                "improvement",
                delta > 0 and delta >= cfg.min_delta,
                delta,
                cfg.min_delta,
                f"macro-F1 {cp.macro_f1:.4f} -> {ch.macro_f1:.4f} (delta {delta:+.4f}); "
                f"must be > 0 and >= min_delta {cfg.min_delta}",
            )
        )
        checks.append(
            Check(
                "confidence",
                boot.confidence >= cfg.confidence,
                boot.confidence,
                cfg.confidence,
                f"{boot.confidence:.1%} of {boot.n_resamples} paired resamples gain more than "
                f"{cfg.min_delta}; need {cfg.confidence:.0%}",
            )
        )
        drops = {lab: cp.recall[lab] - ch.recall.get(lab, 0.0) for lab in cp.recall}
        worst = max(drops, key=lambda k: drops[k]) if drops else None
        worst_drop = drops[worst] if worst else 0.0
        checks.append(
            Check(
                "class_recall",
                worst_drop <= cfg.max_class_recall_drop + 1e-12,
                worst_drop,
                cfg.max_class_recall_drop,
                f"largest recall drop {worst_drop:+.4f} ({worst}); allowed "
                f"{cfg.max_class_recall_drop}",
            )
        )
    budgets = (
        ("latency_p95", "p95 latency", ch.p95_latency_ms, cfg.max_p95_latency_ms, "ms"),
        ("model_size", "model size", ch.size_mb, cfg.max_model_size_mb, "MB"),
    )
    for name, what, value, budget, unit in budgets:
        if value is not None:
            checks.append(
                Check(
                    name,
                    value <= budget,
                    value,
                    budget,
                    f"{what} {value:.1f} {unit}; budget {budget} {unit}",
                )
            )
    approved = all(c.passed for c in checks)
    reasons = [("ok: " if c.passed else "FAIL: ") + f"{c.name}: {c.message}" for c in checks]
    return Decision(
        approved,
        float(delta),
        reasons,
        checks,
        ch,
        cp,
        boot,
        cfg.model_dump(),
        {"version": dataset_version, "n": len(y_true)},
    )


def predict_labels(model: LoadedModel, texts: Sequence[str]) -> list[str]:
    labels = model.labels
    out: list[str] = []
    for start in range(0, len(texts), BATCH):
        proba = model.predict_proba(list(texts[start : start + BATCH]))
        out += [labels[i] for i in np.asarray(proba).argmax(axis=1)]
    return out


def p95_latency_ms(model: LoadedModel, texts: Sequence[str], samples: int = 50) -> float:
    """p95 wall time of single-text predictions (what one online request costs)."""
    pool = list(texts[:samples]) or ["ok"]
    model.predict_proba(pool[:1])  # warm-up: lazy init, caches
    times = []
    for t in pool:
        start = time.perf_counter()
        model.predict_proba([t])
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 95))


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / MB


def summarize(
    model: LoadedModel, texts: Sequence[str], cfg: GateConfig, registry_version: str | None = None
) -> ModelSummary:
    return ModelSummary(
        version=model.version,
        model_type=model.manifest.get("model_type"),
        path=str(model.path),
        registry_version=registry_version,
        p95_latency_ms=p95_latency_ms(model, texts, cfg.latency_samples),
        size_mb=size_mb(model.path),
    )


def decide(
    challenger: LoadedModel,
    texts: Sequence[str],
    labels: Sequence[str],
    champion: LoadedModel | None = None,
    config: GateConfig | None = None,
    dataset_version: str | None = None,
    challenger_registry_version: str | None = None,
    champion_registry_version: str | None = None,
) -> Decision:
    """Gate any two model directories (any model types) on the same labelled test set."""
    cfg = config or GateConfig()
    texts = list(texts)
    ch = summarize(challenger, texts, cfg, challenger_registry_version)
    cp = (
        summarize(champion, texts, cfg, champion_registry_version) if champion is not None else None
    )
    return compare(
        list(labels),
        predict_labels(challenger, texts),
        predict_labels(champion, texts) if champion is not None else None,
        cfg,
        ch,
        cp,
        dataset_version,
    )


def record(decision: Decision, registered_model: str, version: str) -> None:
    """Write the decision as `gate.*` tags on the challenger's model version and its run."""
    mlflow = tracking._mlflow()
    client = mlflow.MlflowClient()
    try:
        tags = decision.mlflow_tags()
        for key, value in tags.items():
            client.set_model_version_tag(registered_model, version, key, value)
        run_id = client.get_model_version(registered_model, version).run_id
        if run_id:
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(
            f"MLflow refused the gate tags for {registered_model} v{version}: {exc}",
            "check MLFLOW_TRACKING_URI and the version",
        ) from exc


def promote(
    decision: dict[str, Any] | Decision,
    registered_model: str,
    version: str,
    storage_uri: str | None = None,
    alias: str = "champion",
) -> None:
    """Move `alias` to `version`: only for an approved decision (raises otherwise)."""
    approved = decision.approved if isinstance(decision, Decision) else decision.get("approved")
    if approved is not True:
        raise GateRejected(
            f"{registered_model} v{version} was not approved by the gate",
            f"the alias {alias!r} moves only on approval",
        )
    client = tracking._mlflow().MlflowClient()
    if storage_uri:
        client.set_model_version_tag(registered_model, version, "storage_uri", storage_uri)
    tracking.set_alias(registered_model, alias, version)
