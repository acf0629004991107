"""The canary judge: whether the canary is worse than stable, with error rates that hold over the
whole rollout, however many steps, holds and waits it takes.

At every look (the end of a step, of a hold, a look while a person is asked) the step loop
(`sentiops.rollout.steps`) hands the judge what each version served since the previous look.
The `Evidence` of the rollout accumulates it; each metric gets a verdict in the manner of
Kayenta's NetflixACAJudge: the statistics *and* an effect-size margin must both say "worse"
before a metric fails, and too little traffic is inconclusive, never a pass.

    metric         dichotomies of the requests (worse / other)    effect (margin)
    error_rate     error                                          rate difference
    latency        slower than each latency bucket edge           p95 ratio - 1
    estimated_accuracy  less confident than each confidence edge  calibrated estimated
                                                                  accuracy drop
    label_mix      each predicted label (either direction)        Jensen-Shannon distance
    live_accuracy  wrong, on the random evaluation sample's labels accuracy drop

**The statistics** (`sentiops.rollout.sequential`): while both versions serve, each metric's
evidence of harm is a mixture test martingale of the conditional likelihood ratios of its 2 x 2
tables, look after look (a mixture SPRT, exact at any count); it "shows" harm once it reaches
`metrics / alpha` (Ville's inequality + Bonferroni over the five metrics): so a canary that is
the same as stable is rolled back for noise in at most `alpha` of rollouts, counting every look
(property-tested over whole simulated rollouts). At a 100 % canary step stable serves nothing:
the canary's full-traffic requests are compared with everything stable served earlier by
time-uniform confidence sequences for each dichotomy's share (a fifth of `alpha` is kept for
that when the plan has such a step). A metric fails when harm is shown *and* the effect on all
the data so far exceeds its margin (`max_error_rate_increase`, `max_latency_increase`,
`max_estimated_accuracy_drop`, `max_label_js`, `max_accuracy_drop`; a p95 within
`latency_objective_s` never fails).

**Evidence before promotion.** "No metric showed harm" is not "the canary was shown no worse".
With `require_accuracy_evidence`, promotion needs live accuracy shown non-inferior: the upper
end of the accuracy drop's confidence sequence (at `alpha`) within `max_accuracy_drop`. Until
then the last step holds; at its deadline (`max_holds` used) the outcome is `inconclusive`, with
the labels per version it would take, and `inconclusive_policy` decides: `rollback`, `promote`
(flagged in the record and the registry) or `hold` (a person decides:
`sentiops rollout approve|reject`). The same policy applies to a step that had too little
traffic to judge by its deadline (the default, `rollback`: an unjudged canary is not promoted).

**Labels outrank the label-mix proxy**: with live accuracy judged and the canary at least as
accurate, a different mix passes; while labels are arriving but too few, or show the canary
below stable without harm shown, a mix failure alone holds the step.

**Estimated accuracy, not raw confidence.** The served probabilities are calibrated
(`sentiops.estimation.calibration`), so a version's mean top probability is its estimated
accuracy (confidence-based performance estimation): the effect of the confidence dichotomies
is the estimated accuracy drop with its uncertainty (`sentiops.estimation.performance.
compare_histograms`): it counts only when the drop's one-sided lower bound clears
`max_estimated_accuracy_drop` (a drop whose point estimate does but whose bound does not is not
shown), and it never fails against live accuracy of the random sample that says the canary is
not worse. An uncalibrated confidence gap
says "less sure", not "worse" (measured 2026-12-04: a sound canary trained on half the data was
rolled back on mean confidence 0.69 vs 0.82).

The metric table is `METRICS`: a metric is its dichotomies, its effect and its margin.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
from scipy.spatial.distance import jensenshannon

from sentiops.estimation.performance import FAIL as EST_FAIL
from sentiops.estimation.performance import compare_histograms
from sentiops.rollout import sequential as seq

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
CONTINUE, HOLD, PROMOTE, ROLLBACK = "continue", "hold", "promote", "rollback"
#: What happens to a rollout the judge could not decide by its deadline.
POLICIES = ("rollback", "promote", "hold")
#: Share of alpha kept for a step where the canary serves alone (plans with a 100 % canary step).
FULL_TRAFFIC_SHARE = 0.2


# ------------------------------------------------------------------------------ settings
@dataclass
class JudgeConfig:
    """Thresholds of the canary judge (the chart's `sentiops-rollout` ConfigMap sets them)."""

    # error rate of the whole rollout: a canary that is the same as stable is rolled back for
    # noise in at most this share of rollouts, however many looks they take
    alpha: float = 0.05
    min_requests: int = 50  # per version per step, else the step holds
    min_feedback: int = 30  # labels per version before live accuracy is judged
    max_error_rate_increase: float = 0.01
    max_latency_increase: float = 0.5
    # a canary whose p95 latency stays within this objective (seconds) never fails on latency,
    # however much slower than stable (Flagger's request-duration threshold is absolute too):
    # a transformer replacing a TF-IDF baseline is several times slower and well in budget
    # (the gate checked its p95 against `max_p95_latency_ms`). None: relative margin only
    latency_objective_s: float | None = None
    max_estimated_accuracy_drop: float = 0.05
    max_label_js: float = 0.1
    max_accuracy_drop: float = 0.05
    # promotion needs live accuracy shown no worse than stable by more than max_accuracy_drop
    require_accuracy_evidence: bool = False
    # undecided by the deadline (too little traffic, or no evidence): rollback | promote | hold
    inconclusive_policy: str = "rollback"

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        for name in ("min_requests", "min_feedback"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.inconclusive_policy not in POLICIES:
            raise ValueError(
                f"inconclusive_policy must be one of {POLICIES}, got {self.inconclusive_policy!r}"
            )

    @classmethod
    def from_strings(cls, data: Mapping[str, str]) -> JudgeConfig:
        """The fields found in `data` (a ConfigMap's string values), each read as its type."""
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for f in fields(cls):
            if f.name in data:
                values[f.name] = _parse(f.name, str(data[f.name]), hints[f.name])
        return cls(**values)  # type: ignore[arg-type]


def _parse(name: str, raw: str, kind: object) -> object:
    text = raw.strip()
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{name} must be true or false, got {raw!r}")
        return text.lower() == "true"
    options = typing.get_args(kind) or (kind,)
    if type(None) in options and text.lower() in ("", "none", "null"):
        return None
    for option in options:
        if option in (int, float, str):
            return option(text)
    raise ValueError(f"{name}: cannot read {raw!r}")


# ------------------------------------------------------------------------------ observations
@dataclass
class Observed:
    """What one model version served over a window (counts are increases over the window).

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

    def __add__(self, other: Observed) -> Observed:
        """Two windows together (counts and histogram buckets add up)."""

        def merged(a: Mapping, b: Mapping) -> dict:
            return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in {*a, *b}}

        return Observed(
            self.requests + other.requests,
            self.errors + other.errors,
            merged(self.latency_buckets, other.latency_buckets),
            merged(self.confidence_buckets, other.confidence_buckets),
            self.confidence_sum + other.confidence_sum,
            self.confidence_count + other.confidence_count,
            merged(self.labels, other.labels),
            self.feedback_correct + other.feedback_correct,
            self.feedback_total + other.feedback_total,
        )


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


# ------------------------------------------------------------------------------ the metrics
@dataclass
class Effect:
    """A metric's effect on all the data so far (positive = canary worse), or why it has none."""

    value: float | None
    canary: float | None = None
    stable: float | None = None
    what: str = ""
    missing: str = ""  # why there is no effect (inconclusive), "" when there is one


def _pair(worse_c: float, all_c: float, worse_s: float, all_s: float) -> seq.Table:
    return (worse_c, max(all_c - worse_c, 0.0), worse_s, max(all_s - worse_s, 0.0))


def _hist_tables(c: dict[float, float], s: dict[float, float], above: bool) -> dict[str, seq.Table]:
    """One dichotomy per finite bucket edge: above it (`above`) or at most it is "worse"."""
    tc, ts = max(c.values(), default=0.0), max(s.values(), default=0.0)
    out = {}
    for edge in sorted(b for b in {*c, *s} if math.isfinite(b)):
        at_c, at_s = c.get(edge, 0.0), s.get(edge, 0.0)
        name = f"{'>' if above else '<='} {edge:g}"
        out[name] = _pair(tc - at_c, tc, ts - at_s, ts) if above else _pair(at_c, tc, at_s, ts)
    return out


def _error_tables(c: Observed, s: Observed) -> dict[str, seq.Table]:
    return {"error": _pair(c.errors, c.requests, s.errors, s.requests)}


def _latency_tables(c: Observed, s: Observed) -> dict[str, seq.Table]:
    return _hist_tables(c.latency_buckets, s.latency_buckets, above=True)


def _confidence_tables(c: Observed, s: Observed) -> dict[str, seq.Table]:
    return _hist_tables(c.confidence_buckets, s.confidence_buckets, above=False)


def _label_tables(c: Observed, s: Observed) -> dict[str, seq.Table]:
    tc, ts = sum(c.labels.values()), sum(s.labels.values())
    return {
        n: _pair(c.labels.get(n, 0.0), tc, s.labels.get(n, 0.0), ts)
        for n in sorted({*c.labels, *s.labels})
    }


def _accuracy_tables(c: Observed, s: Observed) -> dict[str, seq.Table]:
    wrong_c, wrong_s = c.feedback_total - c.feedback_correct, s.feedback_total - s.feedback_correct
    return {"wrong": _pair(wrong_c, c.feedback_total, wrong_s, s.feedback_total)}


def _error_effect(c: Observed, s: Observed, cfg: JudgeConfig) -> Effect:
    return Effect(c.error_rate - s.error_rate, c.error_rate, s.error_rate, "error rate")


def _latency_effect(c: Observed, s: Observed, cfg: JudgeConfig) -> Effect:
    c95, s95 = quantile(c.latency_buckets, 0.95), quantile(s.latency_buckets, 0.95)
    if c95 is None or s95 is None:
        return Effect(None, missing="no latency histogram for one side")
    return Effect(c95 / s95 - 1.0 if s95 > 0 else 0.0, c95, s95, "p95 latency (s)")


def _estimate_effect(c: Observed, s: Observed, cfg: JudgeConfig) -> Effect:
    """The calibrated estimated accuracy drop (stable minus canary) as the judge counts it:
    its one-sided lower bound when that clears the margin (the estimate shows the canary worse
    beyond its uncertainty), else the drop capped at the margin (never a failure: a drop whose
    bound does not clear the margin is not shown, and labels of the random sample that say the
    canary is not worse always win); none with too little traffic to estimate."""
    if not c.confidence_count or not s.confidence_count:
        return Effect(None, missing="no confidence histogram for one side")
    margin = cfg.max_estimated_accuracy_drop
    cmp = compare_histograms(
        (c.confidence_buckets, c.confidence_sum, c.confidence_count),
        (s.confidence_buckets, s.confidence_sum, s.confidence_count),
        margin=margin,
        alpha=cfg.alpha,
        min_n=cfg.min_requests,
        min_labels=cfg.min_feedback,
        labels=((c.feedback_correct, c.feedback_total), (s.feedback_correct, s.feedback_total)),
    )
    if cmp.drop is None:  # too little traffic to estimate
        return Effect(None, missing=cmp.message)
    value = cmp.drop_low if cmp.result == EST_FAIL else min(cmp.drop, margin)
    return Effect(value, cmp.canary, cmp.stable, cmp.message)


def _label_effect(c: Observed, s: Observed, cfg: JudgeConfig) -> Effect:
    names = sorted({*c.labels, *s.labels})
    table = np.array([[c.labels.get(n, 0.0) for n in names], [s.labels.get(n, 0.0) for n in names]])
    if table.size == 0 or (table.sum(axis=1) == 0).any() or (table.sum(axis=0) > 0).sum() < 2:
        return Effect(0.0, what="label mix: one label only on both sides (or none on one)")
    mix = ", ".join(
        f"{n} {a / table[0].sum():.0%}/{b / table[1].sum():.0%}"
        for n, a, b in zip(names, table[0], table[1], strict=True)
    )
    return Effect(
        float(jensenshannon(table[0], table[1], base=2)),
        what=f"label mix canary/stable: {mix} (Jensen-Shannon distance)",
    )


def _accuracy_effect(c: Observed, s: Observed, cfg: JudgeConfig) -> Effect:
    if c.feedback_total < cfg.min_feedback or s.feedback_total < cfg.min_feedback:
        return Effect(
            None,
            missing=f"too few labels of the random evaluation sample (canary "
            f"{c.feedback_total:.0f}, stable {s.feedback_total:.0f}; need "
            f"{cfg.min_feedback} each)",
        )
    ca, sa = c.feedback_correct / c.feedback_total, s.feedback_correct / s.feedback_total
    return Effect(sa - ca, ca, sa, "live accuracy")


@dataclass(frozen=True)
class Metric:
    """A judged metric: its dichotomies of the requests, the direction of harm (`psi`: worse
    only, or either way), its effect on all the data so far and the margin's name."""

    name: str
    tables: Callable[[Observed, Observed], dict[str, seq.Table]]
    effect: Callable[[Observed, Observed, JudgeConfig], Effect]
    margin: str
    either_way: bool = False

    @property
    def psi(self) -> np.ndarray:
        return seq.EITHER if self.either_way else seq.WORSE


METRICS: tuple[Metric, ...] = (
    Metric("error_rate", _error_tables, _error_effect, "max_error_rate_increase"),
    Metric("latency", _latency_tables, _latency_effect, "max_latency_increase"),
    Metric(
        "estimated_accuracy", _confidence_tables, _estimate_effect, "max_estimated_accuracy_drop"
    ),
    Metric("label_mix", _label_tables, _label_effect, "max_label_js", either_way=True),
    Metric("live_accuracy", _accuracy_tables, _accuracy_effect, "max_accuracy_drop"),
)
ACCURACY = "live_accuracy"


# ------------------------------------------------------------------------------ the evidence
@dataclass
class Evidence:
    """Everything the judge has seen of one rollout. `add` one look at a time, each a disjoint
    window (what each version served since the previous look): shared-traffic looks feed every
    metric's test martingale; a look where the canary served alone (`full`) is kept apart."""

    cfg: JudgeConfig = field(default_factory=JudgeConfig)
    full_traffic_planned: bool = False
    processes: dict[str, seq.EProcess] = field(default_factory=dict)
    canary: Observed = field(default_factory=Observed)  # canary, looks shared with stable
    stable: Observed = field(default_factory=Observed)  # stable, every look
    full: Observed = field(default_factory=Observed)  # canary, looks where it served alone
    looks: int = 0

    def __post_init__(self) -> None:
        for m in METRICS:
            self.processes.setdefault(m.name, seq.EProcess(psi=m.psi.copy()))

    def add(self, canary: Observed, stable: Observed, full: bool = False) -> None:
        self.looks += 1
        self.stable = self.stable + stable
        if full:
            self.full = self.full + canary
            return
        self.canary = self.canary + canary
        for m in METRICS:
            self.processes[m.name].update(m.tables(canary, stable))

    def level(self, full: bool) -> float:
        """Each metric's share of alpha in the shared-traffic looks or (`full`) the others."""
        share = (
            (FULL_TRAFFIC_SHARE if full else 1 - FULL_TRAFFIC_SHARE)
            if self.full_traffic_planned
            else 1.0
        )
        return self.cfg.alpha * share / len(METRICS)

    @property
    def canary_all(self) -> Observed:
        return self.canary + self.full


# ------------------------------------------------------------------------------ verdicts
@dataclass
class Verdict:
    """One metric's verdict at one look (same fields as a gate check, plus the statistics)."""

    name: str
    result: str  # pass | fail | inconclusive
    value: float | None  # effect size (canary vs stable; positive = canary worse)
    threshold: float | None  # the margin
    p_value: float | None  # anytime-valid p-value of harm (1 / the martingale's best)
    canary: float | None
    stable: float | None
    message: str
    e_value: float | None = None  # the test martingale of harm now
    # live accuracy: upper end of the accuracy drop's confidence sequence (at alpha), whether
    # that is within the margin (non-inferiority), and what more it would take
    bound: float | None = None
    noninferior: bool | None = None
    needed: dict[str, float] | None = None

    @property
    def passed(self) -> bool:
        return self.result == PASS


def find(checks: Sequence[Verdict], name: str) -> Verdict | None:
    """The verdict of metric `name`, if it was judged."""
    return next((c for c in checks if c.name == name), None)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _inconclusive(name: str, why: str, threshold: float | None = None) -> Verdict:
    return Verdict(name, INCONCLUSIVE, None, threshold, None, None, None, why)


def _too_little_traffic(
    canary: Observed, stable: Observed | None, ev: Evidence, full: bool
) -> str | None:
    need = ev.cfg.min_requests
    low = [
        f"{side} served {obs.requests:.0f} requests"
        for side, obs in (("canary", canary), ("stable", stable))
        if obs is not None and obs.requests < need
    ]
    if full and ev.stable.requests < need:
        low.append(f"stable served {ev.stable.requests:.0f} requests before the canary took all")
    return f"too little traffic to judge ({'; '.join(low)}; need {need} each)" if low else None


def judge(
    ev: Evidence, step_canary: Observed, step_stable: Observed, full: bool = False
) -> list[Verdict]:
    """Every metric's verdict at this look. `step_canary` / `step_stable`: what each version
    served in the current step so far (each step must have `min_requests` of both; `full`: the
    canary serves alone, stable's earlier traffic is the baseline)."""
    have_feedback = ev.canary_all.feedback_total > 0 or ev.stable.feedback_total > 0
    judged = [m for m in METRICS if m.name != ACCURACY or have_feedback]
    low = _too_little_traffic(step_canary, None if full else step_stable, ev, full)
    if low:
        return [_inconclusive(m.name, low) for m in judged]
    verdicts = [_metric_verdict(m, ev, full) for m in judged]
    accuracy = find(verdicts, ACCURACY)
    if accuracy is not None:
        _accuracy_evidence(accuracy, ev)
    return _label_mix_explained(verdicts)


def _metric_verdict(m: Metric, ev: Evidence, full: bool) -> Verdict:
    cfg = ev.cfg
    margin = float(getattr(cfg, m.margin))
    canary = ev.full if full else ev.canary
    effect = m.effect(canary, ev.stable, cfg)
    if effect.value is None:
        return _inconclusive(m.name, effect.missing, margin)
    level = ev.level(full)
    process = ev.processes[m.name]
    if full:
        shown, how = _shown_by_bounds(m, canary, ev.stable, level)
        p, e = None, None
    else:
        p, e = process.anytime_p_value, process.value
        shown = process.best >= 1.0 / level
        how = f"anytime p={p:.3g}, level {level:.3g}"
    result = FAIL if shown and effect.value > margin else PASS
    what = effect.what or m.name
    message = (
        f"{what}: canary {_fmt(effect.canary)} vs stable {_fmt(effect.stable)} (effect "
        f"{effect.value:+.4g}, margin {margin}; {how})"
        if effect.canary is not None
        else f"{what} {effect.value:.3g} (margin {margin}; {how})"
    )
    if full:
        message += "; the canary at full traffic against all of stable's earlier traffic"
    v = Verdict(m.name, result, effect.value, margin, p, effect.canary, effect.stable, message, e)
    if (
        m.name == "latency"
        and result == FAIL
        and cfg.latency_objective_s is not None
        and (effect.canary or 0.0) <= cfg.latency_objective_s
    ):
        v.result = PASS
        v.message += f"; within the p95 objective of {cfg.latency_objective_s} s"
    return v


def _shown_by_bounds(m: Metric, c: Observed, s: Observed, level: float) -> tuple[bool, str]:
    """Harm shown with no live control: for some dichotomy, the canary's share of "worse" (its
    full-traffic requests) and stable's (all its requests) have disjoint confidence sequences
    (each at level / (2 x dichotomies))."""
    tables = m.tables(c, s)
    if not tables:
        return False, "no data to compare"
    each = level / (2 * len(tables))
    for name, (a, b, x, y) in tables.items():
        lo_c, hi_c = seq.proportion_bounds(a, a + b, each)
        lo_s, hi_s = seq.proportion_bounds(x, x + y, each)
        if lo_c > hi_s or (m.either_way and hi_c < lo_s):
            return True, (
                f"{name}: canary {lo_c:.3g}-{hi_c:.3g} vs stable {lo_s:.3g}-{hi_s:.3g},"
                f" confidence sequences at level {level:.3g}"
            )
    return False, f"no dichotomy shown worse by confidence sequences at level {level:.3g}"


def accuracy_drop_bound(c: Observed, s: Observed, alpha: float) -> float:
    """Upper end of the accuracy drop (stable - canary): both versions' confidence sequences at
    alpha / 2 (holds at every look with probability 1 - alpha)."""
    _, hi_s = seq.proportion_bounds(s.feedback_correct, s.feedback_total, alpha / 2)
    lo_c, _ = seq.proportion_bounds(c.feedback_correct, c.feedback_total, alpha / 2)
    return hi_s - lo_c


def _accuracy_evidence(v: Verdict, ev: Evidence) -> None:
    """Non-inferiority of live accuracy on all labels so far, and the labels it would take."""
    c, s, cfg = ev.canary_all, ev.stable, ev.cfg
    v.bound = accuracy_drop_bound(c, s, cfg.alpha)
    v.noninferior = v.bound <= cfg.max_accuracy_drop
    if (
        v.noninferior
        or not cfg.require_accuracy_evidence
        or not c.feedback_total
        or not s.feedback_total
    ):
        return

    def scaled(k: float) -> bool:
        cc = Observed(feedback_correct=c.feedback_correct * k, feedback_total=c.feedback_total * k)
        ss = Observed(feedback_correct=s.feedback_correct * k, feedback_total=s.feedback_total * k)
        return accuracy_drop_bound(cc, ss, cfg.alpha) <= cfg.max_accuracy_drop

    k = seq.needed_scale(scaled)
    v.needed = (
        None
        if k is None
        else {
            "canary_labels": math.ceil(c.feedback_total * k),
            "stable_labels": math.ceil(s.feedback_total * k),
        }
    )


def evidence_missing(accuracy: Verdict | None, cfg: JudgeConfig) -> str:
    """Why live accuracy is not (yet) shown non-inferior, with the numbers it would take."""
    if accuracy is None or accuracy.bound is None:
        why = (
            accuracy.message
            if accuracy is not None
            else "no labels of the random evaluation sample for either version"
        )
        return f"live accuracy not shown within {cfg.max_accuracy_drop} of stable: {why}"
    head = (
        f"live accuracy not shown within {cfg.max_accuracy_drop} of stable: canary "
        f"{_fmt(accuracy.canary)} vs stable {_fmt(accuracy.stable)}, the drop could be up to "
        f"{accuracy.bound:.3f} (confidence {1 - cfg.alpha:.0%})"
    )
    if accuracy.needed:
        return head + (
            f"; about {accuracy.needed['canary_labels']} canary and "
            f"{accuracy.needed['stable_labels']} stable labels in all would decide "
            "it at these accuracies"
        )
    return head + "; at these accuracies no amount of labels would show it"


def _label_mix_explained(verdicts: list[Verdict]) -> list[Verdict]:
    """A different label mix is the proxy for "wrong" while accuracy cannot be measured. Once
    live accuracy is judged on enough labels (it passed) and the canary is at least as accurate
    as stable on them, a different mix is what a better model does (e.g. one retrained for
    drifted traffic): reported, not failed. Without labels, or with the canary less accurate,
    the mix failure stands."""
    acc, mix = find(verdicts, ACCURACY), find(verdicts, "label_mix")
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


def judge_metrics(canary: Observed, stable: Observed, cfg: JudgeConfig) -> list[Verdict]:
    """The verdicts of a rollout's first look: `canary` and `stable` served side by side."""
    ev = Evidence(cfg)
    ev.add(canary, stable)
    return judge(ev, canary, stable)


# ------------------------------------------------------------------------------ the decision
def decide_step(
    checks: Sequence[Verdict],
    last_step: bool,
    holds: int,
    max_holds: int,
    cfg: JudgeConfig | None = None,
) -> tuple[str, list[str]]:
    """The look's decision and its reasons: rollback, hold, continue, promote, or (the step's
    deadline passed undecided) inconclusive, which the step loop settles by the policy."""
    cfg = cfg or JudgeConfig()
    failed = [c for c in checks if c.result == FAIL]
    accuracy = find(checks, ACCURACY)
    if (
        [c.name for c in failed] == ["label_mix"]
        and accuracy is not None
        and (
            accuracy.result == INCONCLUSIVE
            or (accuracy.result == PASS and (accuracy.canary or 0.0) < (accuracy.stable or 0.0))
        )
        and holds < max_holds
    ):
        # labels are arriving: they, not the mix, say whether a different mix is wrong; too
        # few of them, or a canary not (yet) shown worse but below stable, is no answer: the
        # step is held and observed again (more traffic, more labels)
        return HOLD, [f"label_mix: {failed[0].message}; waiting for labels ({accuracy.message})"]
    if failed:
        return ROLLBACK, [f"{c.name}: {c.message}" for c in failed]
    unsure = [c for c in checks if c.result == INCONCLUSIVE]
    if unsure:
        if holds >= max_holds:
            return INCONCLUSIVE, [
                f"{c.name}: still inconclusive after {holds} hold(s): {c.message}" for c in unsure
            ]
        return HOLD, [f"{c.name}: {c.message}" for c in unsure]
    if last_step and cfg.require_accuracy_evidence and not (accuracy and accuracy.noninferior):
        why = evidence_missing(accuracy, cfg)
        if holds >= max_holds:
            return INCONCLUSIVE, [f"no evidence for promotion after {holds} hold(s): {why}"]
        return HOLD, [f"waiting for evidence: {why}"]
    return (PROMOTE if last_step else CONTINUE), []


def score(checks: Sequence[Verdict]) -> float:
    return 100.0 * sum(c.passed for c in checks) / len(checks) if checks else 0.0
