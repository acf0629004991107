"""Promotion gate: may the challenger replace the champion?

Both models predict the same held-out test set; the macro-F1 difference (challenger minus
champion) is tested with a paired bootstrap (`sentiops.significance`).

Approve only if every check passes:
  improvement     delta macro-F1 > 0 and >= `min_delta`
  confidence      share of bootstrap resamples with delta > `min_delta` >= `confidence`
                  (the one-sided bootstrap confidence that the true gain exceeds `min_delta`)
  class_recall    no class's recall drops by more than `max_class_recall_drop`
  latency_p95     the challenger's p95 single-text latency <= `max_p95_latency_ms`
  model_size      the challenger's model directory <= `max_model_size_mb`
  group_drop      (with groups) no group's own macro-F1 drops by more than `max_group_drop`
  calibration     the challenger's expected calibration error on the test set (its served,
                  calibrated probabilities) <= `max_ece`: estimated accuracy without labels
                  and the canary's comparison of versions rest on calibration (a model that
                  serves raw probabilities, without a calibrator, is recorded, not judged)
No champion yet: `min_macro_f1` (challenger macro-F1 >= `min_macro_f1`) replaces the first three;
the latency, size and calibration budgets still apply, since they protect serving whatever came
before. The record keeps both models' ECE and Brier score on the test set and the challenger's
calibrator (what it did on validation: `sentiops.estimation.calibration`).

Groups (`balance_sources`): each group of a retraining run's test set (the original rows, the
held-out live labels) weighs the same in every metric and in the bootstrap (see
`sentiops.significance`); the record keeps each group's own macro-F1 for both models.

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
from sentiops.estimation import calibration
from sentiops.evaluation.evaluate import p95_latency_ms, size_mb
from sentiops.models import LoadedModel
from sentiops.params import GateConfig
from sentiops.records import write_json
from sentiops.scoring import classification_metrics, labels_from_proba, macro_f1, scored_labels
from sentiops.significance import Bootstrap, group_weights, paired_bootstrap

__all__ = ["Check", "Decision", "ModelSummary", "compare", "decide"]


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
    ece: float | None = None  # on the test set, of the served (calibrated) probabilities
    brier: float | None = None
    calibration: dict[str, Any] = field(default_factory=dict)  # the manifest's record


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
        return write_json(self.to_dict(), path)


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
    *,
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
    balanced = _balanced_groups(y_true, groups, cfg)
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
        checks += _champion_checks(ch, cp, boot, cfg)
    by_group = _by_group(groups, y_true, challenger_pred, champion_pred, labels, bool(balanced))
    if balanced and champion_pred is not None:
        checks.append(_group_drop_check(by_group, cfg))
    checks += _budget_checks(ch, cfg)
    if ch.ece is not None:
        checks.append(_calibration_check(ch, cfg))
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


def _balanced_groups(
    y_true: Sequence[str], groups: Sequence[str] | None, cfg: GateConfig
) -> list[str] | None:
    """The group names to balance the test rows by (None: every row weighs the same)."""
    if groups is not None and len(groups) != len(y_true):
        raise ValueError(f"{len(y_true)} test rows but {len(groups)} group names")
    balanced = list(groups) if groups is not None and len(set(groups)) > 1 else None
    if not cfg.balance_sources:
        balanced = None
    return balanced


def _champion_checks(
    ch: ModelSummary, cp: ModelSummary, boot: Bootstrap, cfg: GateConfig
) -> list[Check]:
    """Improvement, its confidence and the largest per-class recall drop against the
    champion."""
    delta = boot.delta
    checks = [
        Check(
            "improvement",
            delta > 0 and delta >= cfg.min_delta,
            delta,
            cfg.min_delta,
            f"macro-F1 {cp.macro_f1:.4f} -> {ch.macro_f1:.4f} (delta {delta:+.4f}); "
            f"must be > 0 and >= min_delta {cfg.min_delta}",
        ),
        Check(
            "confidence",
            boot.confidence >= cfg.confidence,
            boot.confidence,
            cfg.confidence,
            f"{boot.confidence:.1%} of {boot.n_resamples} paired resamples gain more than "
            f"{cfg.min_delta}; need {cfg.confidence:.0%}",
        ),
    ]
    drops = {lab: cp.recall[lab] - ch.recall.get(lab, 0.0) for lab in cp.recall}
    worst = max(drops, key=lambda k: drops[k]) if drops else None
    worst_drop = drops[worst] if worst else 0.0
    checks.append(
        Check(
            "class_recall",
            worst_drop <= cfg.max_class_recall_drop + 1e-12,
            worst_drop,
            cfg.max_class_recall_drop,
            f"largest recall drop {worst_drop:+.4f} ({worst}); allowed {cfg.max_class_recall_drop}",
        )
    )
    return checks


def _group_drop_check(by_group: dict[str, Any], cfg: GateConfig) -> Check:
    """The largest macro-F1 drop on one group (balanced groups against a champion)."""
    drops = {
        name: g["champion_macro_f1"] - g["challenger_macro_f1"]
        for name, g in by_group["groups"].items()
    }
    worst = max(drops, key=lambda k: drops[k])
    return Check(
        "group_drop",
        drops[worst] <= cfg.max_group_drop + 1e-12,
        drops[worst],
        cfg.max_group_drop,
        f"largest macro-F1 drop on one group {drops[worst]:+.4f} ({worst}); allowed "
        f"{cfg.max_group_drop}",
    )


def _budget_checks(ch: ModelSummary, cfg: GateConfig) -> list[Check]:
    """p95 latency and model size against their budgets (when measured)."""
    budgets = (
        ("latency_p95", "p95 latency", ch.p95_latency_ms, cfg.max_p95_latency_ms, "ms"),
        ("model_size", "model size", ch.size_mb, cfg.max_model_size_mb, "MB"),
    )
    return [
        Check(
            name,
            value <= budget,
            value,
            budget,
            f"{what} {value:.1f} {unit}; budget {budget} {unit}",
        )
        for name, what, value, budget, unit in budgets
        if value is not None
    ]


def _calibration_check(ch: ModelSummary, cfg: GateConfig) -> Check:
    """The challenger's served probabilities within the ECE budget. A model that serves raw
    probabilities (calibration off, too few validation rows, packaged before calibration
    existed) has its ECE recorded, not judged: it never claimed to be calibrated."""
    assert ch.ece is not None
    if not ch.calibration or ch.calibration.get("skipped"):
        why = ch.calibration.get("skipped") or "no calibrator in its model directory"
        return Check(
            "calibration",
            True,
            ch.ece,
            cfg.max_ece,
            f"not calibrated ({why}): ECE {ch.ece:.4f} of its raw probabilities "
            "recorded, not judged",
        )
    ok = ch.ece <= cfg.max_ece + 1e-12
    message = (
        f"expected calibration error of the served probabilities on the test set "
        f"{ch.ece:.4f}; budget {cfg.max_ece}"
    )
    if not ok:
        message += (
            "; its estimated accuracy would mislead: recalibrate on more validation rows "
            "or try `calibration: vector` in the training config"
        )
    return Check("calibration", ok, ch.ece, cfg.max_ece, message)


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
    model: LoadedModel,
    texts: Sequence[str],
    cfg: GateConfig,
    registry_version: str | None = None,
    proba: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
) -> ModelSummary:
    """A model's side of the record: latency, size and, with its test-set probabilities
    `proba` and the gold `labels`, ECE and Brier score of what it serves."""
    quality = (
        calibration.quality(proba, list(labels), model.labels)
        if proba is not None and labels is not None
        else {}
    )
    record = model.manifest.get("calibration") or {}
    return ModelSummary(
        version=model.version,
        model_type=model.manifest.get("model_type"),
        path=str(model.path),
        registry_version=registry_version,
        p95_latency_ms=p95_latency_ms(model, texts, cfg.latency_samples),
        size_mb=size_mb(model.path),
        ece=quality.get("ece"),
        brier=quality.get("brier"),
        calibration={k: v for k, v in record.items() if k not in ("labels", "file")},
    )


def served_proba(model: LoadedModel, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """The model's served (calibrated) probabilities of `texts`, in batches."""
    texts = list(texts)
    parts = [
        model.predict_proba(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, len(model.labels)))


def decide(
    challenger: LoadedModel,
    texts: Sequence[str],
    labels: Sequence[str],
    champion: LoadedModel | None = None,
    config: GateConfig | None = None,
    dataset_version: str | None = None,
    *,
    challenger_registry_version: str | None = None,
    champion_registry_version: str | None = None,
    groups: Sequence[str] | None = None,
) -> Decision:
    """Gate any two model directories (any model types) on the same labelled test set."""
    cfg = config or GateConfig()
    texts, labels = list(texts), list(labels)
    ch_proba = served_proba(challenger, texts)
    ch = summarize(challenger, texts, cfg, challenger_registry_version, ch_proba, labels)
    cp_proba = served_proba(champion, texts) if champion is not None else None
    cp = (
        summarize(champion, texts, cfg, champion_registry_version, cp_proba, labels)
        if champion is not None
        else None
    )
    return compare(
        labels,
        labels_from_proba(ch_proba, challenger.labels),
        labels_from_proba(cp_proba, champion.labels)
        if champion is not None and cp_proba is not None
        else None,
        cfg,
        challenger=ch,
        champion=cp,
        dataset_version=dataset_version,
        groups=groups,
    )
