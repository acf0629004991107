"""The poisoning guard on real traffic: a TF-IDF model trained on tweets meets movie-review
snippets (the shift of `make run`), annotators label the random evaluation sample (half of the
predictions, by request-id hash) and the most uncertain of the other texts from the datasets'
ground truth. An honest burst triggers a run although it disagrees with the model far more
than the tweets' labels did; the same burst with 40 % of its labels turned against the model
is held, named and numbered, whether one token labels everything or a second team labels the
queue; a person releases a held burst by moving its record, and the cooldown still holds."""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drift.retrain import CommandTrigger, Retrainer
from sentiops.config import Settings
from sentiops.data.datasets import fetch_builtin
from sentiops.feedback.labels import COLUMNS, RANDOM, TARGETED
from sentiops.models.tfidf import TfidfModel
from sentiops.security.secrets import SampleKey
from sentiops.store import layout as traffic_store
from tests.drift.test_retrain import recorder

RATE = 0.5  # the loop's share of predictions in the random evaluation sample
KEY = SampleKey.from_env(rate=RATE)  # the session's sample secret (tests/conftest.py)
WINDOW, QUEUED = 100, 30  # per drift window, the most uncertain non-sample texts queued
OPPOSITE = {"positive": "negative", "negative": "positive", "neutral": "positive"}


@pytest.fixture(scope="module")
def traffic(vader_cache: Path) -> dict[str, pd.DataFrame]:
    """Labelled predictions as the predictor stores them: the tweets' random sample (before
    the drift) and, after the shift to movie reviews, the random sample plus the queue."""
    s = Settings(home=vader_cache)
    tweets = fetch_builtin("vader-tweets", s).sample(frac=1, random_state=0)
    movies = fetch_builtin("vader-movies", s).sample(frac=1, random_state=0)
    model = TfidfModel.fit(tweets.text[1500:], tweets.label[1500:], char_ngrams=False)
    rng = random.Random(0)

    def labelled(df: pd.DataFrame) -> pd.DataFrame:
        proba = model.predict_proba(df.text.tolist())
        top = np.sort(proba, axis=1)
        ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(len(df))]
        rows = pd.DataFrame(
            {
                "id": ids,
                "text": df.text.to_numpy(),
                "label": df.label.to_numpy(),
                "predicted_label": np.array(model.labels)[proba.argmax(axis=1)],
                "confidence": proba.max(axis=1).astype("float32"),
                "model_name": "sentiment",
                "model_version": "1",
                "predicted_at": "",
                "labelled_at": "",
                "source": "api",
                "sample": [RANDOM if KEY.in_sample(i) else TARGETED for i in ids],
                "labelled_by": "annotators",
                "client_id": "",
                "annotator": "",
                "origin": "",
                "revision": "",
                "withdrawn": False,
                "margin": top[:, -1] - top[:, -2],
            }
        )
        keep = rows["sample"] == RANDOM
        for start in range(0, len(rows), WINDOW):  # the sidecar's labelling queue
            window = rows.iloc[start : start + WINDOW]
            queue = window[window["sample"] == TARGETED].nsmallest(QUEUED, "margin")
            keep[queue.index] = True
        return rows[keep].reset_index(drop=True)

    before = labelled(tweets[:1500])
    before = before[before["sample"] == RANDOM]  # no drift yet: no queue
    return {"before": before, "after": labelled(movies[:1600])}


