"""The labelling core without a server: tasks, majority, Krippendorff's alpha, the webhook's
task ids, and the feedback intake's revisions and withdrawals (what readers see)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentiops.errors import FeedbackError
from sentiops.feedback.intake import Feedback
from sentiops.feedback.labels import Item, parse_items, read_labels
from sentiops.feedback.predictions import PredictionIndex
from sentiops.labelling.annotations import Annotation, TaskLabels, agreement, krippendorff_alpha
from sentiops.labelling.receiver import EVERYTHING, task_ids
from sentiops.labelling.tasks import Sources, evaluation_task, label_config, queue_task
from tests.labelling.store import prediction, write_traffic


def test_krippendorff_alpha_of_the_worked_example() -> None:
    """Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal data: four
    coders, twelve units with missing values: alpha = 0.743."""
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[str(v) for v in unit if v is not None] for unit in zip(*coders, strict=True)]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == 1.0
    assert krippendorff_alpha([["a", "a"]]) is None  # nothing to tell apart
    assert krippendorff_alpha([["a"], ["b"]]) is None  # nothing pairable


def _task(task: int, *labels: str | None) -> TaskLabels:
    annotations = [
        Annotation(task * 10 + n, f"a{n}@x", f"t{n}", lab) for n, lab in enumerate(labels)
    ]
    return TaskLabels(3, task, f"p{task}", annotations)


def test_majority_tie_and_provenance() -> None:
    t = _task(1, "positive", "positive", "negative", None)  # one skipped
    item = t.item(None)
    assert item is not None and (item.id, item.label) == ("p1", "positive")
    assert item.annotator == "a0@x,a1@x" and item.origin == "labelstudio:project=3:task=1"
    assert "annotations=10,11,12" in item.revision
    assert t.item((t.origin, item.revision, False)) is None  # stored already: nothing to send
    tie = _task(2, "positive", "negative")
    assert tie.held and tie.item(None) is None  # held for review, nothing stored
    gone = tie.item((tie.origin, "old", False))  # a stored label loses its majority
    assert gone is not None and gone.withdrawn
    found = agreement(
        [
            _task(1, "positive", "positive"),
            _task(2, "negative", "positive"),
            _task(3, "neutral", "neutral"),
        ]
    )
    assert found["units"] == 3 and found["alpha"] == pytest.approx(
        krippendorff_alpha(
            [["positive", "positive"], ["negative", "positive"], ["neutral", "neutral"]]
        )
    )
    assert found["annotators"]["a0@x"]["agreement"] == pytest.approx(2 / 3)


def test_tasks_carry_the_prediction_never_the_sample_or_the_model_for_evaluation(
    tmp_path: Path,
) -> None:
    traffic = write_traffic(tmp_path)
    sources = Sources(str(tmp_path), "sentiment")
    assert sources.refresh() == (4, 4) and sources.refresh() == (0, 0)  # parts read once
    assert [r["rank"] for r in sources.queue] == [0, 1, 2, 3]
    queued = queue_task(traffic["queue"][0])
    assert queued["data"]["prediction_id"] == traffic["queue"][0]["id"]
    assert queued["data"]["window_id"] == "w-1" and queued["predictions"][0]["score"] > 0
    assert queued["predictions"][0]["result"][0]["value"]["choices"] == [
        traffic["queue"][0]["label"]
    ]
    evaluation = evaluation_task(prediction(1, "random"))
    assert set(evaluation) == {"data"}  # no pre-annotation
    assert set(evaluation["data"]) == {"text", "prediction_id", "model_version", "predicted_at"}
    assert 'Choice value="neutral"' in label_config()


def test_webhook_events_name_their_tasks() -> None:
    assert task_ids(
        {"action": "ANNOTATION_CREATED", "task": {"id": 7}, "annotation": {"id": 1, "task": 7}}
    ) == [7]
    assert task_ids(
        {
            "action": "ANNOTATIONS_CREATED",
            "annotation": [{"task": 2}],
            "annotations": [{"task": 3}, {"task": {"id": 4}}],
        }
    ) == [3, 4]
    assert task_ids({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 9}]}) == [EVERYTHING]
    for bad in (
        {"action": "PROJECT_CREATED"},
        [],
        {"action": "ANNOTATION_CREATED"},
        {"action": "ANNOTATION_UPDATED", "task": {"id": True}},
    ):
        with pytest.raises(ValueError):
            task_ids(bad)


def _feedback(store: str) -> Feedback:
    index = PredictionIndex(store)
    index.remember([prediction(i, "random") for i in range(4)])
    return Feedback(store, index=index)


def test_revisions_and_withdrawals_of_a_labelling_tool(tmp_path: Path) -> None:
    """A label with an origin is revised and withdrawn by the same origin and token; the same
    revision again stores nothing; another origin or token is refused; labels without an
    origin keep the first-label rule; readers (read_labels, live accuracy) follow."""
    store = str(tmp_path)
    fb = _feedback(store)
    ls = {"origin": "labelstudio:project=1:task=1", "annotator": "ann@x"}
    first = fb.record([Item("pred-r0", "negative", revision="r1", **ls)], labelled_by="ls")
    assert first["accepted"] == 1 and first["unchanged"] == 0
    again = fb.record([Item("pred-r0", "negative", revision="r1", **ls)], labelled_by="ls")
    assert again == {**again, "accepted": 0, "unchanged": 1, "stored": ""}
    for other in ({"labelled_by": "team"}, {"labelled_by": ""}):  # another token, or none
        with pytest.raises(FeedbackError) as exc:
            fb.record([Item("pred-r0", "neutral", revision="r2", **ls)], **other)
        assert exc.value.status == 409
    edited = fb.record([Item("pred-r0", "positive", revision="r2", **ls)], labelled_by="ls")
    assert edited["revised"] == 1 and edited["by_version"] == {}  # a revision is no new label
    fb.record([Item("pred-r1", "neutral")])  # an API label: no origin
    with pytest.raises(FeedbackError):
        fb.record([Item("pred-r1", "positive", origin="labelstudio:project=1:task=2")])
    stored = read_labels(store).set_index("id")
    assert stored.loc["pred-r0", "label"] == "positive"
    assert stored.loc["pred-r0", "annotator"] == "ann@x"
    assert stored.loc["pred-r0", "origin"] == ls["origin"]
    assert fb.live_metrics()["1"]["labels"] == 2
    gone = fb.record([Item("pred-r0", "", revision="r3", withdrawn=True, **ls)], labelled_by="ls")
    assert gone["withdrawn"] == 1
    assert list(read_labels(store)["id"]) == ["pred-r1"]
    assert fb.live_metrics()["1"]["labels"] == 1
    assert (
        fb.record([Item("pred-r0", "", withdrawn=True, **ls)], labelled_by="ls")["unchanged"] == 1
    )
    assert Feedback(store, index=fb.index).live_metrics() == fb.live_metrics()  # a restart
    back = fb.record([Item("pred-r0", "neutral", revision="r4", **ls)], labelled_by="ls")
    assert (
        back["revised"] == 1
        and read_labels(store).set_index("id").loc["pred-r0", "label"] == "neutral"
    )


def test_provenance_through_the_feedback_api_body() -> None:
    items = parse_items(
        [
            {
                "id": "a",
                "label": "positive",
                "annotator": "x@y",
                "origin": "labelstudio:project=1:task=2",
                "revision": "r",
            },
            {"id": "b", "withdrawn": True, "origin": "o"},
        ]
    )
    assert items[0].annotator == "x@y" and items[1].withdrawn and items[1].label == ""
    for bad in (
        {"id": "a", "withdrawn": True},
        {"id": "a", "label": "positive", "revision": "r"},
        {"id": "a", "label": "positive", "origin": "x" * 501},
        {"id": "a", "label": "positive", "annotator": "a\nb"},
        {"id": "a", "label": "positive", "withdrawn": "yes", "origin": "o"},
    ):
        with pytest.raises(FeedbackError) as exc:
            parse_items([bad])
        assert exc.value.status == 400


class _RecordingSync:
    """What the worker calls on a sync, recorded (the real Sync needs a Label Studio)."""

    model_name = "sentiment"
    agreement: dict = {}
    held: dict = {}

    def __init__(self) -> None:
        self.rounds = 0
        self.pulls = 0

    def push(self) -> dict:
        self.rounds += 1
        return {}

    def pull(self, ids: list[int] | None = None) -> dict:
        import time

        self.pulls += 1
        time.sleep(0.02)  # reading tasks back takes a while: new webhooks arrive meanwhile
        return {}


def test_a_steady_stream_of_webhooks_never_starves_the_round() -> None:
    """Webhooks keep arriving faster than they are pulled; the round (which pushes new tasks)
    still runs every interval."""
    import threading
    import time

    from sentiops.labelling.receiver import Worker

    sync = _RecordingSync()
    worker = Worker(sync, interval=0.2)  # type: ignore[arg-type]
    flooding = threading.Event()

    def flood() -> None:
        n = 0
        while not flooding.is_set():
            n += 1
            worker.hints.put_nowait(n)
            time.sleep(0.001)

    feeder = threading.Thread(target=flood, daemon=True)
    feeder.start()
    worker.start()
    time.sleep(1.5)
    worker.stop()
    flooding.set()
    worker.join(5)
    feeder.join(5)
    assert sync.pulls > sync.rounds  # the hints were served too
    assert sync.rounds >= 4, sync.rounds  # ~7 intervals: the round was not starved
