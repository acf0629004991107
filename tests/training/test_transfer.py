"""The student's transfer set (sentiops.training.transfer): the training texts with their labels,
then unlabelled texts of every built-in domain, the store's logged live texts or a dataset —
never a validation or test text, each text once, within the limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from sentiops.config import Settings
from sentiops.data.datasets import BUILTIN, fetch_builtin
from sentiops.errors import DataError
from sentiops.store import layout
from sentiops.training.transfer import transfer_set
from tests.conftest import make_frame


def _log(store: Path, texts: list[str], when: datetime, sample: str = "targeted") -> None:
    """A prediction-log part as the sidecar writes it (only the columns read here)."""
    path = Path(layout.prediction_part(store, "v1", when))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = {"id": range(len(texts)), "text": texts, "label": "neutral", "sample": sample}
    pd.DataFrame(frame).to_parquet(path)


def test_builtin_texts_of_the_other_domains_never_a_validation_or_test_text(
    vader_cache: Path,
) -> None:
    s = Settings(home=vader_cache)
    tweets = fetch_builtin("vader-tweets", s).text.tolist()
    movies = fetch_builtin("vader-movies", s).text.tolist()
    train, held_out = tweets[:100], movies[:3000]
    kwargs = {"sources": ["builtin"], "exclude": held_out, "limit": 4000, "settings": s}
    got = transfer_set(train, ["positive"] * 100, trained_on=["vader-tweets"], **kwargs)
    assert got.texts[:100] == train and got.labels[:100] == ["positive"] * 100
    extra = got.texts[100:]
    assert len(extra) == 4000 == got.record["builtin"] and got.labels[100:] == [""] * 4000
    assert not set(extra) & set(held_out) and not set(extra) & set(train)
    assert len(set(extra)) == len(extra)  # each text once
    domains = {n: set(fetch_builtin(n, s).text) for n in BUILTIN}
    # the domains the run does not train on; none of the tweets, whose test split the
    # pipeline's train step does not see
    assert all(set(extra) & domains[n] for n in ("vader-movies", "vader-amazon", "vader-nyt"))
    assert not set(extra) & (domains["vader-tweets"] - domains["vader-movies"])
    same = transfer_set(train, ["positive"] * 100, trained_on=["vader-tweets"], **kwargs)
    assert same.texts == got.texts  # the run's seed decides the sample


def test_live_texts_newest_first_never_the_random_sample_at_most_half_the_limit(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    now = datetime.now(UTC)
    _log(store, [f"old post {i}" for i in range(50)], now - timedelta(days=2))
    _log(store, [f"new post {i}" for i in range(50)] + ["a validation text"], now)
    # the random evaluation sample may be labelled into a test split: never a transfer text
    _log(store, [f"sampled post {i}" for i in range(50)], now + timedelta(seconds=1), "random")
    s = Settings(home=tmp_path / "home", store_uri=str(store))
    got = transfer_set(
        ["a training text"],
        ["negative"],
        sources=["live"],
        exclude=["a validation text"],
        limit=120,
        settings=s,
    )
    extra = got.texts[1:]
    assert got.record == {"train": 1, "live": 60}
    assert extra[:50] == [f"new post {i}" for i in range(50)]  # the newest file first
    assert "a validation text" not in extra and len(set(extra)) == 60


def test_no_prediction_log_adds_nothing_and_a_dataset_is_read_without_labels(
    tmp_path: Path,
) -> None:
    s = Settings(home=tmp_path / "home", store_uri=str(tmp_path / "empty-store"))
    path = tmp_path / "posts.csv"
    make_frame(5).drop(columns=["label"]).to_csv(path, index=False)
    got = transfer_set(["x"], ["neutral"], sources=["live", str(path)], limit=100, settings=s)
    assert got.record == {"train": 1, str(path): 15}


def test_an_unknown_source_says_what_sources_there_are(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home")
    with pytest.raises(DataError, match="transfer source 'bultin'") as err:
        transfer_set(["x"], ["neutral"], sources=["bultin"], settings=s)
    assert "builtin | live" in err.value.hint
