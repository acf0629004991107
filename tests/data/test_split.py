from __future__ import annotations

import pandas as pd
import pytest

from sentiops.data.datasets import SOURCE
from sentiops.data.split import split
from sentiops.errors import DataError
from tests.conftest import make_frame


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    df = make_frame(50)
    a, b = split(df, seed=7), split(df, seed=7)
    for name in a:
        assert list(a[name]["text"]) == list(b[name]["text"])
    assert sum(len(p) for p in a.values()) == len(df)
    texts = [set(p["text"]) for p in a.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    counts = a["test"]["label"].value_counts()
    assert counts.max() - counts.min() <= 1  # balanced input stays balanced
    c = split(df, seed=8)
    assert list(c["test"]["text"]) != list(a["test"]["text"])


def test_bad_fractions() -> None:
    with pytest.raises(DataError, match="bad split fractions"):
        split(make_frame(10), val_frac=0.5, test_frac=0.5)


def test_added_sources_never_move_the_original_rows_or_each_other() -> None:
    """Retraining adds labelled traffic: the original rows keep their split (so no earlier
    model's training rows reach the new test set), and each added text has one split for good."""
    from sentiops.data.datasets import SOURCE

    original = make_frame(40)
    original[SOURCE] = "vader-tweets"
    alone = split(original, seed=42)
    batch1 = make_frame(30, seed=8)
    batch1[SOURCE] = "labels/part-1.parquet"
    batch2 = make_frame(30, seed=9)
    batch2[SOURCE] = "labels/part-2.parquet"
    once = split(pd.concat([original, batch1], ignore_index=True), seed=42)
    twice = split(pd.concat([original, batch1, batch2], ignore_index=True), seed=42)
    for name in ("train", "validation", "test"):
        for parts in (once, twice):
            kept = parts[name][parts[name][SOURCE] == "vader-tweets"]
            assert kept.text.tolist() == alone[name].text.tolist()
        first = set(once[name][once[name][SOURCE] == "labels/part-1.parquet"].text)
        assert first == set(twice[name][twice[name][SOURCE] == "labels/part-1.parquet"].text)
    added_test = (twice["test"][SOURCE] != "vader-tweets").sum()
    assert 0 < added_test < 60  # a held-out share of the new labels is in the test set


def test_labels_chosen_for_training_never_test() -> None:
    """Live labels of the random evaluation sample may test; targeted ones (chosen for their
    uncertainty) go to training instead of the test set, whatever their text hash says."""
    from sentiops.data.datasets import SAMPLE

    original = make_frame(30, seed=0)
    original[SOURCE] = "vader-tweets"
    live = make_frame(60, seed=5)
    live[SOURCE] = "labels.parquet"
    live[SAMPLE] = ["random" if i % 2 else "targeted" for i in range(len(live))]
    parts = split(pd.concat([original, live], ignore_index=True), seed=42)
    test_live = parts["test"][parts["test"][SOURCE] == "labels.parquet"]
    assert len(test_live) > 5 and set(test_live[SAMPLE]) == {"random"}
    assert sum(len(p) for p in parts.values()) == len(original) + len(live)
    # a targeted row whose hash puts it in the test share trains instead
    alone = split(pd.concat([original, live.assign(**{SAMPLE: "random"})], ignore_index=True))
    moved = set(alone["test"].text) & set(live[live[SAMPLE] == "targeted"].text)
    assert moved and moved <= set(parts["train"].text)


def test_several_built_in_datasets_are_each_split_as_alone() -> None:
    """`--data vader-tweets --data vader-amazon`: both are original data, each split as it
    would be on its own (the tweets' test rows stay the same), and no gate groups."""
    from sentiops.data.split import groups

    tweets, amazon = make_frame(30, seed=0), make_frame(20, seed=1)
    tweets[SOURCE], amazon[SOURCE] = "vader-tweets", "vader-amazon"
    both = split(pd.concat([tweets, amazon], ignore_index=True), seed=42)
    alone = {"vader-tweets": split(tweets, seed=42), "vader-amazon": split(amazon, seed=42)}
    for name, parts in alone.items():
        for part in ("train", "validation", "test"):
            mine = both[part][both[part][SOURCE] == name]
            assert list(mine.text) == list(parts[part].text)
    assert groups(both["test"]) is None
    live = make_frame(20, seed=2).assign(**{SOURCE: "labels.parquet"})
    with_live = split(pd.concat([tweets, amazon, live], ignore_index=True), seed=42)
    g = groups(with_live["test"])
    assert g is not None and set(g) == {"original", "added"}
    assert g.count("original") == len(alone["vader-tweets"]["test"]) + len(
        alone["vader-amazon"]["test"]
    )


def test_max_train_examples_thins_out_only_the_original_data() -> None:
    """A retraining run capped at n rows keeps every new live label; the original data is
    thinned out (stratified by label) to make room."""
    from sentiops.training.train import _subsample

    original = make_frame(100, seed=0).assign(**{SOURCE: "vader-tweets"})
    live = make_frame(20, seed=4).assign(**{SOURCE: "labels.parquet"})
    out = _subsample(pd.concat([original, live], ignore_index=True), 120, seed=42)
    assert set(live.text) <= set(out.text)
    assert 110 <= len(out) <= 130
    kept = out[out[SOURCE] == "vader-tweets"].label.value_counts()
    assert kept.max() - kept.min() <= 1  # stratified: the classes stay balanced


def test_the_drift_reference_stands_for_the_traffic_not_the_training_mix() -> None:
    """A run on tweets + product reviews + live labels: the detector's reference is the tweets
    and the live labels (the traffic), never the other built-in domains it learnt from."""
    from sentiops.training.train import traffic_like

    tweets = make_frame(10, seed=0).assign(**{SOURCE: "vader-tweets"})
    amazon = make_frame(10, seed=1).assign(**{SOURCE: "vader-amazon"})
    live = make_frame(5, seed=2).assign(**{SOURCE: "labels.parquet"})
    mixed = pd.concat([amazon, tweets, live], ignore_index=True).sample(frac=1, random_state=0)
    kept = traffic_like(mixed, "vader-tweets")
    assert set(kept[SOURCE]) == {"vader-tweets", "labels.parquet"} and len(kept) == 45
    alone = make_frame(10, seed=3).assign(**{SOURCE: "vader-amazon"})
    assert len(traffic_like(alone)) == 30  # one source: all of it
