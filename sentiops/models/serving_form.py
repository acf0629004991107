"""The optimized serving form of a transformer, made once when the model is packaged.

The predictor, the evaluate step and the gate all load a model directory with
`sentiops.models.load_model`, which runs the form recorded in `model.json` under `serving`:
the model that is gated is the model that is served. The form is chosen here, right after
training and before any evaluation, and lives in the model directory under its checksums
(`modeldir.extend`), so no predictor converts anything at cold start.

Forms, fastest first (measured by `make bench-serving`):

    student-int8  a distilled student (`sentiops.models.distill`: the fine-tuned encoder with
                every other layer removed, trained to reproduce its probabilities on the
                training texts), exported, fused and quantized like onnx-int8 (the default
                whenever training texts are given: `make bench-serving` measured it 5.5x the
                usual design at 16 concurrent clients)
    onnx-int8   ONNX Runtime, graph exported from PyTorch and fused, MatMul weights quantized
                to int8 per channel (dynamic quantization: activations per batch at run time)
    onnx-fp32   ONNX Runtime, the same fused graph in fp32 (numerically the PyTorch model)
    pytorch     the fine-tuned safetensors weights (always kept: explanations and further
                fine-tuning use them)

The first form that validation does not show worse than the PyTorch fp32 model by more than
`tolerance` (default 0.5 macro-F1 points) is kept: its macro-F1 is within the tolerance, or
the 95 % paired-bootstrap interval of the difference reaches into it. On a validation split of
a few hundred texts that interval is several points wide (a student that changes 10 % of the
answers: -8 to +0.3 points on 420 tweets, yet +1.3 on the 840 test tweets), so a point
estimate alone would refuse forms on noise; the gate then judges the kept form on the test
split against the champion. What was measured for each form is recorded.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sentiops.models import load_model, modeldir
from sentiops.scoring import labels_from_proba, macro_f1, scored_labels
from sentiops.significance import paired_bootstrap

ONNX_DIR = "onnx"
FORMS = ("student-int8", "onnx-int8", "onnx-fp32", "pytorch")
#: what `serving_form: auto` tries, fastest first (the student when training texts are given)
AUTO = ("student-int8", "onnx-int8", "onnx-fp32", "pytorch")
FILES = {
    "onnx-fp32": f"{ONNX_DIR}/model.onnx",
    "onnx-int8": f"{ONNX_DIR}/model.int8.onnx",
    "student-int8": f"{ONNX_DIR}/student.int8.onnx",
}
TOLERANCE = 0.005
OPSET = 17


def export_onnx(net: Any, tokenizer: Any, path: Path) -> Path:
    """The PyTorch classifier as an ONNX graph with dynamic batch and sequence axes."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    enc = tokenizer(
        ["a short example", "another, somewhat longer example text"],
        padding=True,
        return_tensors="pt",
    )
    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "logits": {0: "batch"},
    }
    net.eval()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            net,
            (enc["input_ids"], enc["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def fuse(src: Path, dst: Path, config: Any) -> Path:
    """ONNX Runtime's transformer optimizer: attention, layer-norm and GELU subgraphs fused
    into single kernels (BERT-family encoders; DistilBERT fuses partly)."""
    from onnxruntime.transformers.optimizer import optimize_model

    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", 0)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", 0)
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    optimize_model(
        str(src), model_type="bert", num_heads=int(heads or 0), hidden_size=int(hidden or 0)
    ).save_model_to_file(str(dst))
    return dst


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantization of the weights, per output channel (ONNX Runtime's
    quantizer; per-tensor scales lose ~2 macro-F1 points on a fine-tuned MiniLM, per-channel
    scales keep it within 0.5)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process goes to the root logger
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
    return dst


def session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session using `threads` intra-op threads (default: torch's)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or _threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _student(
    reference: Any,
    labels: list[str],
    staging: Path,
    texts: Sequence[str],
    gold: Sequence[str],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Distill, export, fuse and quantize the student into staging/FILES["student-int8"]."""
    from sentiops.models.distill import distill, encoder_layers  # lazy: pulls torch

    if not len(texts):
        raise ValueError("the student-int8 form needs the training texts to distill on")
    index = {lab: i for i, lab in enumerate(labels)}
    params = dict(params)
    transfer = params.pop("transfer", None)  # where the texts came from, for the record
    start = time.perf_counter()
    student = distill(
        reference.model,
        reference.tokenizer,
        list(texts),
        [index.get(g) for g in gold] if len(gold) else None,
        max_length=reference.max_length,
        max_tokens=reference.max_tokens,
        window_pooling=reference.window_pooling,
        **params,
    )
    seconds = time.perf_counter() - start
    raw = export_onnx(student, reference.tokenizer, staging / "student.onnx")
    fused = fuse(raw, staging / "student.fp32.onnx", student.config)
    quantize_int8(fused, staging / FILES["student-int8"])
    return {
        "layers": len(encoder_layers(student)[2]),
        "teacher_layers": len(encoder_layers(reference.model)[2]),
        "transfer_texts": len(texts),
        **({"transfer": transfer} if transfer else {}),
        "distill_seconds": round(seconds, 1),
        **{k: v for k, v in params.items() if isinstance(v, int | float | str)},
    }


def _threads() -> int:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:  # pragma: no cover - the transformer extra brings torch
        return len(os.sched_getaffinity(0)) or 1


def _score_pred(pred: Sequence[str], gold: Sequence[str], labels: list[str]) -> float:
    return macro_f1(list(gold), list(pred), scored_labels(labels, gold, pred))


def _export_forms(
    reference: Any,
    labels: list[str],
    staging: Path,
    forms: Sequence[str],
    *,
    val_texts: list[str],
    val_labels: Sequence[str],
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    distill_params: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ONNX files of `forms` in `staging`: the exported network fused (fp32), quantized
    (int8) and a distilled student (`student-int8`, validated on the `val_labels` that are
    among `labels`). Returns the student's record ({} without one)."""
    raw = export_onnx(reference.model, reference.tokenizer, staging / "exported.onnx")
    fp32 = fuse(raw, staging / FILES["onnx-fp32"], reference.model.config)
    if "onnx-int8" in forms:
        quantize_int8(fp32, staging / FILES["onnx-int8"])
    if "student-int8" not in forms:
        return {}
    index = {lab: i for i, lab in enumerate(labels)}
    known = [(t, index[g]) for t, g in zip(val_texts, val_labels, strict=True) if g in index]
    params = {"val_texts": [t for t, _ in known], "val_labels": [y for _, y in known]}
    params |= distill_params or {}
    return _student(reference, labels, staging, train_texts, train_labels, params)


def _record(
    folder: Path,
    staging: Path,
    chosen: str,
    *,
    tolerance: float,
    n_texts: int,
    measured: dict[str, dict[str, Any]],
    student: dict[str, Any],
) -> dict[str, Any]:
    """Move the chosen form's file from `staging` into the model directory and record the
    manifest's `serving` entry (returned): the form, its runtime and file, what was measured
    on the `n_texts` validation texts per form, the student's record."""
    serving: dict[str, Any] = {
        "form": chosen,
        "runtime": "pytorch" if chosen == "pytorch" else "onnxruntime",
        "file": FILES.get(chosen),
        "tolerance": tolerance,
        "measured_on": f"validation split ({n_texts} texts)",
        "forms": measured,
    }
    if student:
        serving["student"] = student

    def add(tmp: Path) -> None:
        if chosen != "pytorch":
            target = tmp / FILES[chosen]
            target.parent.mkdir(parents=True, exist_ok=True)
            (staging / FILES[chosen]).rename(target)

    modeldir.extend(folder, add, {"serving": serving})
    return serving


def _checked_forms(forms: Sequence[str], train_texts: Sequence[str]) -> Sequence[str]:
    """`forms` when all are known (else a ValueError); AUTO without texts to distil on: the
    teacher's forms only."""
    unknown = sorted(set(forms) - set(FORMS))
    if unknown:
        raise ValueError(f"unknown serving forms {unknown}; known: {FORMS}")
    if tuple(forms) == AUTO and not len(train_texts):  # nothing to distil on: the teacher's forms
        return AUTO[1:]
    return forms


def _measure(
    measured: dict[str, dict[str, Any]], name: str, predict: Any, texts: list[str]
) -> np.ndarray:
    """`predict(texts)`, its speed recorded in `measured[name]` (texts/s)."""
    start = time.perf_counter()
    proba = predict(texts)
    secs = time.perf_counter() - start
    measured[name] = {"texts_per_sec": round(len(texts) / secs, 1) if secs > 0 else 0.0}
    return np.asarray(proba)


def package(
    folder: Path,
    val_texts: Sequence[str],
    val_labels: Sequence[str],
    tolerance: float = TOLERANCE,
    forms: Sequence[str] = AUTO,
    train_texts: Sequence[str] = (),
    train_labels: Sequence[str] = (),
    distill_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Make the serving form of the transformer in `folder` and record it in its manifest.

    Returns the manifest's `serving` entry: the chosen form, its file, and per form the
    validation macro-F1, its difference from PyTorch fp32 and texts/s measured here.
    `student-int8` distills on `train_texts` (with their `train_labels`, `distill_params`
    passed to `sentiops.models.distill.distill`)."""
    forms = _checked_forms(forms, train_texts)
    loaded = load_model(folder)
    reference: Any = loaded.model  # a TransformerModel (only transformers are packaged)
    texts = list(val_texts)
    measured: dict[str, dict[str, Any]] = {}
    proba = _measure(measured, "pytorch", reference.predict_proba, texts)
    base_pred = labels_from_proba(proba, loaded.labels)
    base = _score_pred(base_pred, val_labels, loaded.labels)
    measured["pytorch"]["val_macro_f1"] = round(base, 4)
    chosen = "pytorch"
    student_record: dict[str, Any] = {}
    staging = folder.parent / f".{folder.name}.onnx-{time.time_ns()}"
    try:
        if any(f != "pytorch" for f in forms):
            student_record = _export_forms(
                reference,
                loaded.labels,
                staging,
                forms,
                val_texts=texts,
                val_labels=val_labels,
                train_texts=train_texts,
                train_labels=train_labels,
                distill_params=distill_params,
            )
        for form in forms:
            if form == "pytorch":
                break
            sess = session(staging / FILES[form])
            proba = _measure(
                measured, form, lambda t, s=sess: reference.predict_proba(t, session=s), texts
            )
            pred = labels_from_proba(proba, loaded.labels)
            f1 = _score_pred(pred, val_labels, loaded.labels)
            boot = paired_bootstrap(list(val_labels), base_pred, pred)
            interval = [round(boot.ci_low, 4), round(boot.ci_high, 4)]
            measured[form].update(
                val_macro_f1=round(f1, 4), delta=round(f1 - base, 4), delta_95=interval
            )
            if f1 >= base - tolerance or boot.ci_high >= -tolerance:
                chosen = form
                break
        return _record(
            folder,
            staging,
            chosen,
            tolerance=tolerance,
            n_texts=len(texts),
            measured=measured,
            student=student_record,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
