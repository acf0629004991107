"""Canary judge benchmark: false rollbacks, power and time to decision of three judges over
simulated whole rollouts at 10, 100 and 1,000 requests a minute.

    make bench-judge     # = .venv/bin/python benchmarks/judge.py

The traffic is `sentiops.rollout.simulate`'s: Poisson requests split by the step's percentage,
each version serving with a behaviour (error rate 0.5 %, median latency 30 ms, confidence 0.8,
label mix 30/20/50 %, accuracy 0.85 on the labelled share). Every rollout walks steps of 10, 50
and 100 % of 10 minutes each, a step holding (and being looked at again) while it has fewer
than `--min-requests` requests per version, up to `--max-holds` times; then it is unjudged
(rolled back). The judges:

- **per-look** (the judge before issue #26): at every look, Fisher's exact test on errors and
  on live accuracy, Mann-Whitney U on the binned latencies and confidences, chi-square on the
  label mix, each at alpha / metrics; a held step is tested again on the step so far; at 100 %
  the canary is compared with stable's traffic of the previous step;
- **always-valid** (`sentiops.rollout.judge` now, through the real step loop `steps.run`): the
  mixture SPRT and confidence sequences, alpha for the whole rollout;
- **Kayenta-style** (NetflixACAJudge's classifier, for comparison): at every look each metric
  is a series of per-minute values (error rate, p95, mean confidence, each label's share,
  accuracy) of the step so far, compared by a Mann-Whitney U test at confidence 0.98, every
  metric critical (one High or Low fails the canary).

All three fail a metric only when its effect also exceeds the margin; the margins are set
below what each injected fault measures (errors 0.005, p95 ratio 0.1, label-mix
Jensen-Shannon 0.07, accuracy 0.025), so power measures the statistics. The faults: errors +1
point (0.5 % -> 1.5 %), p95 +30 % (median 30 -> 39 ms; Prometheus buckets make it look like
+20 %), accuracy -5 points (0.85 -> 0.80; at two label rates), and a label-mix shift (30/20/50
-> 25/10/65 %, judged without labels: with labels, live accuracy outranks the mix). A false
rollback is a rollback of a canary equal to stable for a metric; "unjudged" counts those
rolled back for too little traffic; power counts rollbacks for the faulty metric.

Prints a table and writes benchmarks/results/judge.md and judge.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from sentiops.rollout import judge as J
from sentiops.rollout import simulate as sim
from sentiops.rollout.steps import RolloutPlan

STEPS, STEP_MINUTES = [10, 50, 100], 10
MARGINS = {
    "max_error_rate_increase": 0.005,
    "max_latency_increase": 0.1,
    "max_label_js": 0.07,
    "max_accuracy_drop": 0.025,
}
#: (column, fault or None, label rate, the metric that should fail)
CASES = [
    ("equal canary", None, 0.0, None),
    ("equal canary, 20 % labelled", None, 0.2, None),
    ("errors +1 pt", "errors +1 pt", 0.0, "error_rate"),
    ("p95 +30 %", "p95 +30 %", 0.0, "latency"),
    ("label-mix shift", "label-mix shift", 0.0, "label_mix"),
    ("accuracy -5 pts, 10 % labelled", "accuracy -5 pts", 0.1, "live_accuracy"),
    ("accuracy -5 pts, 50 % labelled", "accuracy -5 pts", 0.5, "live_accuracy"),
]
JUDGES = ("per-look", "always-valid", "Kayenta-style")
KAYENTA_CONFIDENCE = 0.98


@dataclass
class Outcome:
    decision: str  # promoted | rolled_back
    metric: str | None  # the first failing metric, "unjudged" for too little traffic
    minutes: float


# ------------------------------------------------------------------ the judge before #26
def _expand(cumulative: dict[float, float], cap: int = 20000) -> np.ndarray:
    """Binned observations as values (each bucket at its upper bound, +Inf at twice the top),
    at most `cap` of them (the old judge's `_mwu_binned`)."""
    bounds = sorted(cumulative)
    cum = np.maximum.accumulate([cumulative[b] for b in bounds])
    counts = np.diff(np.concatenate([[0.0], cum]))
    finite = [b for b in bounds if math.isfinite(b)]
    values = np.array([b if math.isfinite(b) else 2 * max(finite) for b in bounds])
    total = counts.sum()
    scale = min(1.0, cap / total) if total > 0 else 1.0
    return np.repeat(values, np.round(counts * scale).astype(int))


def _fisher(worse_c: float, all_c: float, worse_s: float, all_s: float) -> float:
    table = [[round(worse_c), round(all_c - worse_c)], [round(worse_s), round(all_s - worse_s)]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue)


def per_look_p(name: str, c: J.Observed, s: J.Observed) -> float:
    """The old per-look p-value of metric `name` (canary worse)."""
    if name == "error_rate":
        return _fisher(c.errors, c.requests, s.errors, s.requests)
    if name == "live_accuracy":
        return _fisher(
            c.feedback_total - c.feedback_correct,
            c.feedback_total,
            s.feedback_total - s.feedback_correct,
            s.feedback_total,
        )
    if name in ("latency", "confidence"):
        a, b = (
            (c.latency_buckets, s.latency_buckets)
            if name == "latency"
            else (c.confidence_buckets, s.confidence_buckets)
        )
        x, y = _expand(a), _expand(b)
        if not len(x) or not len(y):
            return 1.0
        side = "greater" if name == "latency" else "less"
        return float(stats.mannwhitneyu(x, y, alternative=side).pvalue)
    names = sorted({*c.labels, *s.labels})
    table = np.array([[c.labels.get(n, 0) for n in names], [s.labels.get(n, 0) for n in names]])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table).pvalue)


