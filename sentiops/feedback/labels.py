"""Label feedback for earlier predictions: what a label is, and where and how it is stored.

People (or a labelling tool) send `{"id": ..., "label": ...}`, one or many, where `id` is the
prediction's request id (the `x-request-id` the predictor answered with, or the v2 request
`id`; `<request id>:<index>` for the index-th text of a batch). Each label is joined with the
prediction it is about and stored as labelled training data:

    <store>/labels/feedback/date=YYYY-MM-DD/part-<HHMMSS>-<uuid8>.parquet
        id, text, label (the person's), predicted_label, confidence, model_name,
        model_version, predicted_at, labelled_at, source, sample, labelled_by (the name of
        the token the label came with, when writes need one: who labelled what), client_id
        (the client's own id of the request, kept for correlation; never what a label joins),
        annotator (who gave the label inside a labelling tool, e.g. Label Studio users' emails),
        origin (what made it, e.g. `labelstudio project=3 task=17`: labels of one origin may
        be revised), revision (the origin's version of the label, e.g. its annotations' ids and
        times: the same revision again is no change), withdrawn (true: the origin took its
        label back); parts written before these columns were added lack them

(`sentiops.store.layout` owns the store's other layouts; retraining reads `<store>/labels/`.)

A request is accepted whole or refused whole (`sentiops.feedback.intake`): a malformed item or
an unknown label is a 400 (`parse_items`, here), an id no prediction has is a 404, a second
label for the same id is a 409. Readers keep the first label of an id (`current_labels`).

**Revisions and withdrawals.** A label that names an `origin` (a labelling tool's task, say)
may later be replaced by the same origin and token — an annotator edited the annotation — or
withdrawn — the annotation was deleted. The parts stay append-only: a revision is another row
for the id with the same origin and a new `revision`; a withdrawal is a row with
`withdrawn=true` (and the label it withdraws, so a reader of raw rows sees a duplicate, never
an empty label). `current_labels` keeps, per id, the first label — or, when that first label
names an origin, the latest row of the same origin and token, and none if that row withdraws.
Labels without an origin (the API, the console, `sentiops feedback --file`) keep today's rule:
the first label of an id, a second one refused.

Two kinds of label, told apart by `sample`: a prediction in the **random evaluation sample**
(decided when the prediction was made, by a keyed hash of the server-issued prediction id:
`sentiops.security.secrets.SampleKey`, so every model version and every hour is sampled alike,
and neither a client nor a labeller can choose or tell which texts are in it; the decision is
stored with the prediction and the label takes it) is `random`; every other label (e.g. the
drift sidecar's queue of the most uncertain texts, chosen to teach the next model) is
`targeted`. Only `random` labels estimate how well a model
does on live traffic: live accuracy and macro-F1 per model version (computed from every stored
label, so every replica exports the same numbers, and exported as gauges), the canary judge's
per-step `sentiops_feedback_total{correct, sample="random"}` and the gate's live test share.
`targeted` labels are training data only. The sidecar leaves the evaluation sample out of its
labelling queue, so what is labelled of the sample is not chosen by uncertainty either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sentiops.config import Settings
from sentiops.errors import FeedbackError
from sentiops.store import layout

FEEDBACK = "feedback"
#: Most labels one request may carry.
MAX_ITEMS = 1000
#: Labels the platform knows (a model trained on two of them can still get the third).
LABELS = ("negative", "neutral", "positive")
COLUMNS = (
    "id",
    "text",
    "label",
    "predicted_label",
    "confidence",
    "model_name",
    "model_version",
    "predicted_at",
    "labelled_at",
    "source",
    "sample",
    "labelled_by",
    "client_id",
    "annotator",
    "origin",
    "revision",
    "withdrawn",
)
#: Columns added after the first parts were written: (name, the value an older part has).
LATER_COLUMNS = {"annotator": "", "origin": "", "revision": "", "withdrawn": False}
#: Longest provenance value an item may carry (annotator, origin, revision).
MAX_PROVENANCE = 500
RANDOM, TARGETED = "random", "targeted"


def sample_of(prediction: dict[str, Any], key: Any) -> str:
    """RANDOM or TARGETED: the decision stored with the prediction, else (a prediction logged
    before decisions were stored) `key`'s (`sentiops.security.secrets.SampleKey`)."""
    stored = str(prediction.get("sample") or "")
    if stored in (RANDOM, TARGETED):
        return stored
    return RANDOM if key.in_sample(str(prediction["id"])) else TARGETED


def random_sample(df: Any) -> Any:
    """The labels of the random evaluation sample (older parts without `sample`: none)."""
    if "sample" not in df.columns:
        return df.iloc[0:0]
    return df[df["sample"] == RANDOM]


@dataclass(frozen=True)
class Item:
    """One label for one prediction; `annotator`, `origin`, `revision` and `withdrawn` are the
    provenance a labelling tool adds (see the module's docstring), empty for everyone else."""

    id: str
    label: str
    annotator: str = ""
    origin: str = ""
    revision: str = ""
    withdrawn: bool = False


def feedback_prefix(store: str) -> str:
    return layout.join(store, layout.LABELS, FEEDBACK)


