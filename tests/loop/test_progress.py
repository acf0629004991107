"""What the loop says while it waits (no servers): a training run's log read as it grows
(kfp.local's task lines, the transformer's tqdm bar), the heartbeat of a wait, the demo
annotators reading Label Studio's tasks page by page, and a pipeline's output kept apart from
the progress lines printed meanwhile."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from sentiops.errors import StackError
from sentiops.local.loop.progress import (
    LogTail,
    TrainingLog,
    clock,
    following,
    never_silent,
    wait_for,
)

#: Lines as a kfp.local run of the transformer writes them (colours included).
LOG = [
    "05:57:50.020 - INFO - Running pipeline: \x1b[95m'sentiops-training'\x1b[0m",
    "05:57:50.022 - INFO - Executing task \x1b[96m'ingest'\x1b[0m",
    '            "parameterValues": {',
    "05:57:50.858 - INFO - Task \x1b[96m'ingest'\x1b[0m finished with status "
    "\x1b[92mSUCCESS\x1b[0m",
    "05:57:53.300 - INFO - Executing task \x1b[96m'train'\x1b[0m",
    "    fine-tuning:   0%|          | 0/142 [00:00<?, ?step/s]",
    "    fine-tuning:  44%|████▎     | 62/142 [01:00<01:17,  1.03step/s, epoch=1, loss=0.954]",
]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_transformer_run_told_by_stage_step_rate_eta_epoch_and_loss() -> None:
    now = Clock()
    run = TrainingLog("transformer", clock=now)
    run.feed(LOG[0])
    assert run.summary() == "training run 0s: starting"
    run.feed(LOG[1])
    now.t += 3
    assert run.summary() == "training run 3s: ingest (reading the datasets), 3s in it"
    for line in LOG[2:5]:
        run.feed(line)
    assert run.done == ["ingest"] and run.stage == "train"
    assert "loading the model" in run.summary()  # no step yet
    run.feed(LOG[5])
    run.feed(LOG[6])
    now.t += 10  # ten seconds after the bar was read: the ETA counts down
    line = run.summary()
    assert line == (
        "training run 13s: fine-tuning step 62/142 (44 %), 1.03 step/s, ETA 1m07s, epoch 1, "
        "loss 0.954"
    )
    run.feed("    epoch 1: train_loss=0.8112, val_macro_f1=0.7235")
    assert run.summary().endswith("last epoch 1: train_loss=0.8112, val_macro_f1=0.7235")
    run.feed("06:00:59.736 - INFO - Task 'train' finished with status SUCCESS")
    run.feed("06:01:09.996 - INFO - Executing task 'gate'")
    run.feed("    # Promotion gate: APPROVED")
    assert "gate (the promotion gate: challenger vs champion)" in run.summary()
    assert run.summary().endswith("gate APPROVED")
    run.feed("06:01:37.600 - INFO - Pipeline 'sentiops-training' finished with status SUCCESS")
    assert run.summary() == "training run 13s: the pipeline finished (SUCCESS)"


def test_tfidf_stages_and_a_failed_task() -> None:
    run = TrainingLog("tfidf-logreg", clock=Clock())
    run.feed("10:00:00.000 - INFO - Executing task 'train'")
    assert run.summary().endswith("fitting TF-IDF + logistic regression (no steps to count)")
    run.feed("10:00:09.000 - INFO - Task 'train' finished with status FAILURE")
    assert run.summary() == "training run 0s: task train failed"


def test_a_bar_written_with_carriage_returns_counts_its_last_state() -> None:
    run = TrainingLog(clock=Clock())
    run.feed("Executing task 'train'")
    run.feed(
        "fine-tuning:  10%|█| 1/10 [00:01<00:09,  1.00s/step]\r"
        "fine-tuning:  20%|█| 2/10 [00:02<00:08,  1.00s/step]"
    )
    assert run.bar is not None and (run.bar.n, run.bar.total, run.bar.eta) == (2, 10, 8.0)


def test_clock() -> None:
    assert (clock(5), clock(65), clock(3600)) == ("5s", "1m05s", "60m00s")


def test_the_tail_feeds_whole_lines_as_the_file_grows(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    got: list[str] = []
    tail = LogTail(log, got.append)
    tail.read()  # not there yet
    log.write_text("one\ntw")
    tail.read()
    assert got == ["one"]
    with open(log, "a") as fh:
        fh.write("o\rthree\nfou")
    tail.read()
    assert got == ["one", "two", "three"]
    tail.stop()  # the partial last line too
    assert got == ["one", "two", "three", "fou"]


def test_following_a_run_says_where_it_is_at_most_once_per_period(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    lines: list[str] = []
    with following(log, lines.append, "tfidf-logreg", every=0.2) as run:
        log.write_text("Executing task 'split'\n")
        threading.Event().wait(0.9)
    assert run.stage == "split"
    assert 2 <= len(lines) <= 5, lines
    assert lines[-1].startswith("  training run") and "split (splitting" in lines[-1]


def test_a_step_that_says_nothing_for_a_period_gets_a_line_of_its_own() -> None:
    lines: list[str] = []
    with never_silent(lines.append, "rolling out v3", every=0.3) as say:
        say("step 1/2")
        threading.Event().wait(0.2)
        say("step 2/2")  # said: no line of its own yet
        threading.Event().wait(0.2)
        assert lines == ["step 1/2", "step 2/2"]
        threading.Event().wait(0.5)
    assert lines[:2] == ["step 1/2", "step 2/2"] and len(lines) in (3, 4), lines
    assert lines[2].startswith("  rolling out v3: ")


def test_a_wait_says_what_it_waits_for_and_what_it_has_seen() -> None:
    now = Clock()
    lines: list[str] = []
    calls = {"n": 0}

    def check() -> Any:
        calls["n"] += 1
        return "found" if calls["n"] == 26 else None

    def sleep(seconds: float) -> None:
        now.t += seconds

    got = wait_for(
        check,
        60,
        "the labelling queue",
        progress=lines.append,
        seen=lambda: f"{calls['n']} looks",
        sleep=sleep,
        now=now,
    )
    assert got == "found"
    assert lines == [
        "  waiting for the labelling queue: 10s; 11 looks",
        "  waiting for the labelling queue: 20s; 21 looks",
    ]


def test_a_wait_that_times_out_says_for_what() -> None:
    now = Clock()
    lines: list[str] = []

    def sleep(seconds: float) -> None:
        now.t += seconds

    with pytest.raises(StackError, match="timed out after 25s waiting for drift"):
        wait_for(lambda: None, 25, "drift", progress=lines.append, sleep=sleep, now=now)
    assert lines == ["  waiting for drift: 10s", "  waiting for drift: 20s"]


# ------------------------------------------------------------------------------ annotators
class FakeStudio:
    """Label Studio's task lists as `/api/tasks` pages them (by id), and annotations."""

    url = "http://studio"

    def __init__(self) -> None:
        self.tasks: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        self.annotated: list[tuple[int, str, int | None]] = []

    def add(self, project: int, pid: str, text: str) -> None:
        n = sum(len(t) for t in self.tasks.values()) + 1
        self.tasks[project].append({"id": n, "data": {"prediction_id": pid, "text": text}})

    def projects(self, name: str) -> dict[str, int]:
        return {"queue": 1, "evaluation": 2}

    def ensure_user(self, email: str) -> int:
        return 7

    def task_count(self, project: int) -> int:
        return len(self.tasks[project])

    def call(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        start = (params["page"] - 1) * params["page_size"]
        return {"tasks": self.tasks[params["project"]][start : start + params["page_size"]]}

    def annotate(self, task: int, label: str, user: int | None = None) -> dict[str, Any]:
        self.annotated.append((task, label, user))
        return {}


def test_studio_annotators_label_this_runs_tasks_queue_and_sample_in_turn_each_once() -> None:
    from sentiops.local.loop.annotators import StudioAnnotators

    studio = FakeStudio()
    truth = {f"text {i}": "positive" if i % 2 else "negative" for i in range(300)}
    annotators = StudioAnnotators(studio, truth, workers=1)
    annotators.PAGE = 7  # several pages, a partial one at the end
    annotators.labelling = True
    for i in range(20):
        annotators.on_response(f"text {i}", {}, f"p{i}")
    studio.add(2, "old-run", "text 299")  # a task of an earlier run: not theirs
    for i in range(12):
        studio.add(2, f"p{i}", f"text {i}")
    assert annotators.round() == 12
    assert [t for t, _, _ in studio.annotated] == list(range(13, 1, -1))  # newest first
    assert {user for _, _, user in studio.annotated} == {7}
    assert studio.annotated[0][1] == "positive"  # p11: text 11
    # new tasks: only they are read; the training queue's (in its order) and the sample's
    # (newest first) in turn; a prediction labelled in the sample is not labelled again when
    # it is queued
    for i in range(12, 18):
        studio.add(2, f"p{i}", f"text {i}")
    for i in (3, 19, 18):
        studio.add(1, f"p{i}", f"text {i}")
    queued = [{"id": "p3", "text": "text 3"}, {"id": "p19", "text": "text 19"}, {"id": "x"}]
    assert annotators.label_queue(queued) == 1
    assert annotators.round() == 8
    assert [t for t, _, _ in studio.annotated[12:]] == [21, 19, 22, 18, 17, 16, 15, 14]
    assert annotators.sent == 20 and annotators.round() == 0


def test_several_studio_annotators_at_once_label_each_task_once() -> None:
    from sentiops.local.loop.annotators import StudioAnnotators

    studio = FakeStudio()
    truth = {f"text {i}": "neutral" for i in range(200)}
    annotators = StudioAnnotators(studio, truth, workers=4)
    annotators.labelling = True
    for i in range(200):
        annotators.on_response(f"text {i}", {}, f"p{i}")
        studio.add(2 if i % 5 else 1, f"p{i}", f"text {i}")
    assert annotators.round() == 200
    assert sorted(t for t, _, _ in studio.annotated) == list(range(1, 201))


def test_studio_annotators_pause_while_the_receivers_round_is_overdue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    import httpx

    from sentiops.local.loop.annotators import StudioAnnotators

    last = {"at": time.time()}

    class Answer:
        def json(self) -> dict[str, Any]:
            return {"last": {"round": {"at": last["at"]}}}

    monkeypatch.setattr(httpx, "get", lambda url, timeout: Answer())
    studio = FakeStudio()
    annotators = StudioAnnotators(studio, {"a": "neutral"}, receiver="http://r", round_every=15)
    annotators.labelling = True
    annotators.on_response("a", {}, "p1")
    studio.add(2, "p1", "a")
    last["at"] = time.time() - 31  # two periods without a round: its push is held up
    assert annotators.round() == 0 and annotators.pending == 1
    annotators.max_pause = 0.0  # ... but not for ever
    assert annotators.round() == 1
    last["at"] = time.time()
    annotators.paused_since = None
    assert not annotators._receiver_overdue()


def test_a_pipeline_run_here_writes_its_log_while_other_threads_print_as_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sentiops.local.loop.run import _stdout_of_this_thread

    log = tmp_path / "run.log"
    # sys.stdout.write, not print: kfp.local swaps builtins.print for an indenting one while a
    # pipeline runs (kfp.local.logging_utils.indented_print), which another test may be doing
    with open(log, "a", buffering=1) as fh, _stdout_of_this_thread(fh):
        sys.stdout.write("task output\n")
        other = threading.Thread(target=lambda: sys.stdout.write("  training run 10s: train\n"))
        other.start()
        other.join()
        assert sys.stdout.encoding
    sys.stdout.write("after\n")
    assert log.read_text() == "task output\n"
    assert capsys.readouterr().out == "  training run 10s: train\nafter\n"