def per_look_verdicts(c: J.Observed, s: J.Observed, cfg: J.JudgeConfig) -> list[J.Verdict]:
    """The old judge: each metric's test at alpha / metrics on this look's data alone."""
    if c.requests < cfg.min_requests or s.requests < cfg.min_requests:
        return [J.Verdict("traffic", J.INCONCLUSIVE, None, None, None, None, None, "traffic")]
    have_feedback = c.feedback_total > 0 or s.feedback_total > 0
    metrics = [m for m in J.METRICS if m.name != J.ACCURACY or have_feedback]
    level = cfg.alpha / len(metrics)
    out = []
    for m in metrics:
        effect = m.effect(c, s, cfg)
        if effect.value is None:
            out.append(J.Verdict(m.name, J.INCONCLUSIVE, None, None, None, None, None, ""))
            continue
        p = per_look_p(m.name, c, s)
        worse = p < level and effect.value > getattr(cfg, m.margin)
        out.append(
            J.Verdict(
                m.name,
                J.FAIL if worse else J.PASS,
                effect.value,
                None,
                p,
                effect.canary,
                effect.stable,
                "",
            )
        )
    return J._label_mix_explained(out)


# ------------------------------------------------------------------ Kayenta-style
def _series(minutes: list[J.Observed], name: str) -> list[np.ndarray]:
    """Per-minute values of a metric (minutes without data dropped: Kayenta's NaN removal)."""

    def rate(a: float, n: float) -> float:
        return a / n if n > 0 else math.nan

    if name == "error_rate":
        rows = [[rate(o.errors, o.requests)] for o in minutes]
    elif name == "latency":
        rows = [[J.quantile(o.latency_buckets, 0.95) or math.nan] for o in minutes]
    elif name == "confidence":
        rows = [[o.mean_confidence or math.nan] for o in minutes]
    elif name == "live_accuracy":
        rows = [[rate(o.feedback_correct, o.feedback_total)] for o in minutes]
    else:
        rows = [[rate(o.labels.get(n, 0.0), o.requests) for n in sim.LABELS] for o in minutes]
    table = np.array(rows, dtype=float)
    return [col[~np.isnan(col)] for col in table.T]