def _store(root: Path, traffic: dict[str, pd.DataFrame], after: pd.DataFrame) -> datetime:
    """Feedback parts of the tweets' labels (two hours ago) and of `after` (now); returns the
    drift start between them."""
    parts = root / "labels" / "feedback" / "date=2026-12-02"
    parts.mkdir(parents=True)
    old = parts / "part-tweets.parquet"
    traffic["before"][list(COLUMNS)].to_parquet(old)
    past = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    os.utime(old, (past, past))
    for i, (_, part) in enumerate(after.groupby(np.arange(len(after)) // 200)):
        part[list(COLUMNS)].to_parquet(parts / f"part-movies-{i}.parquet")
    return datetime.now(UTC) - timedelta(hours=1)


def _turned(df: pd.DataFrame, share: float, token: str | None = None) -> pd.DataFrame:
    """`share` of the labels set against the model (the opposite of what it predicted)."""
    df = df.copy()
    pick = np.random.default_rng(1).choice(len(df), int(share * len(df)), replace=False)
    df.loc[pick, "label"] = df.loc[pick, "predicted_label"].map(OPPOSITE).to_numpy()
    if token is not None:
        df["labelled_by"] = token
    return df


def _retrainer(store: Path, command: str, work: Path) -> Retrainer:
    """The sidecar's retrainer with the command adapter, at least 100 labels, 1 h cooldown."""
    return Retrainer(
        str(store),
        "sentiment",
        CommandTrigger(command, str(store), work),
        ["vader-tweets"],
        3600,
        100,
    )


def test_an_honest_burst_after_the_shift_triggers_and_a_poisoned_one_is_held(
    traffic: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    after = traffic["after"]
    random_after = after[after["sample"] == RANDOM]
    wrong = lambda df: float((df.label != df.predicted_label).mean())  # noqa: E731
    # the shift is real: the model disagrees with honest labels far more than on tweets
    assert wrong(random_after) - wrong(traffic["before"]) > 0.12
    assert wrong(after[after["sample"] == TARGETED]) > wrong(traffic["before"])
    command, runs = recorder(tmp_path)

    honest = tmp_path / "honest"
    since = _store(honest, traffic, after)
    guard = _retrainer(honest, command, tmp_path / "h")
    result = guard.consider("1", since, 2)
    assert result["outcome"] == "triggered", result
    guard.trigger.process.stop()  # type: ignore[union-attr]
    assert result["record"]["labels_by_token"]["annotators"]["labels"] == len(after)

    # one token, 40 % of its labels (random sample and queue alike) turned against the model
    poisoned = tmp_path / "poisoned"
    since = _store(poisoned, traffic, _turned(after, 0.4))
    guard = _retrainer(poisoned, command, tmp_path / "p")
    held = guard.consider("1", since, 2)
    assert held["outcome"] == "held_for_review", held
    message = held["message"]
    assert "token annotators" in message and "random labels disagree" in message, message
    assert "from before this burst" in message and "model itself expects" in message, message
    assert "limit 30%" in message and "retrain/released/" in message, message
    (record,) = (poisoned / "retrain" / "held").glob("*.json")
    stored = json.loads(record.read_text())
    assert len(stored["files"]) == len(list(poisoned.glob("labels/feedback/*/part-movies-*")))
    (check,) = [c for c in stored["checks"] if c["kind"] == RANDOM]
    assert check["held"] and check["excess"] > 0.3 and check["p"] < 1e-6, check
    assert not runs.exists() or len(runs.read_text().splitlines()) == 1  # the honest one only

    # the poisoner labels only the queue; an honest team labels the random sample
    queue = after["sample"] == TARGETED
    teams = pd.concat([after[~queue], _turned(after[queue].reset_index(drop=True), 0.4, "team-q")])
    two = tmp_path / "two"
    since = _store(two, traffic, teams.reset_index(drop=True))
    guard = _retrainer(two, command, tmp_path / "t")
    held = guard.consider("1", since, 2)
    assert held["outcome"] == "held_for_review", held
    assert "token team-q" in held["message"] and "targeted labels" in held["message"]
    assert "random-sample labels of this burst" in held["message"]
    assert "annotators" not in held["message"]


def test_a_person_releases_a_held_burst_by_moving_its_record(
    traffic: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    since = _store(store, traffic, _turned(traffic["after"], 0.4))
    command, _ = recorder(tmp_path)
    guard = _retrainer(store, command, tmp_path / "w")
    assert guard.consider("1", since, 2)["outcome"] == "held_for_review"
    again = guard.consider("1", since, 3)  # one record per drift episode, rewritten
    assert again["outcome"] == "held_for_review"
    (record,) = (store / "retrain" / "held").glob("*.json")
    assert record.name == f"1-{since:%Y%m%dT%H%M%SZ}.json"

    # a released record that is not a held one lets nothing in (and says so in the log)
    (store / "retrain" / "released").mkdir(parents=True)
    (store / "retrain" / "released" / "note.json").write_text('{"files": 3}')
    assert guard.consider("1", since, 4)["outcome"] == "held_for_review"

    released = traffic_store.held_record(str(store), "1", since, released=True)
    shutil.move(record, released)
    result = guard.consider("1", since, 5)
    assert result["outcome"] == "triggered", result
    guard.trigger.process.stop()  # type: ignore[union-attr]
    assert result["record"]["released"] == [released]
    # the run learns the burst's labels as they stand, from one snapshot of them
    (snapshot,) = result["record"]["datasets"][1:]
    assert snapshot.startswith(str(store / "retrain" / "snapshots"))
    movies = pd.concat(
        pd.read_parquet(f) for f in store.glob("labels/feedback/*/part-movies-*.parquet")
    )
    assert set(pd.read_parquet(snapshot).id) == set(movies.id)
    assert guard.consider("1", since, 6)["outcome"] == "cooldown"  # the cooldown still holds
    assert len(list(store.glob("retrain/triggers/*.json"))) == 1


def test_the_guard_settings_are_shares() -> None:
    from drift.settings import from_env

    s = from_env({"SENTIOPS_RETRAIN_MAX_TOKEN_SHARE": "0.9", "SENTIOPS_RETRAIN_MAX_EXCESS": "0.2"})
    assert (s.retrain_max_token_share, s.retrain_max_excess) == (0.9, 0.2)
    need = r"SENTIOPS_RETRAIN_MAX_EXCESS=1.5: need a share in \(0, 1\]"
    with pytest.raises(ValueError, match=need):
        from_env({"SENTIOPS_RETRAIN_MAX_EXCESS": "1.5"})


def test_the_run_learns_revised_labels_and_never_withdrawn_ones(
    traffic: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    """Labels made in Label Studio can be revised (a later row of the same origin) or
    withdrawn (a deleted annotation): the retraining run and the guard see them as they stand,
    not the raw rows (an edited label twice, with two labels; a withdrawn one trained on)."""
    store = tmp_path / "store"
    after = traffic["after"].copy()
    from_studio = after.index[:10]
    after.loc[from_studio, "origin"] = [f"labelstudio:p1:t{i}" for i in range(10)]
    after.loc[from_studio, "revision"] = "1"
    since = _store(store, traffic, after)
    later = after.loc[from_studio].copy()
    later["revision"], later["labelled_at"] = "2", "2099-01-01T00:00:00+00:00"
    revised, withdrawn = later.iloc[:5].copy(), later.iloc[5:].copy()
    revised["label"] = revised["predicted_label"].map(OPPOSITE)
    withdrawn["withdrawn"] = True
    part = store / "labels" / "feedback" / "date=2026-12-02" / "part-studio-edits.parquet"
    pd.concat([revised, withdrawn])[list(COLUMNS)].to_parquet(part)
    command, _ = recorder(tmp_path)
    result = _retrainer(store, command, tmp_path / "w").consider("1", since, 2)
    assert result["outcome"] == "triggered", result
    snapshot = pd.read_parquet(result["record"]["datasets"][1]).set_index("id")
    assert len(snapshot) == len(after) - 5 == result["record"]["labelled_rows"]
    assert not set(withdrawn.id) & set(snapshot.index)
    assert (snapshot.loc[revised.id, "label"] == revised.set_index("id").label).all()
