"""One model directory format for every model type: round trips, checksums, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sentiops.errors import InvalidInput, ModelError
from sentiops.models import MAX_BATCH, load_model, modeldir, predict
from sentiops.models.tfidf import TfidfModel
from sentiops.models.transformer import TINY, TransformerModel
from tests.conftest import make_frame


def _tfidf_dir(tmp_path: Path, labels=("negative", "neutral", "positive")) -> Path:
    df = make_frame(30)
    df = df[df.label.isin(labels)]
    model = TfidfModel.fit(df.text, df.label)
    return modeldir.write(
        tmp_path / "tfidf", model.save, {"model_type": "tfidf-logreg", "labels": model.labels}
    )


def test_tfidf_round_trip(tmp_path: Path) -> None:
    folder = _tfidf_dir(tmp_path)
    manifest = json.loads((folder / "model.json").read_text())
    assert set(manifest["files"]) == {"tfidf.json", "tfidf.npz", "label_map.json", "metrics.json"}
    assert len(manifest["version"]) == 12
    loaded = load_model(folder)
    preds = predict(loaded, ["the app was love and great", "the app was hate and awful"])
    assert [p.label for p in preds] == ["positive", "negative"]
    assert abs(sum(preds[0].scores.values()) - 1) < 1e-6


def test_two_label_model_still_predicts(tmp_path: Path) -> None:
    loaded = load_model(_tfidf_dir(tmp_path, labels=("negative", "positive")))
    assert loaded.labels == ["negative", "positive"]
    assert predict(loaded, ["the store was great and good"])[0].label == "positive"


def test_tiny_distilbert_trains_saves_and_loads(tmp_path: Path) -> None:
    df = make_frame(30)
    model = TransformerModel.fit(
        df.text,
        df.label,
        val_texts=df.text[:20],
        val_labels=df.label[:20],
        base_model=TINY,
        epochs=4,
        lr=3e-3,
        batch_size=16,
        max_length=32,
        progress=False,
    )
    assert model.model.config.model_type == "distilbert"
    folder = modeldir.write(
        tmp_path / "tiny",
        model.save,
        {"model_type": "transformer", "labels": model.labels, "params": {"max_length": 32}},
    )
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    loaded = load_model(folder)
    before = model.predict_proba(list(df.text[:10]))
    after = loaded.predict_proba(list(df.text[:10]))
    np.testing.assert_allclose(before, after, atol=1e-5)
    acc = np.mean(np.array(loaded.labels)[after.argmax(1)] == df.label[:10].to_numpy())
    assert acc >= 0.8  # cue words are trivially learnable
    assert [h["epoch"] for h in model.history][0] == 1


def test_corrupt_model_is_refused(tmp_path: Path) -> None:
    folder = _tfidf_dir(tmp_path)
    blob = folder / "tfidf.npz"
    blob.write_bytes(blob.read_bytes()[:-10])
    with pytest.raises(ModelError, match=r"corrupt model directory .*tfidf.npz \(checksum"):
        load_model(folder)


def test_missing_file_and_not_a_model_dir(tmp_path: Path) -> None:
    folder = _tfidf_dir(tmp_path)
    (folder / "label_map.json").unlink()
    with pytest.raises(ModelError, match="label_map.json \\(missing\\)"):
        load_model(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a SentiOps model directory"):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelError, match="model directory not found"):
        load_model(tmp_path / "nope")


def test_unknown_model_type(tmp_path: Path) -> None:
    folder = modeldir.write(tmp_path / "m", lambda d: None, {"model_type": "xgb", "labels": ["a"]})
    with pytest.raises(ModelError, match="unknown model type 'xgb'"):
        load_model(folder)


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    good = _tfidf_dir(tmp_path)
    before = (good / "model.json").read_text()

    def explode(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        modeldir.write(good, explode, {"model_type": "tfidf-logreg", "labels": ["a"]})
    assert (good / "model.json").read_text() == before  # the old model is untouched
    # nothing but the model (and the test's SENTIOPS_HOME, which holds the signing key)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["tfidf"]


@pytest.mark.parametrize(
    "bad,needle",
    [
        ([], "empty batch"),
        ("just a string", "expected a list of strings"),
        (["ok", "  "], "items [1] are empty"),
        (["ok", 3], "items [1] are not strings"),
        (["x"] * (MAX_BATCH + 1), f"exceeds the limit of {MAX_BATCH}"),
        (["x" * 6000], "longer than 5000 characters"),
    ],
)
def test_predict_rejects_bad_input(tmp_path: Path, bad, needle: str) -> None:
    loaded = load_model(_tfidf_dir(tmp_path))
    with pytest.raises(InvalidInput, match=__import__("re").escape(needle)):
        predict(loaded, bad)


def test_soft_targets_spread_only_texts_near_a_class_boundary() -> None:
    import numpy as np

    from sentiops.models.transformer import soft_targets

    classes = ["negative", "neutral", "positive"]
    hard = np.array([2, 1, 0, 2])
    t = soft_targets([3.0, 0.5, -0.5, float("nan")], hard, classes, width=0.35)
    assert t[0] == pytest.approx([0, 0, 1], abs=1e-6)  # far from a boundary: one-hot
    assert t[1][1] == pytest.approx(0.5, abs=1e-2) and t[1][2] == pytest.approx(0.5, abs=1e-2)
    assert t[2][0] == pytest.approx(0.5, abs=1e-2) and t[2][1] == pytest.approx(0.5, abs=1e-2)
    assert list(t[3]) == [0, 0, 1]  # no score: the hard label
    assert np.allclose(t.sum(axis=1), 1.0)
    assert (soft_targets([0.5], np.array([2]), classes, width=0.0) == [[0, 0, 1]]).all()
    two = soft_targets([0.5], np.array([1]), ["negative", "positive"], width=0.35)
    assert list(two[0]) == [0, 1]  # other label sets: one-hot


def test_warm_start_from_the_champion(tmp_path) -> None:  # noqa: ANN001
    """`--base-model champion`: the registry's champion when it is a transformer (its model
    directory is a Hugging Face checkpoint), else the offline base model."""
    from sentiops.models.transformer import offline_model_path
    from sentiops.registry import lifecycle as registry
    from sentiops.registry import tracking
    from sentiops.training.warm_start import base_model
    from tests.conftest import train_transformer

    tracking.configure()
    assert base_model("champion") == str(offline_model_path())  # no champion yet
    model_dir = train_transformer(
        tmp_path / "t", "tiny-distilbert", epochs=1, serving_form="pytorch", drift_detector=False
    )
    version = registry.log_training(model_dir, "t", {}, {}, {})["registered_version"]
    tracking.client().set_model_version_tag(
        tracking.REGISTERED_MODEL, version, registry.STORAGE_URI_TAG, str(model_dir)
    )
    tracking.set_alias(tracking.REGISTERED_MODEL, registry.CHAMPION, version)
    assert base_model("champion") == str(model_dir)


def test_added_rows_weigh_their_share_of_the_training_data() -> None:
    """A retraining run's new labels (rows of an added source) together weigh `added_share`
    of the whole; the original rows 1 each; nothing is weighed up when they weigh enough."""
    import pandas as pd

    from sentiops.data.datasets import SOURCE
    from sentiops.training.train import row_weights

    df = pd.DataFrame(
        {
            "text": list("abcdefgh"),
            "label": ["positive"] * 8,
            SOURCE: ["vader-tweets"] * 6 + ["s3://b/labels/1.parquet"] * 2,
        }
    )
    w = row_weights(df, 0.5)
    assert w == [1.0] * 6 + [3.0, 3.0]  # 2 rows x 3 == 6 original rows x 1
    assert row_weights(df, 0.0) is None  # off
    assert row_weights(df, 0.2) is None  # 2 of 8 rows already weigh more than 0.2
    assert row_weights(df.iloc[:6], 0.5) is None  # no added rows
    assert row_weights(df.drop(columns=[SOURCE]), 0.5) is None


def test_sample_weights_steer_the_fit() -> None:
    """Weighted rows count more: the same conflicting texts learn the weighted rows' label."""
    texts = ["the service was ok"] * 4 + ["the service was ok"] * 4 + ["great", "awful", "fine"] * 4
    labels = ["positive"] * 4 + ["negative"] * 4 + ["positive", "negative", "neutral"] * 4
    ones = [1.0] * len(texts)
    to_negative = [1.0] * 4 + [5.0] * 4 + [1.0] * 12
    to_positive = [5.0] * 4 + [1.0] * 4 + [1.0] * 12
    for weights, want in ((to_negative, "negative"), (to_positive, "positive")):
        model = TfidfModel.fit(texts, labels, sample_weight=weights)
        assert model.labels[int(model.predict_proba(["the service was ok"])[0].argmax())] == want
    plain = TfidfModel.fit(texts, labels, sample_weight=ones).predict_proba(["great"])
    assert np.allclose(plain, TfidfModel.fit(texts, labels).predict_proba(["great"]))
    tiny = TransformerModel.fit(
        texts,
        labels,
        base_model=TINY,
        epochs=1,
        batch_size=8,
        max_length=16,
        progress=False,
        sample_weight=to_negative,
    )
    assert tiny.predict_proba(["fine"]).shape == (1, 3)  # the weighted loss trains
