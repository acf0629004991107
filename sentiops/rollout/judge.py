"""The canary judge: the statistics that say, step by step, whether the canary is worse.

Per step the canary (new model version) and the stable version serve side by side; at the end
of the step the judge compares what each served, metric by metric, in the manner of Kayenta's
NetflixACAJudge: a statistical test *and* an effect-size margin must both say "worse" before a
metric fails, too little traffic makes it inconclusive, never a pass.

    metric         data (per version, step)   test (one-sided: canary worse)      effect
    error_rate     errors / requests          Fisher exact                         rate difference
    latency        request-latency histogram  Mann-Whitney U, binned latencies     p95 ratio - 1
    confidence     confidence histogram       Mann-Whitney U (canary lower)        mean drop
    label_mix      predicted-label counts     chi-square homogeneity (two-sided)   Jensen-Shannon
                   (labels outrank this proxy: with live accuracy judged and the canary at
                   least as accurate, a different mix passes; while labels are arriving but
                   too few, or show the canary below stable without significance, a mix
                   failure alone holds the step)
    live_accuracy  feedback correct / total   Fisher exact (canary lower)          accuracy drop

A metric fails when p < a *and* the effect exceeds its margin (`max_error_rate_increase`,
`max_latency_increase`, `max_confidence_drop`, `max_label_js`, `max_accuracy_drop`).
`a` = `alpha` / (number of metrics judged): a Bonferroni correction, so a canary that is the
same model as stable is rolled back for noise in at most `alpha` of the steps (property-tested).

One decision per step: `rollback` if any metric fails; `hold` if any is inconclusive (the step
is observed again over its whole length so far, at most `max_holds` times, then rolled back:
an unjudgeable canary is not promoted); otherwise `continue`, or `promote` after the last step
(`decide_step`). The step loop (`sentiops.rollout.steps`) asks this module; every number goes
into the decision record (`sentiops.rollout.record`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
CONTINUE, HOLD, PROMOTE, ROLLBACK = "continue", "hold", "promote", "rollback"


# ------------------------------------------------------------------------------ settings
@dataclass
class JudgeConfig:
    """Thresholds of the canary judge (the chart's `sentiops-rollout` ConfigMap sets them)."""

    alpha: float = 0.05
    min_requests: int = 50
    min_feedback: int = 30
    max_error_rate_increase: float = 0.01
    max_latency_increase: float = 0.5
    # a canary whose p95 latency stays within this objective (seconds) never fails on latency,
    # however much slower than stable (Flagger's request-duration threshold is absolute too):
    # a transformer replacing a TF-IDF baseline is several times slower and well in budget
    # (the gate checked its p95 against `max_p95_latency_ms`). None: relative margin only
    latency_objective_s: float | None = None
    max_confidence_drop: float = 0.05
    max_label_js: float = 0.1
    max_accuracy_drop: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        for name in ("min_requests", "min_feedback"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


# ------------------------------------------------------------------------------ observations
@dataclass
class Observed:
    """What one model version served over one step (counts are increases over the step).

    Histograms are Prometheus-style: upper bound (`le`, inf last) -> cumulative count."""

    requests: float = 0.0
    errors: float = 0.0
    latency_buckets: dict[float, float] = field(default_factory=dict)
    confidence_buckets: dict[float, float] = field(default_factory=dict)
    confidence_sum: float = 0.0
    confidence_count: float = 0.0
    labels: dict[str, float] = field(default_factory=dict)
    feedback_correct: float = 0.0
    feedback_total: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0

    @property
    def mean_confidence(self) -> float | None:
        return self.confidence_sum / self.confidence_count if self.confidence_count else None


def _counts(cumulative: dict[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(bucket representative values, non-cumulative counts) of a cumulative histogram. A
    bucket is represented by its upper bound; the +Inf bucket by twice the largest bound."""
    if not cumulative:
        return np.zeros(0), np.zeros(0)
    bounds = sorted(cumulative)
    cum = np.maximum.accumulate(np.array([max(cumulative[b], 0.0) for b in bounds]))
    counts = np.diff(np.concatenate([[0.0], cum]))
    finite = [b for b in bounds if math.isfinite(b)]
    top = 2 * max(finite) if finite else 1.0
    values = np.array([b if math.isfinite(b) else top for b in bounds])
    return values, counts


def quantile(cumulative: dict[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, linearly interpolated inside the bucket
    (what PromQL's histogram_quantile does)."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    total = cumulative[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for b in bounds:
        if cumulative[b] >= rank:
            if not math.isfinite(b):
                return lower
            inside = cumulative[b] - below
            return lower + (b - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = b, cumulative[b]
    return lower


def _mwu_binned(
    canary: dict[float, float], stable: dict[float, float], alternative: str, cap: int = 20000
) -> float:
    """Mann-Whitney U p-value on binned samples (ties handled by scipy). Large counts are
    scaled down to at most `cap` observations per side, keeping the shape."""
    values_c, counts_c = _counts(canary)
    values_s, counts_s = _counts(stable)

    def expand(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
        total = counts.sum()
        scale = min(1.0, cap / total) if total > 0 else 1.0
        return np.repeat(values, np.round(counts * scale).astype(int))

    a, b = expand(values_c, counts_c), expand(values_s, counts_s)
    if len(a) == 0 or len(b) == 0:
        return 1.0
    return float(stats.mannwhitneyu(a, b, alternative=alternative).pvalue)


# ------------------------------------------------------------------------------ verdicts
@dataclass
class Verdict:
    """One metric's verdict at one step (same fields as a gate check, plus the statistics)."""

    name: str
    result: str  # pass | fail | inconclusive
    value: float | None  # effect size (canary vs stable; positive = canary worse)
    threshold: float | None
    p_value: float | None
    canary: float | None
    stable: float | None
    message: str

    @property
    def passed(self) -> bool:
        return self.result == PASS


def _verdict(
    name: str,
    p: float,
    effect: float,
    margin: float,
    alpha: float,
    canary: float | None,
    stable: float | None,
    what: str,
) -> Verdict:
    worse = p < alpha and effect > margin
    result = FAIL if worse else PASS
    message = (
        f"{what}: canary {_fmt(canary)} vs stable {_fmt(stable)} (effect {effect:+.4g}, "
        f"margin {margin}; p={p:.3g}, alpha {alpha:.3g})"
    )
    return Verdict(name, result, effect, margin, p, canary, stable, message)


def _inconclusive(name: str, why: str, threshold: float | None = None) -> Verdict:
    return Verdict(name, INCONCLUSIVE, None, threshold, None, None, None, why)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def judge_metrics(canary: Observed, stable: Observed, cfg: JudgeConfig) -> list[Verdict]:
    """Every metric's verdict for one step."""
    have_feedback = canary.feedback_total > 0 or stable.feedback_total > 0
    n_metrics = 4 + (1 if have_feedback else 0)
    alpha = cfg.alpha / n_metrics
    low = [
        f"{side} served {obs.requests:.0f} requests"
        for side, obs in (("canary", canary), ("stable", stable))
        if obs.requests < cfg.min_requests
    ]
    if low:
        why = f"too little traffic to judge ({'; '.join(low)}; need {cfg.min_requests} each)"
        names = ["error_rate", "latency", "confidence", "label_mix"]
        out = [_inconclusive(n, why) for n in names]
        if have_feedback:
            out.append(_inconclusive("live_accuracy", why))
        return out

    verdicts = []
    # error rate: Fisher exact, one-sided (canary has more errors)
    ce, cn = round(canary.errors), max(round(canary.requests), round(canary.errors))
    se, sn = round(stable.errors), max(round(stable.requests), round(stable.errors))
    p = float(stats.fisher_exact([[ce, cn - ce], [se, sn - se]], alternative="greater").pvalue)
    verdicts.append(
        _verdict(
            "error_rate", p, canary.error_rate - stable.error_rate,
            cfg.max_error_rate_increase, alpha, canary.error_rate, stable.error_rate,
            "error rate",
        )
    )  # fmt: skip
    # latency: binned Mann-Whitney U (canary slower), effect = relative p95 increase
    c95, s95 = quantile(canary.latency_buckets, 0.95), quantile(stable.latency_buckets, 0.95)
    if c95 is None or s95 is None:
        verdicts.append(_inconclusive("latency", "no latency histogram for one side"))
    else:
        p = _mwu_binned(canary.latency_buckets, stable.latency_buckets, "greater")
        effect = c95 / s95 - 1.0 if s95 > 0 else 0.0
        v = _verdict(
            "latency", p, effect, cfg.max_latency_increase, alpha, c95, s95, "p95 latency (s)"
        )
        if v.result == FAIL and cfg.latency_objective_s is not None \
                and c95 <= cfg.latency_objective_s:  # fmt: skip
            v.result = PASS
            v.message += f"; within the p95 objective of {cfg.latency_objective_s} s"
        verdicts.append(v)
    # confidence: binned Mann-Whitney U (canary less confident), effect = mean drop
    cm, sm = canary.mean_confidence, stable.mean_confidence
    if cm is None or sm is None:
        verdicts.append(_inconclusive("confidence", "no confidence histogram for one side"))
    else:
        p = _mwu_binned(canary.confidence_buckets, stable.confidence_buckets, "less")
        verdicts.append(
            _verdict(
                "confidence", p, sm - cm, cfg.max_confidence_drop, alpha, cm, sm, "mean confidence"
            )
        )
    # label mix: chi-square homogeneity, effect = Jensen-Shannon distance (base 2, in [0, 1])
    names = sorted(set(canary.labels) | set(stable.labels))
    table = np.array([[canary.labels.get(n, 0.0) for n in names],
                      [stable.labels.get(n, 0.0) for n in names]])  # fmt: skip
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        verdicts.append(
            Verdict(
                "label_mix",
                PASS,
                0.0,
                cfg.max_label_js,
                1.0,
                None,
                None,
                "label mix: one label only on both sides",
            )  # fmt: skip
        )
    else:
        p = float(stats.chi2_contingency(table).pvalue)
        js = float(jensenshannon(table[0], table[1], base=2))
        mix = ", ".join(
            f"{n} {c / table[0].sum():.0%}/{s / table[1].sum():.0%}"
            for n, c, s in zip(names, table[0], table[1], strict=False)
        )
        v = _verdict("label_mix", p, js, cfg.max_label_js, alpha, None, None, "label mix")
        v.message = f"label mix canary/stable: {mix} (JS distance {js:.3f}, margin " \
                    f"{cfg.max_label_js}; p={p:.3g}, alpha {alpha:.3g})"  # fmt: skip
        verdicts.append(v)
    # live accuracy from the labels of the random evaluation sample (the metric source reads
    # only those), when there are any
    if have_feedback:
        if canary.feedback_total < cfg.min_feedback or stable.feedback_total < cfg.min_feedback:
            verdicts.append(
                _inconclusive(
                    "live_accuracy",
                    f"too few labels of the random evaluation sample (canary "
                    f"{canary.feedback_total:.0f}, stable {stable.feedback_total:.0f}; need "
                    f"{cfg.min_feedback} each)",
                )
            )
        else:
            cc, ct = round(canary.feedback_correct), round(canary.feedback_total)
            sc, st = round(stable.feedback_correct), round(stable.feedback_total)
            p = float(stats.fisher_exact([[cc, ct - cc], [sc, st - sc]], alternative="less").pvalue)
            ca, sa = cc / ct, sc / st
            v = _verdict("live_accuracy", p, sa - ca, cfg.max_accuracy_drop, alpha, ca, sa,
                         "live accuracy")  # fmt: skip
            v.message += f" (random evaluation sample: canary n={ct}, stable n={st})"
            verdicts.append(v)
    return _label_mix_explained(verdicts)


def _label_mix_explained(verdicts: list[Verdict]) -> list[Verdict]:
    """A different label mix is the proxy for "wrong" while accuracy cannot be measured. Once
    live accuracy is judged on enough labels (it passed) and the canary is at least as accurate
    as stable on them, a different mix is what a better model does (e.g. one retrained for
    drifted traffic): reported, not failed. Without labels, or with the canary less accurate,
    the mix failure stands."""
    acc = next((v for v in verdicts if v.name == "live_accuracy"), None)
    mix = next((v for v in verdicts if v.name == "label_mix"), None)
    if acc is None or mix is None or acc.result != PASS or mix.result != FAIL:
        return verdicts
    if acc.canary is None or acc.stable is None or acc.canary < acc.stable:
        return verdicts
    mix.result = PASS
    mix.message += (
        f"; passed: on the labels the canary is at least as accurate ({acc.canary:.3f} vs "
        f"{acc.stable:.3f})"
    )
    return verdicts


def decide_step(
    checks: Sequence[Verdict], last_step: bool, holds: int, max_holds: int
) -> tuple[str, list[str]]:
    """The step's decision and its reasons."""
    failed = [c for c in checks if c.result == FAIL]
    accuracy = next((c for c in checks if c.name == "live_accuracy"), None)
    if (
        [c.name for c in failed] == ["label_mix"]
        and accuracy is not None
        and (accuracy.result == INCONCLUSIVE
             or (accuracy.result == PASS and (accuracy.canary or 0.0) < (accuracy.stable or 0.0)))
        and holds < max_holds
    ):  # fmt: skip
        # labels are arriving: they, not the mix, say whether a different mix is wrong; too
        # few of them, or a canary not (yet) shown worse but below stable, is no answer: the
        # step is held and observed again over its whole length (more traffic, more labels)
        return HOLD, [f"label_mix: {failed[0].message}; waiting for labels ({accuracy.message})"]
    if failed:
        return ROLLBACK, [f"{c.name}: {c.message}" for c in failed]
    unsure = [c for c in checks if c.result == INCONCLUSIVE]
    if unsure:
        if holds >= max_holds:
            return ROLLBACK, [
                f"{c.name}: still inconclusive after {holds} hold(s): {c.message}" for c in unsure
            ]
        return HOLD, [f"{c.name}: {c.message}" for c in unsure]
    return (PROMOTE if last_step else CONTINUE), []


def score(checks: Sequence[Verdict]) -> float:
    return 100.0 * sum(c.passed for c in checks) / len(checks) if checks else 0.0