# ------------------------------------------------------------------------------ parsing
def parse_items(body: Any, max_items: int = MAX_ITEMS) -> list[Item]:
    """`{"id", "label"}`, a list of them, or `{"feedback": [...]}` -> items; FeedbackError
    (400) naming every malformed item."""
    raw = body.get("feedback", body) if isinstance(body, dict) else body
    raw = [raw] if isinstance(raw, dict) else raw
    example = '{"id": "<request id>", "label": "positive"} or a list of them'
    if not isinstance(raw, list) or not raw:
        raise FeedbackError("expected a label or a non-empty list of labels", f"send {example}")
    if len(raw) > max_items:
        raise FeedbackError(
            f"{len(raw)} labels in one request exceed the limit of {max_items}",
            f"send at most {max_items} per request",
        )
    problems, items = [], []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            problems.append({"index": i, "error": "not an object"})
            continue
        rid, label = entry.get("id"), entry.get("label")
        withdrawn = entry.get("withdrawn", False)
        provenance = _provenance(entry)
        if not isinstance(rid, str) or not rid.strip():
            problems.append({"index": i, "error": 'missing or empty "id" (a string)'})
        elif isinstance(provenance, str):
            problems.append({"index": i, "id": rid, "error": provenance})
        elif not isinstance(withdrawn, bool) or (withdrawn and not provenance["origin"]):
            problems.append(
                {
                    "index": i,
                    "id": rid,
                    "error": '"withdrawn" is true or false, and '
                    'only a label with an "origin" can be withdrawn',
                }
            )
        elif not withdrawn and (not isinstance(label, str) or label not in LABELS):
            problems.append(
                {"index": i, "id": rid, "error": f"label {label!r} is not one of {list(LABELS)}"}
            )
        else:
            label = label if isinstance(label, str) and label in LABELS else ""
            items.append(Item(rid.strip(), label, withdrawn=withdrawn, **provenance))
    if problems:
        shown = "; ".join(_describe(p) for p in problems[:3])
        raise FeedbackError(
            f"{len(problems)} of {len(raw)} labels are malformed: {shown}",
            f"send {example}",
            400,
            problems,
        )
    return items


def _provenance(entry: dict[str, Any]) -> dict[str, str] | str:
    """The optional `annotator`, `origin`, `revision` of an item, or what is wrong with them."""
    out = {}
    for key in ("annotator", "origin", "revision"):
        value = entry.get(key, "")
        if not isinstance(value, str) or len(value) > MAX_PROVENANCE or not value.isprintable():
            return f'"{key}" must be a printable string of at most {MAX_PROVENANCE} characters'
        out[key] = value.strip()
    if out["revision"] and not out["origin"]:
        return 'a "revision" needs the "origin" it revises'
    return out


def _describe(problem: dict[str, Any]) -> str:
    where = f"item {problem['index']}"
    if "id" in problem:
        where += f" (id {problem['id']})"
    return f"{where}: {problem['error']}"


def read_labels(store: str, settings: Settings | None = None) -> Any:
    """Every stored feedback label as one DataFrame (COLUMNS; per id the current label:
    `current_labels`)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from sentiops.store.storage import get_file  # lazy: pulls minio

    files = [
        f for f in layout.list_files(feedback_prefix(store), settings) if f.uri.endswith(".parquet")
    ]
    if not files:
        return pd.DataFrame(columns=list(COLUMNS))
    frames = [pq.read_table(get_file(f.uri, settings)).to_pandas() for f in files]
    return current_labels(pd.concat(frames, ignore_index=True))


def with_later_columns(df: Any) -> Any:
    """`df` with every column of LATER_COLUMNS, `labelled_by` and `labelled_at` (an older or
    hand-written part's rows get the meaning they always had: no provenance, not withdrawn,
    in the order they were written)."""
    missing = {
        c: v
        for c, v in {**LATER_COLUMNS, "labelled_by": "", "labelled_at": ""}.items()
        if c not in df.columns
    }
    df = df.assign(**missing) if missing else df
    text = ("annotator", "origin", "revision", "labelled_by")
    return df.assign(
        withdrawn=df["withdrawn"].fillna(False).astype(bool),
        **{c: df[c].fillna("").astype(str) for c in text},
    )


def current_labels(df: Any) -> Any:
    """One row per prediction id, its current label: the earliest label; when that label names
    an `origin`, the latest row of the same origin and token instead, and no row when that one
    is a withdrawal. Rows of other origins or tokens after the first are ignored (a second
    label for an id is refused when it is taken; two replicas in the same instant: the first
    wins). Labels without an origin behave as they always did: the first one counts."""
    import pandas as pd

    df = with_later_columns(df).sort_values("labelled_at", kind="stable")
    first = df.drop_duplicates("id", keep="first")
    key = df["origin"] + "\n" + df["labelled_by"]  # who may revise: same origin, same token
    owner = key[first.index].set_axis(first["id"]).reindex(df["id"]).to_numpy()
    mine = key.to_numpy() == owner
    revised = df[(df["origin"] != "") & mine].drop_duplicates("id", keep="last")
    out = pd.concat([first[first["origin"] == ""], revised])
    out = out.sort_values("labelled_at", kind="stable")
    return out[~out["withdrawn"]].reset_index(drop=True)


#: The name this function had before labels could be revised (same behaviour for labels
#: without an origin).
first_label_per_id = current_labels
