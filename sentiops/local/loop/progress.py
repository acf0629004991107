"""What the loop says while it waits, so the story is never silent for more than ~10 s.

- `TrainingLog`: the state of a training run read from its log as it grows (kfp.local's task
  lines, the transformer's tqdm bar, its epoch summaries, the gate's verdict), told as one
  line (`summary`): which stage runs, for how long, and for the transformer the step, rate,
  ETA, epoch and loss.
- `LogTail`: a thread feeding a growing file's new lines to a callback (`tail -f`).
- `following`: a training run in this process followed while it runs: its log tailed, one
  summary line every ~10 s.
- `never_silent`: a step that tells its own progress (a rollout), with a line of its own
  whenever the step has said nothing for ~10 s.
- `wait_for`: a wait that says what it waits for, and every ~10 s how long it has waited and
  what it has seen so far.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentiops.errors import StackError

#: Seconds between two lines of a wait or a training run.
EVERY = 10.0

#: What each task of the training pipeline does (its KFP component names).
STAGES = {
    "ingest": "reading the datasets",
    "validate": "validating the data",
    "split": "splitting train / validation / test",
    "train": "training",
    "evaluate": "evaluating on the test split",
    "gate": "the promotion gate: challenger vs champion",
    "register": "registering the model",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_START = re.compile(r"Executing task '([\w-]+)'")
_TASK_DONE = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
_PIPELINE_DONE = re.compile(r"Pipeline '[\w-]+' finished with status (\w+)")
_BAR = re.compile(
    r"(?P<desc>[\w -]+?):\s+(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s+"
    r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+),\s*(?P<rate>[^,\]]+)(?:,\s*(?P<post>[^\]]*))?\]"
)
_EPOCH = re.compile(r"^\s*epoch (\d+): (.+)$")
_GATE = re.compile(r"# Promotion gate: (\w+)")


def clock(seconds: float) -> str:
    """Seconds as `1m05s` (or `42s`)."""
    s = int(round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _seconds(text: str) -> float | None:
    """tqdm's `01:17` / `1:02:03` as seconds; None for `?`."""
    if "?" in text:
        return None
    total = 0.0
    for part in text.split(":"):
        total = total * 60 + float(part)
    return total


@dataclass
class Bar:
    """The last tqdm line seen: `n` of `total` steps, at `rate`, `eta` seconds left."""

    desc: str
    n: int
    total: int
    rate: str
    eta: float | None
    post: dict[str, str]
    seen: float  # when it was read (monotonic)


@dataclass
class TrainingLog:
    """A training run as its log tells it, line by line (`feed`)."""

    model: str = ""  # the model type trained, when known
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    stage: str | None = None
    stage_started: float = 0.0
    done: list[str] = field(default_factory=list)
    bar: Bar | None = None
    epoch: str | None = None
    gate: str | None = None
    finished: str | None = None  # the pipeline's final status
    failed: str | None = None  # the task that failed

    def __post_init__(self) -> None:
        self.started = self.started or self.clock()

    def feed(self, line: str) -> None:
        """One line of the log (colours and carriage returns are fine)."""
        for part in _ANSI.sub("", line).split("\r"):
            self._one(part)

    def _one(self, line: str) -> None:
        now = self.clock()
        if m := _TASK_START.search(line):
            self.stage, self.stage_started, self.bar = m.group(1), now, None
        elif m := _TASK_DONE.search(line):
            if m.group(2) == "SUCCESS":
                self.done.append(m.group(1))
            else:
                self.failed = m.group(1)
            if self.stage == m.group(1):
                self.stage = None
        elif m := _PIPELINE_DONE.search(line):
            self.finished = m.group(1)
        elif m := _BAR.search(line):
            post = dict(kv.split("=", 1) for kv in (m.group("post") or "").split(", ") if "=" in kv)
            self.bar = Bar(
                m.group("desc").strip(),
                int(m.group("n")),
                int(m.group("total")),
                m.group("rate").strip(),
                _seconds(m.group("eta")),
                post,
                now,
            )
        elif m := _EPOCH.match(line):
            self.epoch = f"epoch {m.group(1)}: {m.group(2).strip()}"
        elif m := _GATE.search(line):
            self.gate = m.group(1)

    def summary(self) -> str:
        """Where the run is, in one line."""
        now = self.clock()
        head = f"training run {clock(now - self.started)}"
        if self.finished:
            return f"{head}: the pipeline finished ({self.finished})"
        if self.failed:
            return f"{head}: task {self.failed} failed"
        if self.stage is None:
            after = f" (done: {', '.join(self.done)})" if self.done else ""
            return f"{head}: starting the next task{after}" if self.done else f"{head}: starting"
        if self.bar is not None:  # the bar says how far (one line of at most ~110 characters)
            line = f"{head}: {self._bar(now)}"
        else:
            what = STAGES.get(self.stage, "")
            line = f"{head}: {self.stage}" + (f" ({what})" if what else "")
            line += f", {clock(now - self.stage_started)} in it"
            if self.stage == "train":
                line += (
                    "; fitting TF-IDF + logistic regression (no steps to count)"
                    if self.model.startswith("tfidf")
                    else "; loading the model and the data (no step done yet)"
                )
        if self.epoch and self.stage == "train":
            line += f"; last {self.epoch}"
        if self.gate and self.stage in ("gate", "register"):
            line += f"; gate {self.gate}"
        return line

    def _bar(self, now: float) -> str:
        b = self.bar
        assert b is not None
        pct = 100 * b.n / b.total if b.total else 0
        text = f"{b.desc} step {b.n}/{b.total} ({pct:.0f} %), {b.rate.replace('step/s', ' step/s')}"
        if b.eta is not None:
            text += f", ETA {clock(max(0.0, b.eta - (now - b.seen)))}"
        text += "".join(f", {k} {v}" for k, v in b.post.items())
        return text


