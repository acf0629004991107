"""Per-token attributions for the predicted label, bounded in cost per request.

- tfidf-logreg: exact, from the linear model — each word n-gram's TF-IDF value times the
  logistic-regression weight of the predicted class (the character n-grams are summed into
  the words they belong to would be guesswork, so they are reported as one `(char n-grams)`
  remainder).
- transformer: captum's LayerIntegratedGradients over the input embeddings, baseline = [PAD],
  `STEPS` interpolation steps, over the whole text up to `MAX_TOKENS` tokens: the model reads
  a long text in windows (`sentiops.models.windows`), so each window is attributed to the
  label the pooled answer gave, and a token that two windows read gets the mean of its two
  attributions.
- transformer served as the distilled `student-int8`: the network that answers is not the
  fine-tuned one whose PyTorch weights are in the folder (and is int8 ONNX, without gradients),
  so its attributions come from captum's FeatureAblation on the served session itself: each
  token's attribution is how much the predicted label's probability drops when that token is
  replaced by [PAD] (all of a text's ablations in one batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sentiops.models import LoadedModel, windows

STEPS = 16
#: Most tokens of a text explained (the windows over them are attributed one by one).
MAX_TOKENS = 256


def explain(model: LoadedModel, text: str) -> dict[str, Any]:
    proba = model.predict_proba([text])[0]
    k = int(np.argmax(proba))
    label = model.labels[k]
    kind = model.manifest.get("model_type")
    form = (model.manifest.get("serving") or {}).get("form")
    if kind == "tfidf-logreg":
        tokens, method = _linear(model, text, k), "linear weights x tf-idf"
    elif form == "student-int8":
        tokens, method = (
            _ablation(model, text, k),
            "feature ablation ([PAD] per token) on the served student-int8",
        )
    else:
        tokens, method = (
            _integrated_gradients(model, text, k),
            f"integrated gradients ({STEPS} steps)",
        )
    return {
        "text": text,
        "label": label,
        "score": float(proba[k]),
        "method": method,
        "attributions": [{"token": t, "attribution": float(a)} for t, a in tokens],
    }


def _linear(model: LoadedModel, text: str, k: int) -> list[tuple[str, float]]:
    pipe = model.model.pipeline  # type: ignore[attr-defined]
    union, clf = pipe.named_steps["features"], pipe.named_steps["clf"]
    coef = clf.coef_[k] if clf.coef_.shape[0] > 1 else clf.coef_[0] * (1 if k == 1 else -1)
    out: list[tuple[str, float]] = []
    offset, remainder = 0, 0.0
    for name, vec in union.transformer_list:
        x = vec.transform([text])
        vocab = vec.get_feature_names_out()
        weights = coef[offset : offset + len(vocab)]
        for j, v in zip(x.indices, x.data, strict=True):
            if name == "word":
                out.append((str(vocab[j]), float(v * weights[j])))
            else:
                remainder += float(v * weights[j])
        offset += len(vocab)
    out.sort(key=lambda t: -abs(t[1]))
    if remainder:
        out.append(("(char n-grams)", remainder))
    return out


def _windows(model: LoadedModel, text: str) -> tuple[Any, list[int], list[tuple[int, int]]]:
    """(tokenizer, the text's tokens up to MAX_TOKENS, the windows over them) as the model
    reads the text."""
    tm: Any = model.model
    tokenizer = tm.tokenizer
    content = tokenizer(text, add_special_tokens=False)["input_ids"][:MAX_TOKENS]
    return tokenizer, content, windows.spans(len(content), tm.max_length - 2, tm.stride)


def _over_windows(model: LoadedModel, text: str, attribute: Any) -> list[tuple[str, float]]:
    """Per token, the mean attribution of the windows that read it; `attribute(ids, mask)`
    scores one window's tokens (with [CLS] and [SEP])."""
    import torch

    tokenizer, content, spans = _windows(model, text)
    total, count = np.zeros(len(content)), np.zeros(len(content))
    for start, end in spans:
        ids = torch.tensor([[tokenizer.cls_token_id, *content[start:end], tokenizer.sep_token_id]])
        scores = attribute(ids, torch.ones_like(ids))
        total[start:end] += scores[1:-1]
        count[start:end] += 1
    tokens = tokenizer.convert_ids_to_tokens(content)
    return [(t, float(v)) for t, v in zip(tokens, total / np.maximum(count, 1), strict=True)]


def _ablation(model: LoadedModel, text: str, k: int) -> list[tuple[str, float]]:
    import torch
    from captum.attr import FeatureAblation

    tm: Any = model.model
    session, pad = tm.session, tm.tokenizer.pad_token_id or 0

    def attribute(ids: Any, mask: Any) -> np.ndarray:
        def forward(input_ids: Any) -> Any:
            rows = mask.expand(input_ids.shape[0], -1)
            feed = {
                "input_ids": input_ids.numpy().astype(np.int64),
                "attention_mask": rows.numpy().astype(np.int64),
            }
            return torch.softmax(torch.from_numpy(session.run(["logits"], feed)[0]).float(), -1)

        ablation = FeatureAblation(forward)
        attr = ablation.attribute(
            ids, baselines=pad, target=k, perturbations_per_eval=int(ids.shape[1])
        )
        return attr[0].detach().numpy()

    return _over_windows(model, text, attribute)


def _integrated_gradients(model: LoadedModel, text: str, k: int) -> list[tuple[str, float]]:
    import torch
    from captum.attr import LayerIntegratedGradients

    tm: Any = model.model
    net, pad = tm.model, tm.tokenizer.pad_token_id or 0

    def forward(input_ids: Any, attention_mask: Any) -> Any:
        return torch.softmax(net(input_ids=input_ids, attention_mask=attention_mask).logits, -1)

    lig = LayerIntegratedGradients(forward, net.get_input_embeddings())

    def attribute(ids: Any, mask: Any) -> np.ndarray:
        with torch.enable_grad():
            attr = lig.attribute(
                ids,
                baselines=torch.full_like(ids, pad),
                target=k,
                additional_forward_args=(mask,),
                n_steps=STEPS,
            )
        return attr.sum(dim=-1)[0].detach().numpy()

    return _over_windows(model, text, attribute)