def kayenta_verdicts(
    cm: list[J.Observed], sm: list[J.Observed], c: J.Observed, s: J.Observed, cfg: J.JudgeConfig
) -> list[J.Verdict]:
    if c.requests < cfg.min_requests or s.requests < cfg.min_requests:
        return [J.Verdict("traffic", J.INCONCLUSIVE, None, None, None, None, None, "traffic")]
    tail = (1 - KAYENTA_CONFIDENCE) / 2
    out = []
    for m in J.METRICS:
        effect = m.effect(c, s, cfg)
        if effect.value is None or effect.value <= getattr(cfg, m.margin):
            out.append(J.Verdict(m.name, J.PASS, effect.value, None, None, None, None, ""))
            continue
        side = {"error_rate": "greater", "latency": "greater"}.get(m.name, "less")
        high = False
        for x, y in zip(_series(cm, m.name), _series(sm, m.name), strict=True):
            if len(x) >= 1 and len(y) >= 1 and not np.array_equal(np.sort(x), np.sort(y)):
                alternative = "two-sided" if m.name == "label_mix" else side
                p = float(stats.mannwhitneyu(x, y, alternative=alternative).pvalue)
                high |= p < (2 * tail if m.name == "label_mix" else tail)
        out.append(
            J.Verdict(
                m.name,
                J.FAIL if high else J.PASS,
                effect.value,
                None,
                None,
                effect.canary,
                effect.stable,
                "",
            )
        )
    return out


# ------------------------------------------------------------------ simulated rollouts
def per_look_rollout(
    kind: str,
    rpm: float,
    canary: sim.Behaviour,
    label_rate: float,
    cfg: J.JudgeConfig,
    max_holds: int,
    rng: np.random.Generator,
) -> Outcome:
    """The old loop: a held step is judged again on the step so far; at 100 % the canary is
    compared with stable's traffic of the previous step."""
    stable = sim.Behaviour()
    i, holds, minute = 0, 0, 0
    step_c: list[J.Observed] = []
    step_s: list[J.Observed] = []
    last: tuple[list[J.Observed], J.Observed] | None = None
    while True:
        for _ in range(STEP_MINUTES):
            c, s = sim.window(rng, rpm, 60, STEPS[i], canary, stable, label_rate)
            step_c.append(c)
            step_s.append(s)
        minute += STEP_MINUTES
        c_all, s_all = sum(step_c, J.Observed()), sum(step_s, J.Observed())
        base_minutes = step_s
        if s_all.requests >= cfg.min_requests:
            last = (list(step_s), s_all)
        elif STEPS[i] == 100 and last is not None:
            base_minutes, s_all = last
        checks = (
            per_look_verdicts(c_all, s_all, cfg)
            if kind == "per-look"
            else kayenta_verdicts(step_c, base_minutes, c_all, s_all, cfg)
        )
        verdict, reasons = J.decide_step(checks, i == len(STEPS) - 1, holds, max_holds, cfg)
        if verdict == J.ROLLBACK:
            return Outcome("rolled_back", reasons[0].split(":")[0], minute)
        if verdict == J.INCONCLUSIVE:
            return Outcome("rolled_back", "unjudged", minute)
        if verdict == J.HOLD:
            holds += 1
            continue
        if verdict == J.PROMOTE:
            return Outcome("promoted", None, minute)
        i, holds, step_c, step_s = i + 1, 0, [], []


def always_valid_rollout(
    rpm: float,
    canary: sim.Behaviour,
    label_rate: float,
    cfg: J.JudgeConfig,
    max_holds: int,
    seed: int,
) -> Outcome:
    plan = RolloutPlan(
        "2", "1", steps=STEPS, step_seconds=60.0 * STEP_MINUTES, max_holds=max_holds, judge=cfg
    )
    s = sim.SimulatedRollout(rpm, canary, sim.Behaviour(), label_rate=label_rate, seed=seed)
    record = sim.simulate(plan, s)
    metric = None
    if record.decision == "rolled_back":
        metric = "unjudged" if record.inconclusive else record.reasons[0].split(":")[0]
    return Outcome(record.decision, metric, s.seconds / 60.0)


def cell(
    kind: str,
    rpm: float,
    fault: str | None,
    label_rate: float,
    n: int,
    cfg: J.JudgeConfig,
    max_holds: int,
    seed: int,
) -> list[Outcome]:
    canary = sim.faulty(fault) if fault else sim.Behaviour()
    if kind == "always-valid":
        return [
            always_valid_rollout(rpm, canary, label_rate, cfg, max_holds, seed + k)
            for k in range(n)
        ]
    rng = np.random.default_rng(seed)
    return [per_look_rollout(kind, rpm, canary, label_rate, cfg, max_holds, rng) for _ in range(n)]