class LogTail(threading.Thread):
    """Feeds each new line of `path` (it may not exist yet) to `on_line`, as `tail -f`
    does, until `stop()`; a last partial line is fed when it stops."""

    def __init__(self, path: Path, on_line: Callable[[str], Any], poll: float = 0.5) -> None:
        super().__init__(daemon=True, name=f"tail-{Path(path).name}")
        self.path, self.on_line, self.poll = Path(path), on_line, poll
        self.stopped = threading.Event()
        self.offset = 0
        self.partial = ""

    def read(self) -> None:
        """Feed what was added since the last read."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        self.offset += len(chunk)
        text = self.partial + chunk.decode("utf-8", errors="replace").replace("\r", "\n")
        *lines, self.partial = text.split("\n")
        for line in lines:
            self.on_line(line)

    def run(self) -> None:
        while not self.stopped.wait(self.poll):
            self.read()

    def stop(self) -> None:
        self.stopped.set()
        if self.ident is not None:  # started
            self.join(5)
        self.read()
        if self.partial:
            self.on_line(self.partial)
            self.partial = ""


class Ticker(threading.Thread):
    """Calls `tick()` every `every` seconds until `stop()`."""

    def __init__(self, tick: Callable[[], Any], every: float = EVERY) -> None:
        super().__init__(daemon=True, name="ticker")
        self.tick, self.every = tick, every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            self.tick()

    def stop(self) -> None:
        self.stopped.set()
        if self.ident is not None:  # started
            self.join(5)


@contextlib.contextmanager
def following(
    log: Path, progress: Callable[[str], Any], model: str = "", every: float = EVERY
) -> Iterator[TrainingLog]:
    """While the block runs a training run (of a `model` type) writing `log`: its log
    followed, one summary line every `every` seconds."""
    state = TrainingLog(model)
    tail = LogTail(log, state.feed)
    ticker = Ticker(lambda: progress("  " + state.summary()), every)
    tail.start()
    ticker.start()
    try:
        yield state
    finally:
        ticker.stop()
        tail.stop()


@contextlib.contextmanager
def never_silent(
    progress: Callable[[str], Any], what: str, every: float = EVERY
) -> Iterator[Callable[[str], Any]]:
    """A `progress` for the block that, whenever nothing was said for `every` seconds, says
    that `what` goes on (and for how long)."""
    started = time.monotonic()
    last = [started]
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            last[0] = time.monotonic()
        progress(line)

    def tick() -> None:
        now = time.monotonic()
        with lock:
            if now - last[0] < every:
                return
            last[0] = now
        progress(f"  {what}: {clock(now - started)}")

    ticker = Ticker(tick, min(1.0, every / 4))
    ticker.start()
    try:
        yield say
    finally:
        ticker.stop()


def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    progress: Callable[[str], Any] | None = None,
    seen: Callable[[], str] | None = None,
    every: float = EVERY,
    poll: float = 1.0,
    sleep: Callable[[float], Any] = time.sleep,
    now: Callable[[], float] = time.monotonic,
) -> Any:
    """`check()` every `poll` seconds until it returns something true (returned), for at most
    `timeout` seconds (then StackError). Every `every` seconds `progress` hears what it waits
    for, for how long, and `seen()`: what it has seen so far."""
    started = now()
    said = started
    while True:
        value = check()
        if value:
            return value
        t = now()
        if t - started >= timeout:
            break
        if progress is not None and t - said >= every:
            said = t
            got = seen() if seen is not None else ""
            progress(f"  waiting for {what}: {clock(t - started)}" + (f"; {got}" if got else ""))
        sleep(poll)
    raise StackError(
        f"timed out after {timeout:.0f}s waiting for {what}",
        "the logs of every server are under the loop's workdir",
    )
