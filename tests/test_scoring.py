"""One implementation of the classification metrics: it agrees with scikit-learn, and the
evaluate step, the gate and its bootstrap give the same macro-F1 for the same predictions,
two-label data included (where they used to disagree)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import f1_score, precision_recall_fscore_support

from sentiops import scoring
from sentiops.gate.decision import compare
from sentiops.params import GateConfig
from sentiops.significance import paired_bootstrap

LABELS = ["negative", "neutral", "positive"]
pairs = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from(LABELS), min_size=n, max_size=n),
        st.lists(st.sampled_from(LABELS), min_size=n, max_size=n),
    )
)


@given(pairs)
def test_macro_f1_and_per_class_agree_with_sklearn(data) -> None:
    y, p = data
    labels = scoring.scored_labels(LABELS, y, p)
    m = scoring.classification_metrics(y, p, labels)
    assert m["macro_f1"] == pytest.approx(
        f1_score(y, p, labels=labels, average="macro", zero_division=0), abs=1e-12
    )
    assert scoring.macro_f1(y, p, labels) == pytest.approx(m["macro_f1"], abs=1e-12)
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    for i, lab in enumerate(labels):
        got = m["per_class"][lab]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx(
            (prec[i], rec[i], f1[i], sup[i])
        )
    assert np.array(m["confusion_matrix"]["matrix"]).sum() == len(y)


def test_scored_labels_keep_declared_order_and_drop_absent_classes() -> None:
    assert scoring.scored_labels(LABELS, ["positive"], ["negative"]) == ["negative", "positive"]
    assert scoring.scored_labels(["b", "a"], ["a", "c"], ["b"]) == ["b", "a", "c"]


def test_labels_from_proba_takes_the_first_of_ties() -> None:
    proba = np.array([[0.2, 0.5, 0.3], [0.4, 0.2, 0.4]])
    assert scoring.labels_from_proba(proba, LABELS) == ["neutral", "negative"]


def test_two_label_data_evaluate_gate_and_bootstrap_agree() -> None:
    """Binary truth, a champion that also says `neutral`: the challenger's macro-F1 is the
    same number whether the evaluate step, the gate summary or the bootstrap computes it."""
    y = ["positive", "negative"] * 20
    challenger = ["positive", "negative"] * 18 + ["negative", "positive"] * 2
    champion = ["positive", "neutral"] * 20
    labels = scoring.scored_labels(LABELS, y, challenger, champion)
    assert labels == LABELS
    evaluated = scoring.classification_metrics(y, challenger, labels)["macro_f1"]
    decision = compare(y, challenger, champion, GateConfig(n_resamples=1000))
    assert decision.challenger.macro_f1 == pytest.approx(evaluated, abs=1e-12)
    boot = paired_bootstrap(y, champion, challenger, n_resamples=1000)
    champ = scoring.classification_metrics(y, champion, labels)["macro_f1"]
    assert boot.delta == pytest.approx(evaluated - champ, abs=1e-12)
    assert decision.delta_macro_f1 == pytest.approx(boot.delta, abs=1e-12)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 true labels but 1 predictions"):
        scoring.macro_f1(["a", "b"], ["a"], ["a", "b"])


def test_a_weight_of_two_counts_like_the_row_twice() -> None:
    y = ["positive", "negative", "neutral", "positive", "negative"]
    p = ["positive", "neutral", "neutral", "negative", "negative"]
    labels = ["negative", "neutral", "positive"]
    weighted = scoring.classification_metrics(y, p, labels, [1, 2, 1, 1, 1])
    doubled = scoring.classification_metrics(y + [y[1]], p + [p[1]], labels)
    assert weighted["accuracy"] == pytest.approx(doubled["accuracy"])
    assert weighted["macro_f1"] == pytest.approx(doubled["macro_f1"])
    for lab in labels:
        assert weighted["per_class"][lab]["recall"] == pytest.approx(
            doubled["per_class"][lab]["recall"]
        )
    assert weighted["n"] == 5 and weighted["confusion_matrix"]["matrix"][0] == [1, 1, 0]
    with pytest.raises(ValueError, match="5 rows but 2 sample weights"):
        scoring.classification_metrics(y, p, labels, [1, 2])