def summarize(outcomes: list[Outcome], metric: str | None) -> dict[str, Any]:
    n = len(outcomes)
    if metric is None:
        hit = [o for o in outcomes if o.decision == "rolled_back" and o.metric != "unjudged"]
    else:
        hit = [o for o in outcomes if o.metric == metric]
    decided = [o for o in outcomes if o.metric != "unjudged"]
    return {
        "rollouts": n,
        "rate": len(hit) / n,
        "unjudged": sum(o.metric == "unjudged" for o in outcomes) / n,
        "promoted": sum(o.decision == "promoted" for o in outcomes) / n,
        "minutes": float(np.median([o.minutes for o in (hit if metric else decided)]))
        if (hit if metric else decided)
        else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--traffic", default="10,100,1000", help="requests a minute")
    ap.add_argument("--rollouts", type=int, default=200, help="per cell, equal canary")
    ap.add_argument("--fault-rollouts", type=int, default=60, help="per cell, each fault")
    ap.add_argument("--max-holds", type=int, default=3)
    ap.add_argument("--min-requests", type=int, default=20)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    cfg = J.JudgeConfig(alpha=args.alpha, min_requests=args.min_requests, **MARGINS)
    t0 = time.perf_counter()
    rows = []
    for rpm in [float(x) for x in args.traffic.split(",")]:
        for kind in JUDGES:
            row: dict[str, Any] = {"judge": kind, "rpm": rpm}
            started = time.perf_counter()
            for col, fault, rate, metric in CASES:
                n = args.rollouts if fault is None else args.fault_rollouts
                row[col] = summarize(
                    cell(kind, rpm, fault, rate, n, cfg, args.max_holds, args.seed), metric
                )
            row["seconds"] = round(time.perf_counter() - started, 1)
            rows.append(row)
            eq, lab = row["equal canary"], row["equal canary, 20 % labelled"]
            print(
                f"{rpm:>6.0f} rpm {kind:<14} false rollbacks {eq['rate']:.3f} / labelled "
                f"{lab['rate']:.3f} (unjudged {lab['unjudged']:.2f}) | power "
                + ", ".join(f"{c} {row[c]['rate']:.2f}" for c, f, _, _ in CASES if f)
                + f" ({row['seconds']:.0f} s)",
                flush=True,
            )
    lines = write(args, rows, time.perf_counter() - t0)
    print("\n".join(lines))


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if x < 0.1 else f"{100 * x:.0f} %"


def write(args: argparse.Namespace, rows: list[dict[str, Any]], seconds: float) -> list[str]:
    record = {
        "steps": STEPS,
        "step_minutes": STEP_MINUTES,
        "max_holds": args.max_holds,
        "min_requests": args.min_requests,
        "alpha": args.alpha,
        "margins": MARGINS,
        "faults": sim.FAULTS,
        "rows": rows,
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "command": "make bench-judge (.venv/bin/python benchmarks/judge.py)",
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "judge.json").write_text(json.dumps(record, indent=2))
    faults = [c for c, f, _, _ in CASES if f]
    lines = [
        "| traffic | judge | false rollbacks | false rollbacks, 20 % labelled (unjudged) | "
        + " | ".join(faults)
        + " | minutes to promote / to catch errors |",
        "|---|---|---|---|" + "---|" * len(faults) + "---|",
    ]
    for r in rows:
        eq, lab, err = r["equal canary"], r["equal canary, 20 % labelled"], r["errors +1 pt"]
        promote = f"{eq['minutes']:.0f}" if eq["minutes"] is not None else "-"
        catch = f"{err['minutes']:.0f}" if err["minutes"] is not None else "-"
        lines.append(
            f"| {r['rpm']:.0f}/min | {r['judge']} | {_pct(eq['rate'])} | {_pct(lab['rate'])} "
            f"({_pct(lab['unjudged'])}) | "
            + " | ".join(_pct(r[c]["rate"]) for c in faults)
            + f" | {promote} / {catch} |"
        )
    lines += [
        "",
        f"Whole rollouts (steps {'/'.join(map(str, STEPS))} % of {STEP_MINUTES} min, up to "
        f"{args.max_holds} holds a step, min {args.min_requests} requests per version and "
        f"step): {args.rollouts} with an equal canary, {args.fault_rollouts} per fault; alpha "
        f"{args.alpha}; margins {', '.join(f'{k} {v}' for k, v in MARGINS.items())}. "
        f"`make bench-judge`, {record['machine']}, {seconds:.0f} s, {record['date']}.",
    ]
    (args.results / "judge.md").write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
