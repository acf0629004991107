"""Always-valid statistics for the canary judge: evidence that keeps its error rate however
often, and for however long, a rollout looks at it.

A rollout looks at its canary many times: at every step, again at every hold, again while it
waits for a person. A test at level `a` repeated at every look rolls a healthy canary back far
more often than `a`. The two tools here hold *uniformly over time*: their error rate is the
error rate of the whole rollout, whatever its number of steps, holds and waits. Both are exact
at any sample size (no normal approximation), so a handful of requests or an error rate near
zero is no problem: they only say less.

**1. A test martingale of harm** (`log_likelihood_ratios`, `EProcess`). A metric is cut into
dichotomies of the requests (an error or not; slower than a histogram bucket edge or not; a
given predicted label or not; a wrong answer or not), each a 2 x 2 table of canary/stable by
worse/other at every look. Requests are routed to canary or stable at random, so if the canary
behaves like stable, the table's margins say nothing about which version served which requests,
and the canary's count of "worse" given the margins is hypergeometric (the permutation argument
behind Fisher's exact test); if the canary is worse by an odds ratio psi it is Fisher's
noncentral hypergeometric. Their likelihood ratio has mean 1 under "same as stable" given
everything seen before, so the product over looks of disjoint windows is a test martingale; an
average of test martingales over a grid of psi and over the metric's dichotomies is one too.
This is the mixture sequential probability ratio test (Robbins 1970; Johari, Koomen, Pekelis &
Walsh 2022, "Always valid inference: continuous monitoring of A/B tests", Operations Research
70(3)) on the conditional likelihood of count tables, in the spirit of Lindon & Malek 2022,
"Anytime-valid inference for multinomial count data" (NeurIPS), where counts of events are
split between arms by a known allocation (conditioning on the margins does away with knowing
the split). Ville's inequality: P(the martingale ever reaches 1/a) <= a. `anytime_p_value` is
1 / its largest value so far.

**2. Confidence sequences for a proportion** (`proportion_bounds`): Robbins' uniform-mixture
confidence sequence, {p : (n + 1) * Binomial(S; n, p) > a} after S successes in n trials, which
holds at every n at once with probability 1 - a (the conjugate beta-binomial mixture of Howard,
Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence
sequences", Annals of Statistics 49(2)). The judge uses it where no live control is in the same
window (a canary at 100 %) and for non-inferiority (live accuracy no worse than the margin).
`needed_scale` says how much more data a bound would need to decide.

Plain functions and small state over numpy and scipy.stats; `sentiops.rollout.judge` decides
with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats
from scipy.special import gammaln, logsumexp, xlog1py, xlogy

#: Odds ratios of "worse" the mixture spreads its bet over (equal weights): from a subtle
#: harm that only a large rollout can show (1.1) to a broken canary (10).
WORSE = np.array([1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0])
#: Either direction (a label mix that moved either way).
EITHER = np.concatenate([WORSE, 1.0 / WORSE])

#: One dichotomy at one look: canary worse, canary other, stable worse, stable other (counts).
Table = tuple[float, float, float, float]


def log_likelihood_ratios(tables: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """(D, G) log likelihood ratios of D 2 x 2 tables (rows of `tables`: canary worse, canary
    other, stable worse, stable other) under odds ratio psi[g] against psi = 1, given each
    table's margins. A table whose margins fix its count (nobody served on one side, or no
    request fell on one side of the dichotomy) carries no evidence: 0."""
    t = np.rint(np.clip(np.asarray(tables, dtype=float).reshape(-1, 4), 0, None)).astype(np.int64)
    a, b, c, d = t.T
    total, worse, canary = a + b + c + d, a + c, a + b
    out = np.zeros((len(t), len(psi)))
    live = (canary > 0) & (canary < total) & (worse > 0) & (worse < total)
    if not live.any():
        return out
    x, m, n, k = a[live, None], total[live, None], worse[live, None], canary[live, None]
    alt = stats.nchypergeom_fisher.logpmf(x, m, n, k, psi[None, :])
    null = stats.hypergeom.logpmf(x, m, n, k)
    # an odds ratio that makes the table impossible in floating point is -inf: that part of
    # the mixture is out for good, which is what its likelihood says
    out[live] = np.nan_to_num(alt - null, nan=-np.inf, posinf=0.0)
    return out


@dataclass
class EProcess:
    """A mixture test martingale over a metric's dichotomies and a grid of odds ratios.

    `update` takes one look's tables (a disjoint window: the data since the previous look) by
    dichotomy name. The dichotomies are fixed at the first look that has any (later new names
    are ignored: the mixture's weights may not depend on what came after), each with weight
    1 / (dichotomies x odds ratios)."""

    psi: np.ndarray = field(default_factory=lambda: WORSE.copy())
    names: list[str] = field(default_factory=list)
    log_products: np.ndarray | None = None
    best: float = 1.0

    def update(self, tables: Mapping[str, Table]) -> float:
        if self.log_products is None:
            if not tables:
                return self.value
            self.names = sorted(tables)
            self.log_products = np.zeros((len(self.names), len(self.psi)))
        rows = np.array([tables.get(n, (0.0, 0.0, 0.0, 0.0)) for n in self.names], dtype=float)
        with np.errstate(over="ignore"):  # a part of the mixture going to -inf is fine
            self.log_products = self.log_products + log_likelihood_ratios(rows, self.psi)
        self.best = max(self.best, self.value)
        return self.value

    @property
    def value(self) -> float:
        """The martingale now (1 before any evidence)."""
        if self.log_products is None:
            return 1.0
        return float(np.exp(logsumexp(self.log_products) - math.log(self.log_products.size)))

    @property
    def anytime_p_value(self) -> float:
        """min(1, 1 / the largest value so far): below `a` at any look with probability at
        most `a` when the canary is no worse (Ville's inequality)."""
        return min(1.0, 1.0 / self.best)


def proportion_bounds(successes: float, trials: float, alpha: float) -> tuple[float, float]:
    """Robbins' uniform-mixture confidence sequence for a proportion after `successes` of
    `trials`: the p with (trials + 1) * Binomial(successes; trials, p) > alpha. It holds at
    every number of trials at once with probability >= 1 - alpha (both ends together)."""
    n = int(round(max(trials, 0.0)))
    s = min(max(int(round(successes)), 0), n)
    if n == 0:
        return 0.0, 1.0
    # log Binomial(s; n, p) - log(alpha / (n + 1)), written out with scipy.special (this is
    # binom.logpmf without the per-call checks: a bound takes a few dozen evaluations)
    level = (
        math.log(alpha)
        - math.log(n + 1)
        - float(gammaln(n + 1) - gammaln(s + 1) - gammaln(n - s + 1))
    )

    def inside(p: float) -> float:
        return float(xlogy(s, p) + xlog1py(n - s, -p)) - level

    mode, edge = s / n, 1e-12
    low = 0.0 if inside(edge) > 0 else optimize.brentq(inside, edge, mode, xtol=1e-10)
    high = 1.0 if inside(1 - edge) > 0 else optimize.brentq(inside, mode, 1 - edge, xtol=1e-10)
    return float(low), float(high)


def needed_scale(decides: Callable[[float], bool], limit: float = 1e4) -> float | None:
    """The smallest factor k >= 1 (within 5 %) by which the data so far would have to grow,
    with the same proportions, for `decides(k)` to hold; None if even `limit` times is not
    enough (e.g. the estimate itself is beyond the margin)."""
    if decides(1.0):
        return 1.0
    low, high = 1.0, 2.0
    while not decides(high):
        low, high = high, high * 2
        if high > limit:
            return None
    while high / low > 1.05:
        mid = math.sqrt(low * high)
        low, high = (low, mid) if decides(mid) else (mid, high)
    return high
