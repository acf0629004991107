"""What the stored labels say: live accuracy and macro-F1 per model version (from the random
evaluation sample only), and the review of a burst of new labels before retraining on it (the
poisoning guard)."""

from __future__ import annotations

from typing import Any

from sentiops.feedback.labels import RANDOM, TARGETED, random_sample
from sentiops.scoring import macro_f1, wilson_interval


def live_metrics(labels: Any) -> dict[str, dict[str, float]]:
    """Per model version, from the random evaluation sample of `labels` (COLUMNS): labels
    (the sample size), accuracy and its 95 % Wilson interval, macro-F1."""
    out: dict[str, dict[str, float]] = {}
    for version, g in random_sample(labels).groupby("model_version"):
        gold, pred = g["label"].tolist(), g["predicted_label"].tolist()
        correct = int((g["label"] == g["predicted_label"]).sum())
        low, high = wilson_interval(correct, len(g))
        out[str(version)] = {
            "labels": float(len(g)),
            "correct": float(correct),
            "accuracy": correct / len(g),
            "accuracy_low": low,
            "accuracy_high": high,
            "macro_f1": macro_f1(gold, pred, sorted(set(gold) | set(pred))),
        }
    return out


def review_burst(
    labels: Any,
    earlier: Any = None,
    max_token_share: float = 1.0,
    max_excess: float = 0.3,
    alpha: float = 0.001,
    min_labels: int = 30,
) -> dict[str, Any]:
    """The poisoning guard over a burst of new labels (`labels`, COLUMNS or label files read
    with `label`, `predicted_label`, `sample`, `labelled_by`, `confidence` where they have
    them; labels without a token count as `unauthenticated`), with `earlier`: labels stored
    before the burst (only their random-sample part is used). Returns per token how many
    labels it gave and how often they disagree with the model (`tokens`), every test made
    (`checks`) and the reasons to hold the burst for review instead of retraining (`hold`).
    What each token's labels are compared with and when they are held: `_burst_checks`.

    What the guard cannot see: a token that labelled the earlier sample as it labels the burst
    (no honest reference: the share limit and a second team help), a drop of the model's
    accuracy on new traffic beyond its own expectation by more than the margin with one
    annotator team (held: a person looks, then releases), and poison that agrees with the
    model. Labels without `predicted_label` (hand-written label files) are counted but not
    tested. Besides: one token gave more than `max_token_share` of the burst (1.0: off; set
    e.g. 0.9 where several annotator teams label).
    """
    tagged = _guard_rows(labels)
    before = _guard_rows(earlier)
    tokens: dict[str, dict[str, Any]] = {
        str(name): {
            "labels": len(g),
            "disagreement": round(float(g["disagree"].mean()), 4)
            if g["disagree"].notna().any()
            else None,
        }
        for name, g in tagged.groupby("token")
    }
    hold: list[str] = []
    total = len(tagged)
    for name, t in tokens.items():
        share = t["labels"] / total
        if share > max_token_share:
            hold.append(
                f"{share:.0%} of the {total} new labels come from one token ({name}); "
                f"the limit is {max_token_share:.0%}"
            )
    checks = _burst_checks(
        tagged, before, max_excess=max_excess, alpha=alpha, min_labels=min_labels
    )
    hold += [check["message"] for check in checks if check.get("held")]
    return {"tokens": tokens, "checks": checks, "hold": hold}


