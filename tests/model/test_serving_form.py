"""The optimized serving form: made when the model is packaged, under the model's checksums,
and what every consumer (evaluate, gate, predictor) loads — the model that is gated is the
model that is served."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sentiops.errors import ModelError
from sentiops.models import load_model
from sentiops.models.serving_form import FILES, package
from sentiops.scoring import labels_from_proba, macro_f1
from tests.conftest import make_frame, train_transformer


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 fine-tuned for two short epochs on learnable synthetic data."""
    return train_transformer(tmp_path_factory.mktemp("form"), "offline", epochs=2,
                             max_length=24, batch_size=16, seed=1)  # fmt: skip


def test_training_packages_the_fastest_form_within_tolerance(minilm: Path) -> None:
    manifest = json.loads((minilm / "model.json").read_text())
    serving = manifest["serving"]
    assert serving["form"] in ("onnx-int8", "onnx-fp32") and serving["runtime"] == "onnxruntime"
    assert serving["file"] in manifest["files"]  # under the model's checksums
    assert "model.safetensors" in manifest["files"]  # PyTorch weights kept (explanations)
    measured = serving["forms"]
    base = measured["pytorch"]["val_macro_f1"]
    assert measured[serving["form"]]["val_macro_f1"] >= base - serving["tolerance"]
    # metrics recorded at training time are the served form's
    loaded = load_model(minilm)
    assert loaded.model.session is not None


def test_served_form_agrees_with_pytorch_fp32_on_held_out_data(minilm: Path) -> None:
    """On texts it was not packaged on, the served form predicts what PyTorch fp32 predicts
    (a model this small flips a few borderline texts under int8; make bench-serving reports
    the macro-F1 of both forms on the 840-tweet test split)."""
    loaded = load_model(minilm)
    held_out = make_frame(30, seed=7)
    texts, gold = held_out.text.tolist(), held_out.label.tolist()
    served = loaded.predict_proba(texts)
    fp32 = loaded.model.predict_proba(texts, pytorch=True)
    agree = float((served.argmax(1) == fp32.argmax(1)).mean())
    assert agree >= 0.95, agree
    f1_served = macro_f1(gold, labels_from_proba(served, loaded.labels), loaded.labels)
    f1_fp32 = macro_f1(gold, labels_from_proba(fp32, loaded.labels), loaded.labels)
    assert abs(f1_served - f1_fp32) <= 0.05
    assert np.abs(served - fp32).max() < 0.2


def test_a_form_outside_the_tolerance_is_not_kept(minilm: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(minilm, copy)
    before = json.loads((copy / "model.json").read_text())["version"]
    held_out = make_frame(10, seed=3)
    # a negative tolerance: no ONNX form can be "within" it, so PyTorch is kept
    serving = package(
        copy,
        held_out.text.tolist(),
        held_out.label.tolist(),
        tolerance=-1.0,
        forms=("onnx-int8", "pytorch"),
    )
    manifest = json.loads((copy / "model.json").read_text())
    assert serving["form"] == "pytorch" and manifest["serving"]["form"] == "pytorch"
    assert "delta" in serving["forms"]["onnx-int8"]
    # nothing served changed: same files, same version; only the record says PyTorch
    assert manifest["version"] == before
    assert load_model(copy).model.session is None


def test_a_tampered_serving_form_is_refused(minilm: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(minilm, copy)
    form = json.loads((copy / "model.json").read_text())["serving"]["form"]
    (copy / FILES[form]).write_bytes(b"not an onnx graph")
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(copy)
