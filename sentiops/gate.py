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
  group_drop      (with groups) no group's own macro-F1 drops by more than `max_group_drop`
No champion yet: `min_macro_f1` (challenger macro-F1 >= `min_macro_f1`) replaces the first three;
the latency and size budgets still apply, since they protect serving whatever came before.

Groups (`balance_sources`): a retraining run's test set holds the original test rows plus a
held-out share of the labels collected from live traffic, often a few dozen next to
thousands. Counted row by row, a model that is much better on today's traffic and as good on
the original data looks no better. With groups, each group weighs the same: every metric is
computed with row weights n / (k * n_group), and the bootstrap resamples within each group.
The record keeps each group's own macro-F1 for both models.

`compare()` works on predictions only (the property tests drive it); `decide()` loads nothing
itself, it takes `LoadedModel`s of any type, measures them and calls `compare()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sentiops.data.datasets import LABELS
from sentiops.evaluation.evaluate import p95_latency_ms, size_mb
from sentiops.models import LoadedModel
from sentiops.params import GateConfig
from sentiops.scoring import (
    classification_metrics,
    macro_f1,
    macro_f1_weighted,
    one_hot,
    scored_labels,
)

__all__ = ["Bootstrap", "Check", "Decision", "GateConfig", "ModelSummary", "compare", "decide"]


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
        from sentiops.records import write_json

        return write_json(self.to_dict(), path)


def paired_bootstrap(
    y_true: Sequence[str],
    champion_pred: Sequence[str],
    challenger_pred: Sequence[str],
    n_resamples: int = 2000,
    seed: int = 0,
    min_delta: float = 0.0,
    confidence: float = 0.95,
    groups: Sequence[str] | None = None,
) -> Bootstrap:
    """Bootstrap distribution of macro-F1(challenger) - macro-F1(champion) on shared resamples.

    Classes are those in the truth or either prediction on the full test set
    (`scoring.scored_labels`), so every resample scores both models over the same classes.
    With `groups` (one per row), each group weighs the same (`group_weights`) and each
    resample draws within each group, so every resample keeps the groups' sizes.
    """
    n = len(y_true)
    if n == 0 or len(champion_pred) != n or len(challenger_pred) != n:
        raise ValueError("y_true and both predictions must be non-empty and of equal length")
    labels = scored_labels(LABELS, y_true, champion_pred, challenger_pred)
    truth, a, b = (one_hot(seq, labels) for seq in (y_true, champion_pred, challenger_pred))
    base = np.ones(n) if groups is None else group_weights(groups)
    members = (
        [np.arange(n)]
        if groups is None
        else [np.flatnonzero(np.asarray(groups) == g) for g in dict.fromkeys(groups)]
    )
    full = base[None, :]
    delta = float(macro_f1_weighted(full, truth, b)[0] - macro_f1_weighted(full, truth, a)[0])
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - start)
        w = np.zeros((m, n))
        for idx in members:
            k = len(idx)
            w[:, idx] = rng.multinomial(k, np.full(k, 1.0 / k), size=m)
        w *= base
        deltas[start : start + m] = macro_f1_weighted(w, truth, b) - macro_f1_weighted(w, truth, a)
    return Bootstrap(
        delta=delta,
        confidence=float(np.mean(deltas > min_delta + 1e-12)),
        lower=float(np.quantile(deltas, 1.0 - confidence)),
        ci_low=float(np.quantile(deltas, 0.025)),
        ci_high=float(np.quantile(deltas, 0.975)),
        n_resamples=n_resamples,
        seed=seed,
    )


def group_weights(groups: Sequence[str]) -> np.ndarray:
    """Row weights n / (k * n_group): each of the k groups weighs the same, the total stays n."""
    values = np.asarray(list(groups), dtype=object)
    names, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return np.asarray(len(values) / (len(names) * counts[inverse]), dtype=np.float64)


def _summary(
    y_true: Sequence[str],
    pred: Sequence[str],
    labels: list[str],
    base: ModelSummary | None,
    weights: np.ndarray | None = None,
) -> ModelSummary:
    m = classification_metrics(y_true, pred, labels, weights)
    s = base or ModelSummary()
    # macro-F1 over the shared class list, so challenger - champion equals the bootstrap delta
    s.macro_f1 = m["macro_f1"]
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
    groups: Sequence[str] | None = None,
) -> Decision:
    """The decision from predictions on one test set (plus latency/size in the summaries).
    `groups` (one name per row, e.g. "original" / "added"): see the module docstring."""
    cfg = config or GateConfig()
    labels = scored_labels(
        LABELS, y_true, challenger_pred, champion_pred if champion_pred is not None else []
    )
    if groups is not None and len(groups) != len(y_true):
        raise ValueError(f"{len(y_true)} test rows but {len(groups)} group names")
    balanced = list(groups) if groups is not None and len(set(groups)) > 1 else None
    if not cfg.balance_sources:
        balanced = None
    weights = group_weights(balanced) if balanced else None
    ch = _summary(y_true, challenger_pred, labels, challenger, weights)
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
        cp = _summary(y_true, champion_pred, labels, champion, weights)
        boot = paired_bootstrap(
            y_true,
            champion_pred,
            challenger_pred,
            cfg.n_resamples,
            cfg.seed,
            cfg.min_delta,
            cfg.confidence,
            balanced,
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
    by_group = _by_group(groups, y_true, challenger_pred, champion_pred, labels, bool(balanced))
    if balanced and champion_pred is not None:
        drops = {
            name: g["champion_macro_f1"] - g["challenger_macro_f1"]
            for name, g in by_group["groups"].items()
        }
        worst = max(drops, key=lambda k: drops[k])
        checks.append(
            Check(
                "group_drop",
                drops[worst] <= cfg.max_group_drop + 1e-12,
                drops[worst],
                cfg.max_group_drop,
                f"largest macro-F1 drop on one group {drops[worst]:+.4f} ({worst}); allowed "
                f"{cfg.max_group_drop}",
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
        {
            "version": dataset_version,
            "n": len(y_true),
            **by_group,
        },
    )


def _by_group(
    groups: Sequence[str] | None,
    y_true: Sequence[str],
    challenger_pred: Sequence[str],
    champion_pred: Sequence[str] | None,
    labels: list[str],
    balanced: bool,
) -> dict[str, Any]:
    """Each group's rows, weight and both models' macro-F1 on it alone (for the record)."""
    if groups is None:
        return {}
    names = list(dict.fromkeys(groups))
    out: dict[str, Any] = {}
    for g in names:
        idx = [i for i, x in enumerate(groups) if x == g]
        truth = [y_true[i] for i in idx]
        row: dict[str, Any] = {
            "n": len(idx),
            "weight": round(1 / len(names), 4) if balanced else round(len(idx) / len(groups), 4),
            "challenger_macro_f1": macro_f1(truth, [challenger_pred[i] for i in idx], labels),
        }
        if champion_pred is not None:
            row["champion_macro_f1"] = macro_f1(truth, [champion_pred[i] for i in idx], labels)
        out[g] = row
    return {"groups": out, "balanced": balanced}


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
    groups: Sequence[str] | None = None,
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
        challenger.predict_labels(texts),
        champion.predict_labels(texts) if champion is not None else None,
        cfg,
        ch,
        cp,
        dataset_version,
        groups,
    )