def _burst_checks(
    tagged: Any, before: Any, *, max_excess: float, alpha: float, min_labels: int
) -> list[dict[str, Any]]:
    """The tests of `review_burst` over the guard rows of the burst (`tagged`) and of the
    labels stored before it (`before`), one per token and kind of label.

    What a label is compared with. The random evaluation sample is chosen by a hash of the
    request id, not by an annotator, so its labels estimate the model's error on the traffic
    they were given for; an annotator decides only what it answers. Each token's labels of each
    kind are compared with random-sample labels of the same traffic given by someone else, or,
    failing that, with random-sample labels it could not have chosen:

    - a token's `random` labels: the other tokens' random-sample labels of this burst (same
      traffic, same sampling, another annotator); when these are fewer than `min_labels` (one
      annotator team, as `make run` and most clusters have), the random-sample labels from
      before the burst (`earlier`);
    - a token's `targeted` labels (e.g. the labelling queue): the random-sample labels of this
      burst, the token's own included (the hash chose those texts, not the token); with fewer
      than `min_labels` of them, the random-sample labels from before the burst.

    A shift of the traffic legitimately raises the disagreement (the model meets a new domain,
    as after `make run`'s turn to movie reviews), and texts queued for their small margin are
    legitimately harder than the sample. So the reference rate is raised to the model's own
    expected error on the token's texts, `1 - mean confidence` (top probability), when that is
    higher: a token is held for what neither the sample nor the model's own uncertainty
    explains. The excess is measured on the labels that should agree: with reference rate `r`
    and the token's rate `d`, `(d - r) / (1 - r)` estimates the share of the token's labels
    that contradict the model where an honest label would not (a poisoner flipping a share `f`
    of the labels that agree with the model raises `d` to `r + f (1 - r)`). A token's labels of
    one kind are held when, with at least `min_labels` labels on each side:

    - that excess is above `max_excess`, and
    - one-sided tests say so at `alpha`: Fisher's exact test against the reference labels and,
      when the confidence is known, a binomial test against the model's expected error.
    """
    tested = tagged[tagged["disagree"].notna()]
    sample = tested[tested["sample"] == RANDOM]
    old = before[(before["sample"] == RANDOM) & before["disagree"].notna()]
    checks = []
    for (name, kind), mine in tested.groupby(["token", "sample"]):
        others = sample[sample["token"] != name] if kind == RANDOM else sample
        what = (
            "other tokens' random-sample labels of this burst"
            if kind == RANDOM
            else ("random-sample labels of this burst")
        )
        ref, what = (
            (others, what)
            if len(others) >= min_labels
            else (old, "random-sample labels from before this burst")
        )
        checks.append(
            _compare(str(name), str(kind), mine, ref, what, max_excess, alpha, min_labels)
        )
    return checks


def _guard_rows(labels: Any) -> Any:
    """token, sample (random/targeted), disagree (1.0/0.0; NaN without the model's label),
    expected (1 - confidence; NaN without it) of each label."""
    import pandas as pd

    if labels is None or not len(labels):
        kinds = {"token": str, "sample": str, "disagree": float, "expected": float}
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in kinds.items()})

    def column(name: str) -> Any:
        if name in labels.columns:
            return labels[name]
        return pd.Series([None] * len(labels), index=labels.index, dtype=object)

    by = column("labelled_by").fillna("").astype(str)
    predicted = column("predicted_label").fillna("").astype(str)
    known = predicted != ""
    return pd.DataFrame(
        {
            "token": by.where(by != "", "unauthenticated"),
            "sample": column("sample").where(column("sample") == RANDOM, TARGETED),
            "disagree": (labels["label"].astype(str) != predicted).astype(float).where(known),
            "expected": 1.0 - pd.to_numeric(column("confidence"), errors="coerce"),
        }
    )


def _compare(
    name: str,
    kind: str,
    mine: Any,
    ref: Any,
    what: str,
    max_excess: float,
    alpha: float,
    min_labels: int,
) -> dict[str, Any]:
    """One token's labels of one kind against the reference labels (see `_burst_checks`)."""
    from scipy.stats import binomtest, fisher_exact

    n, k = len(mine), int(mine["disagree"].sum())
    rn, rk = len(ref), int(ref["disagree"].sum()) if len(ref) else 0
    check: dict[str, Any] = {
        "token": name,
        "kind": kind,
        "labels": n,
        "disagreement": round(k / n, 4),
        "reference": what,
        "reference_labels": rn,
    }
    if n < min_labels or rn < min_labels:
        return {**check, "held": False, "skipped": f"fewer than {min_labels} labels on a side"}
    rate = rk / rn
    p = float(fisher_exact([[k, n - k], [rk, rn - rk]], alternative="greater").pvalue)
    model = float(mine["expected"].mean()) if mine["expected"].notna().all() else None
    if model is not None:
        p = max(p, float(binomtest(k, n, min(max(model, 1e-9), 1.0), alternative="greater").pvalue))
    base = max(rate, model or 0.0)
    excess = (k / n - base) / (1.0 - base) if base < 1.0 else 0.0
    check.update(
        reference_disagreement=round(rate, 4),
        model_expected=None if model is None else round(model, 4),
        excess=round(excess, 4),
        p=p,
        held=excess > max_excess and p < alpha,
    )
    if check["held"]:
        expects = f" and the {model:.0%} the model itself expects on these texts" if model else ""
        check["message"] = (
            f"token {name}: {k / n:.0%} of its {n} {kind} labels disagree with the model, "
            f"against {rate:.0%} of {rn} {what}{expects}: an estimated {excess:.0%} of its "
            f"labels contradict the model beyond that (limit {max_excess:.0%}, p={p:.2g})"
        )
    return check
