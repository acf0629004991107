"""The student's transfer set: the texts a distilled student learns its teacher's answers on.

Distillation needs no labels, so the transfer set can be larger than the training split: the
training texts (with their labels), then unlabelled texts from the sources a run names
(`TrainConfig.transfer`):

    builtin   the texts of the built-in datasets (the four domains: tweets, movie reviews,
              product reviews, editorials) the run does not train on — the teacher's answers
              on domains it was not trained on are what the student must copy there;
    live      the live texts the drift sidecar logged to the store's prediction log
              (`<store>/predictions/`, newest first; the store: SENTIOPS_STORE, else the
              embedded default's) — what the student will serve;
    <dataset> any other dataset (a file or s3:// URI; its labels, if any, are not used).

Texts of the validation and test splits never enter it: the gate scores the student there,
and a student that copied its teacher on those very texts would look better than it is. The
texts given as `exclude` are left out; where a split is not known here (a pipeline's train step
sees no test split), the sources keep it out by construction: `builtin` skips the datasets the
run trains on (their test rows are among them), `live` takes only the texts outside the random
evaluation sample ("targeted": the split never tests them, `sentiops.data.split`). Each text
enters once. At most `limit` unlabelled texts are added, live texts first (up to half), the
rest sampled with the run's seed. The record (how many texts from where) goes into the
student's manifest entry.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sentiops.config import Settings, get_settings
from sentiops.data.datasets import BUILTIN, SAMPLE, TEXT, fetch_builtin, load
from sentiops.errors import DataError, StorageError
from sentiops.store import layout
from sentiops.store.storage import get_file

SOURCES = ("builtin", "live")


@dataclass
class TransferSet:
    """Training texts with their labels, then unlabelled texts (label "")."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def live_texts(settings: Settings, limit: int) -> list[str]:
    """Up to `limit` distinct logged live texts, newest files first, only targeted ones (none of
    the random evaluation sample; none without a log)."""
    import pandas as pd

    try:
        files = layout.list_files(layout.join(settings.store, layout.PREDICTIONS), settings)
    except StorageError:
        return []
    out: dict[str, None] = {}
    for f in sorted(files, key=lambda f: f.modified, reverse=True):
        if not f.uri.endswith(".parquet"):
            continue
        table = pd.read_parquet(get_file(f.uri, settings))
        if SAMPLE in table.columns:  # only targeted texts never test (`sentiops.data.split`)
            table = table[table[SAMPLE].astype(str) == "targeted"]
        for text in table[TEXT].dropna().astype(str):
            out.setdefault(text, None)
        if len(out) >= limit:
            break
    return list(out)[:limit]


def source_texts(
    source: str, settings: Settings, limit: int, trained_on: Iterable[str] = ()
) -> list[str]:
    """The texts of one transfer source (`builtin`: of the built-in datasets not among
    `trained_on`, `live` or a dataset)."""
    if source == "builtin":
        skip = set(trained_on)
        names = [n for n in BUILTIN if n not in skip]
        return [t for name in names for t in fetch_builtin(name, settings)[TEXT].astype(str)]
    if source == "live":
        return live_texts(settings, limit)
    try:
        return load([source], label_column=None, settings=settings)[TEXT].astype(str).tolist()
    except DataError as exc:
        raise DataError(
            f"transfer source {source!r}: {exc.message}",
            f"use {' | '.join(SOURCES)} or a dataset file / s3:// URI; {exc.hint}",
        ) from exc


def transfer_set(
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    *,
    sources: Iterable[str],
    exclude: Iterable[str] = (),
    trained_on: Iterable[str] = (),
    limit: int = 6000,
    seed: int = 0,
    settings: Settings | None = None,
) -> TransferSet:
    """The training texts and labels, then at most `limit` unlabelled texts of `sources` that
    are neither training texts nor in `exclude` (the validation and test texts).
    `trained_on`: the run's data sources (built-in dataset names among them are skipped)."""
    s = settings or get_settings()
    taken = {*map(str, train_texts), *map(str, exclude)}
    trained_on = tuple(trained_on)  # read once per source
    extra: dict[str, list[str]] = {}
    for source in dict.fromkeys(sources):  # each source once, in order
        found = source_texts(source, s, limit, trained_on)
        texts = [t for t in dict.fromkeys(found) if t.strip()]
        extra[source] = [t for t in texts if t not in taken]
        taken.update(extra[source])
    rng = random.Random(seed)
    chosen: dict[str, list[str]] = {}
    live = extra.pop("live", [])[: limit // 2]
    if live:
        chosen["live"] = live
    rest = [(src, t) for src, texts in extra.items() for t in texts]
    room = max(limit - len(live), 0)
    for src, text in rng.sample(rest, min(room, len(rest))):
        chosen.setdefault(src, []).append(text)
    unlabelled = [t for texts in chosen.values() for t in texts]
    record = {"train": len(train_texts)} | {src: len(t) for src, t in chosen.items()}
    return TransferSet(
        texts=[*map(str, train_texts), *unlabelled],
        labels=[*map(str, train_labels), *[""] * len(unlabelled)],
        record=record,
    )
