"""Reading the whole text: windows over the tokens, pooled into one answer
(`sentiops.models.windows`), in training and prediction."""

from __future__ import annotations

import numpy as np
import pytest

from sentiops.models import windows
from tests.conftest import make_frame


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    from transformers import AutoTokenizer

    from sentiops.models.transformer import offline_model_path

    return AutoTokenizer.from_pretrained(offline_model_path())


def test_windows_cover_every_token_and_end_with_the_text() -> None:
    assert windows.spans(10, 22, 16) == [(0, 10)]
    assert windows.spans(22, 22, 16) == [(0, 22)]
    cover = windows.spans(100, 22, 16)
    assert cover[0] == (0, 22) and cover[-1] == (78, 100)  # the last is aligned with the end
    seen = np.zeros(100, bool)
    for start, end in cover:
        assert end - start == 22
        seen[start:end] = True
    assert seen.all()
    assert all(b[0] - a[0] <= 16 for a, b in zip(cover, cover[1:], strict=False))


def test_a_short_text_is_one_window_as_a_truncating_tokenizer_encodes_it(tokenizer) -> None:  # noqa: ANN001
    texts = make_frame(5).text.tolist()
    win = windows.split(tokenizer, texts, max_length=64)
    assert list(win.owner) == list(range(len(texts)))
    assert win.input_ids == tokenizer(texts, truncation=True, max_length=64)["input_ids"]
    assert (win.fraction == 1.0).all()


def test_a_long_text_is_read_whole_up_to_the_cap(tokenizer) -> None:  # noqa: ANN001
    long = " ".join(make_frame(30).text)  # ~600 tokens
    n = len(tokenizer(long, add_special_tokens=False)["input_ids"])
    win = windows.split(tokenizer, ["short one", long], max_length=24, max_tokens=10_000)
    mine = [ids for ids, o in zip(win.input_ids, win.owner, strict=True) if o == 1]
    assert len(mine) == len(windows.spans(n, 22, windows.stride_for(24)))
    assert all(
        ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id and len(ids) <= 24
        for ids in mine
    )
    assert win.read[1] == win.tokens[1] == n and win.fresh[win.owner == 1].sum() == n
    # past the cap: the start and the end are read, and the answer can say how much
    capped = windows.split(tokenizer, [long], max_length=24, max_tokens=100)
    assert capped.read[0] == 100 and capped.fraction[0] == pytest.approx(100 / n)
    ids = tokenizer(long, add_special_tokens=False)["input_ids"]
    assert capped.input_ids[-1][1:-1] == ids[-22:]  # the text's last tokens


def test_pooling_the_windows_of_each_text() -> None:
    win = windows.Windows(
        [[0]] * 4,
        owner=np.array([0, 1, 1, 1]),
        fresh=np.array([5, 22, 8, 4.0]),
        tokens=np.array([5, 34]),
        read=np.array([5, 34]),
    )
    logits = np.array([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [0, 0, 4.0]])
    assert np.allclose(windows.pool(logits, win, "mean"), [[1, 0, 0], [0, 2 / 3, 5 / 3]])
    assert np.allclose(windows.pool(logits, win, "weighted")[1], [0, 44 / 34, 24 / 34])
    assert np.allclose(windows.pool(logits, win, "max")[1], [0, 0, 4.0])  # the surest window
    # the last window weighs twice as much as the others together
    assert np.allclose(windows.pool(logits, win, "last")[1], [0, 2 / 6, (1 + 4 * 4) / 6])
    with pytest.raises(ValueError, match="unknown window pooling"):
        windows.pool(logits, win, "median")


def _said(words: list[str], n: int, start: int = 0) -> list[str]:
    """Plain sentences with one class's cue words (no label in the text)."""
    from tests.conftest import THINGS

    return [
        f"the {THINGS[(start + i) % len(THINGS)]} was {words[(start + i) % len(words)]} "
        f"and {words[(start + i + 3) % len(words)]}"
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def cue_model():  # noqa: ANN201
    """all-MiniLM-L6-v2 fine-tuned briefly on short sentences of cue words, reading 24 tokens
    at a time (a sentence is ~8)."""
    from sentiops.models.transformer import TransformerModel
    from tests.conftest import NEG, NEU, POS

    texts, labels = [], []
    for label, words in (("negative", NEG), ("neutral", NEU), ("positive", POS)):
        texts += _said(words, 40)
        labels += [label] * 40
    return TransformerModel.fit(
        texts,
        labels,
        base_model="offline",
        epochs=3,
        max_length=24,
        batch_size=16,
        lr=1e-4,
        progress=False,
        seed=3,
    )


def test_a_review_is_classified_by_its_verdict_at_the_end(cue_model) -> None:  # noqa: ANN001
    """A text several windows long whose start is neutral and whose end says what the writer
    thinks: the model reads the end — the first window alone, what truncation read, says
    neutral — and the pooling (`last`, the default) counts the last window twice as much as
    the rest together."""
    from tests.conftest import NEG, NEU, POS

    assert cue_model.window_pooling == windows.DEFAULT_POOLING == "last"
    for verdict, words in (("negative", NEG), ("positive", POS)):
        text = ". ".join([*_said(NEU, 6, start=1), *_said(words, 3, start=2)])
        win = cue_model.windows([text])
        assert len(win.owner) >= 3
        first = cue_model.window_logits(win.input_ids[:1])
        assert cue_model.labels[int(first.argmax())] == "neutral"
        proba = cue_model.predict_proba([text])[0]
        assert cue_model.labels[int(proba.argmax())] == verdict, proba


def test_joined_snippets_are_several_sentences_of_one_label() -> None:
    """`windows.joined`: training texts of 3-8 same-label snippets, their mean score and
    weight; a label with too few snippets gets none; the seed decides."""
    texts = [f"pos {i}." for i in range(20)] + [f"neg {i}." for i in range(10)] + ["neu 0."]
    labels = ["positive"] * 20 + ["negative"] * 10 + ["neutral"]
    scores = [2.0] * 20 + [-1.0] * 10 + [0.0]
    weights = [1.0] * 20 + [3.0] * 10 + [1.0]
    out = windows.joined(texts, labels, share=2.0, scores=scores, weights=weights, seed=3)
    assert len(out.texts) == 62 and set(out.labels) == {"positive", "negative"}
    assert out.scores is not None and out.weights is not None
    for text, lab, score, weight in zip(
        out.texts, out.labels, out.scores, out.weights, strict=True
    ):
        parts = text.split(". ")
        assert 3 <= len(parts) <= 8 and len(set(parts)) == len(parts)  # distinct snippets
        assert all(p.startswith(lab[:3]) for p in parts)  # one label throughout
        assert (score, weight) == ((2.0, 1.0) if lab == "positive" else (-1.0, 3.0))
    assert out.labels.count("positive") > out.labels.count("negative")  # as the data
    again = windows.joined(texts, labels, share=2.0, scores=scores, weights=weights, seed=3)
    assert again.texts == out.texts
    plain = windows.joined(texts, labels, share=0.5)
    assert len(plain.texts) == 16 and plain.scores is None and plain.weights is None
