"""Persistent drift -> labelling queue -> retraining.

Retraining on drift only helps with new labelled data to learn from. When K consecutive windows
drift, their texts go to the labelling queue in the store (most uncertain first: smallest margin
between the top two probabilities), except the predictions of the random evaluation sample (the
`sample` decision stored with every logged prediction): those are labelled as a sample, never
chosen for their uncertainty, so their labels stay an unbiased estimate of live accuracy. When
labelled data written since the drift began exists in `<store>/labels/` (at least `min_labels`
rows), a retraining run is triggered whose training data is the original datasets plus those
label files, unless the last trigger is within the cooldown, a run is still active or the
poisoning guard (`sentiops.feedback.live.review_burst`) holds the labels for review. Every
decision is a metric (sentiops_retrain_triggers_total{outcome, reason}) and a log line; every
trigger is a JSON record in `<store>/retrain/triggers/` (which also carries the cooldown over
restarts and replicas, and names the tokens whose labels it used). A held burst is a JSON record
in `<store>/retrain/held/` (one per model version and drift episode, rewritten as labels arrive:
the files, every check, why); a person who looked releases it by moving that record to
`<store>/retrain/released/` (same name): its files then pass without review.

Adapters: `KfpTrigger` (a cluster: `kfp.Client`, the compiled pipeline shipped in the package,
active = a run of the experiment in PENDING/RUNNING/PAUSED/CANCELING) and `CommandTrigger`
(locally: a configured command, e.g. `sentiops pipeline run --local {data_args}`, active = the
process recorded in `<store>/retrain/active.json` is alive).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shlex
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from drift.predlog import COLUMNS
from sentiops import metrics
from sentiops.feedback.labels import RANDOM, feedback_prefix
from sentiops.feedback.labels import read_labels as standing_labels
from sentiops.local.processes import start_process
from sentiops.pipeline.kubeflow import COMPILED
from sentiops.store import layout

logger = logging.getLogger("sentiops.drift.retrain")
REASON = "drift_with_labels"
#: The outcome of a burst the poisoning guard holds for review (a person releases it).
HELD = "held_for_review"


class Trigger(Protocol):
    def active(self) -> str | None:
        """A description of the active run, or None."""

    def submit(self, datasets: list[str], reason: str) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------ adapters
class CommandTrigger:
    """Runs `command` (a template; `{data_args}` -> `--data X --data Y ...`, `{datasets}` ->
    comma-separated) as a child process; the run in progress is `<store>/retrain/active.json`."""

    def __init__(self, command: str, store: str, workdir: Path) -> None:
        self.command, self.store, self.workdir = command, store, Path(workdir)
        from sentiops.store.storage import is_s3  # lazy: pulls minio

        shared = not is_s3(store)  # a local store: every local sidecar sees the same marker
        self.marker = (
            Path(layout.join(store, layout.RETRAIN, "active.json"))
            if shared
            else self.workdir / "retrain-active.json"
        )
        self.process: Any = None

    def active(self) -> str | None:
        if not self.marker.exists():
            return None
        try:
            info = json.loads(self.marker.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError):
            return None
        if _alive(pid):
            return f"local run pid {pid} since {info.get('started')}"
        self.marker.unlink(missing_ok=True)  # stale: the process is gone
        return None

    def submit(self, datasets: list[str], reason: str) -> dict[str, Any]:

        data_args = " ".join(f"--data {shlex.quote(d)}" for d in datasets)
        line = self.command.format(data_args=data_args, datasets=",".join(datasets))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.process = start_process(
            f"retrain-{stamp}",
            shlex.split(line),
            self.workdir,
            {"SENTIOPS_RETRAIN_REASON": reason},
        )
        pid = self.process.proc.pid
        layout.put_json({"pid": pid, "started": stamp, "command": line}, str(self.marker))
        threading.Thread(target=self._reap, args=(pid,), daemon=True).start()
        return {"adapter": "command", "pid": pid, "command": line, "log": str(self.process.log)}

    def _reap(self, pid: int) -> None:
        code = self.process.proc.wait()
        logger.info("retraining run pid %d finished with exit code %s", pid, code)
        try:
            if json.loads(self.marker.read_text()).get("pid") == pid:
                self.marker.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # a zombie is not a run
        try:
            return stat.read_text().split(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return True
    return True


class KfpTrigger:
    """Submits the compiled pipeline (`sentiops.pipeline.kubeflow.COMPILED`) to KFP with
    `kfp.Client`."""

    ACTIVE = ("PENDING", "RUNNING", "PAUSED", "CANCELING")

    def __init__(
        self, host: str, experiment: str, namespace: str | None = None, client: Any = None
    ) -> None:
        self.host, self.experiment, self.namespace = host, experiment, namespace
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import kfp

            self._client = kfp.Client(host=self.host, namespace=self.namespace or "kubeflow")
        return self._client

    def active(self) -> str | None:
        try:
            exp = self.client.get_experiment(experiment_name=self.experiment)
        except Exception:  # noqa: BLE001 - no experiment yet: no run
            return None
        resp = self.client.list_runs(
            experiment_id=exp.experiment_id, page_size=100, sort_by="created_at desc"
        )
        for run in resp.runs or []:
            if str(run.state) in self.ACTIVE:
                return f"KFP run {run.run_id} ({run.state})"
        return None

    def submit(self, datasets: list[str], reason: str) -> dict[str, Any]:

        name = f"retrain-{reason}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        result = self.client.create_run_from_pipeline_package(
            str(COMPILED),
            arguments={"datasets": datasets},
            run_name=name,
            experiment_name=self.experiment,
            namespace=self.namespace,
        )
        return {"adapter": "kfp", "run_id": result.run_id, "run_name": name, "host": self.host}


# ------------------------------------------------------------------------------ policy
#: What the poisoning guard reads of a feedback part besides text, label and sample.
GUARD_COLUMNS = ("labelled_by", "predicted_label", "confidence")


def read_label_file(uri: str) -> Any:
    """One label file's rows (None if unreadable: reported, not counted); feedback parts keep
    who labelled (`labelled_by`), what the model had said (`predicted_label`) and how sure it
    was (`confidence`) for the poisoning guard."""
    from sentiops.data.datasets import read_table  # lazy: pulls pandas, pyarrow

    try:
        return read_table(uri, label_column="label", keep=GUARD_COLUMNS)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is reported, not counted
        logger.warning("labels: cannot read %s: %s", uri, str(exc).splitlines()[0])
        return None


def _parquet(uri: str, settings: Any, columns: list[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(layout.get_bytes(uri, settings)), columns=columns).to_pandas()


def _parquet_bytes(df: Any) -> bytes:
    import pyarrow as pa

    return layout.parquet_bytes(pa.Table.from_pandas(df, preserve_index=False))


def read_labels(files: list[layout.StoredFile], settings: Any = None) -> Any:
    """Every readable label row of `files` (see `read_label_file`)."""
    import pandas as pd

    frames = [f for f in (read_label_file(x.uri) for x in files) if f is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label"])


class Retrainer:
    def __init__(
        self,
        store: str,
        model_name: str,
        trigger: Trigger | None,
        datasets: list[str],
        cooldown: float,
        min_labels: int,
        *,
        storage_settings: Any = None,
        max_token_share: float = 1.0,
        max_excess: float = 0.3,
    ) -> None:
        self.store, self.model_name, self.trigger = store, model_name, trigger
        self.datasets, self.cooldown, self.min_labels = datasets, cooldown, min_labels
        self.max_token_share, self.max_excess = max_token_share, max_excess
        self.settings = storage_settings
        self.lock = threading.Lock()
        self.history: list[dict[str, Any]] = []
        # the poisoning guard's references: random-sample rows of label files (written once)
        self._sample_rows: dict[str, Any] = {}
        self._released: dict[str, list[str]] = {}  # released record -> the files it lets in

    def _outcome(self, outcome: str, message: str, **extra: Any) -> dict[str, Any]:
        metrics.RETRAIN_TRIGGERS.labels(self.model_name, outcome, REASON).inc()
        level = logging.WARNING if outcome in ("triggered", "failed", HELD) else logging.INFO
        logger.log(level, "retraining %s: %s", outcome, message)
        record = {"outcome": outcome, "message": message, **extra}
        self.history.append(record)
        return record

    def last_trigger(self) -> datetime | None:
        files = layout.list_files(
            layout.join(self.store, layout.RETRAIN, "triggers"), self.settings
        )
        return max((f.modified for f in files), default=None)

    def released(self) -> dict[str, str]:
        """label file -> the released record (`<store>/retrain/released/*.json`, a held record
        a person moved there) that lets it in without review."""
        out: dict[str, str] = {}
        folder = layout.join(self.store, layout.RETRAIN, layout.RELEASED)
        for f in layout.list_files(folder, self.settings):
            if not f.uri.endswith(".json"):
                continue
            if f.uri not in self._released:
                try:
                    record = json.loads(layout.get_bytes(f.uri, self.settings))
                    self._released[f.uri] = [str(x) for x in record["files"]]
                except (ValueError, KeyError, TypeError) as exc:
                    held = layout.join(self.store, layout.RETRAIN, layout.HELD)
                    logger.warning(
                        "released record %s is not a held record (%s): ignored; "
                        "move a file of %s there",
                        f.uri,
                        exc,
                        held,
                    )
                    continue
            out.update(dict.fromkeys(self._released[f.uri], f.uri))
        return out

    def earlier_sample(self, burst: set[str]) -> Any:
        """The random-sample labels of every label file outside `burst` (before the drift, or
        released): the guard's reference when the burst has too few of its own."""
        import pandas as pd

        frames = []
        for f in layout.label_files(self.store, settings=self.settings):
            if f.uri in burst:
                continue
            if f.uri not in self._sample_rows:
                rows = read_label_file(f.uri)
                keep = rows is not None and "sample" in rows.columns
                self._sample_rows[f.uri] = rows[rows["sample"] == RANDOM] if keep else None
            if self._sample_rows[f.uri] is not None:
                frames.append(self._sample_rows[f.uri])
        return pd.concat(frames, ignore_index=True) if frames else None

    def consider(self, version: str, drift_since: datetime, windows: int) -> dict[str, Any]:
        """Trigger a retraining run if labels for the drifting traffic exist, outside the
        cooldown, with no run active and the poisoning guard content. Never raises."""
        with self.lock:
            try:
                return self._consider(version, drift_since, windows)
            except Exception as exc:  # noqa: BLE001 - a failed trigger never stops the sidecar
                return self._outcome("failed", f"{type(exc).__name__}: {exc}")

    def _consider(self, version: str, drift_since: datetime, windows: int) -> dict[str, Any]:
        if self.trigger is None:
            return {"outcome": "disabled"}
        import pandas as pd

        from sentiops.feedback.live import review_burst  # lazy: pulls numpy

        files = layout.label_files(self.store, since=drift_since, settings=self.settings)
        frames = {f.uri: read_label_file(f.uri) for f in files}
        standing = self._as_they_stand(frames)
        if standing is not None:
            frames.update(standing[0])
        labels = [x for x in frames.values() if x is not None]
        rows = sum(len(x) for x in labels)
        if rows < self.min_labels:
            return self._outcome(
                "no_labels",
                f"model {version}: drift for {windows} windows since {drift_since:%H:%M:%S}, "
                f"but only {rows} labelled rows in {layout.join(self.store, layout.LABELS)} "
                f"since then (need {self.min_labels})",
            )
        last = self.last_trigger()
        now = datetime.now(UTC)
        if last is not None and now - last < timedelta(seconds=self.cooldown):
            return self._outcome(
                "cooldown",
                f"last trigger at {last:%Y-%m-%d %H:%M:%S}Z, cooldown {self.cooldown:.0f}s",
            )
        active = self.trigger.active()
        if active:
            return self._outcome("active_run", f"not starting another: {active}")
        released = self.released()
        burst = [u for u, x in frames.items() if x is not None and u not in released]
        review = review_burst(
            pd.concat([frames[u] for u in burst], ignore_index=True) if burst else None,
            self.earlier_sample(set(burst)),
            self.max_token_share,
            self.max_excess,
        )
        if review["hold"]:  # the poisoning guard: a person looks before anything learns it
            return self._hold(version, drift_since, now, burst, review)
        snapshot = standing[1] if standing is not None else None
        datasets = [*self.datasets, *self._training_files(files, snapshot, now)]
        reason = (
            f"model {version}: drift for {windows} consecutive windows since "
            f"{drift_since:%Y-%m-%d %H:%M:%S}Z; {rows} new labelled rows in {len(files)} files"
        )
        run = self.trigger.submit(datasets, REASON)
        used = review_burst(pd.concat(labels, ignore_index=True))["tokens"]
        record = {
            "time": now.isoformat(),
            "model_name": self.model_name,
            "model_version": version,
            "reason": REASON,
            "message": reason,
            "datasets": datasets,
            "labelled_rows": rows,
            "labels_by_token": used,
            "released": sorted({released[u] for u in frames if u in released}),
            "run": run,
        }
        layout.put_json(record, layout.trigger_record(self.store, now), self.settings)
        return self._outcome("triggered", f"{reason}; run {run}", record=record)

    def _as_they_stand(self, frames: dict[str, Any]) -> tuple[dict[str, Any], Any] | None:
        """The burst's feedback parts as their labels stand now: a label revised since (in
        Label Studio) counts with its latest revision, a withdrawn one not at all
        (`labels.read_labels`: every feedback part, so a revision or withdrawal of an earlier
        label counts too), each id once, under the part that holds its first label (the part a
        released record names). Returned in `read_label_file`'s columns per part, with the
        standing labels themselves (every column); None without feedback parts. Other label
        files (a CSV a team dropped in) stay as they were read."""

        feedback = feedback_prefix(self.store)
        mine = [u for u, x in frames.items() if x is not None and u.startswith(feedback)]
        if not mine:
            return None
        owner: dict[str, str] = {}  # id -> the first burst part that names it
        for u in mine:
            for i in _parquet(u, self.settings, ["id"])["id"]:
                owner.setdefault(str(i), u)
        standing = standing_labels(self.store, self.settings)
        burst = standing[standing["id"].astype(str).isin(owner)].reset_index(drop=True)
        keep = [c for c in ("text", "label", "sample", *GUARD_COLUMNS) if c in burst.columns]
        part = burst["id"].astype(str).map(owner)
        return {u: burst.loc[part == u, keep].reset_index(drop=True) for u in mine}, burst

    def _training_files(
        self, files: list[layout.StoredFile], standing: Any, now: datetime
    ) -> list[str]:
        """What the run trains on besides the original datasets: one snapshot of the burst's
        feedback labels as they stand (written to <store>/retrain/snapshots/), and every other
        label file as it is."""

        feedback = feedback_prefix(self.store)
        out = [f.uri for f in files if not f.uri.startswith(feedback)]
        if standing is not None and len(standing):
            uri = layout.label_snapshot(self.store, now)
            layout.put_bytes(_parquet_bytes(standing), uri, self.settings)
            out.insert(0, uri)
        return out

    def _hold(
        self,
        version: str,
        drift_since: datetime,
        now: datetime,
        files: list[str],
        review: dict[str, Any],
    ) -> dict[str, Any]:
        """Record a held burst (one record per model version and drift episode, rewritten as
        the burst grows) and say how to release it."""
        uri = layout.held_record(self.store, version, drift_since)
        to = layout.held_record(self.store, version, drift_since, released=True)
        release = (
            f"look at the labels of the files listed; to train on them, move {uri} to "
            f"{to}; to drop them, delete those label files"
        )
        record = {
            "time": now.isoformat(),
            "model_version": version,
            "drift_since": drift_since.isoformat(),
            "files": files,
            **review,
            "release": release,
        }
        layout.put_json(record, uri, self.settings)
        message = f"{'; '.join(review['hold'])} (record {uri}; {release})"
        return self._outcome(HELD, message, record=record)


def make_trigger(settings: Any) -> Trigger | None:
    if not settings.retrain_enabled:
        return None
    if settings.retrain_mode == "command":
        if not settings.retrain_command:
            raise SystemExit("error: SENTIOPS_RETRAIN_MODE=command needs SENTIOPS_RETRAIN_COMMAND")
        return CommandTrigger(settings.retrain_command, settings.store, settings.workdir)
    if settings.retrain_mode == "kfp":
        if not settings.kfp_host:
            raise SystemExit("error: SENTIOPS_RETRAIN_MODE=kfp needs SENTIOPS_KFP_HOST")
        return KfpTrigger(settings.kfp_host, settings.kfp_experiment)
    print(f"error: unknown SENTIOPS_RETRAIN_MODE {settings.retrain_mode!r}", file=sys.stderr)
    raise SystemExit(2)


def uncertainty_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most uncertain first: the smallest margin between the top two probabilities."""
    out = []
    for r in rows:
        probs = sorted((float(p) for p in r.get("probabilities") or []), reverse=True)
        margin = probs[0] - probs[1] if len(probs) > 1 else (probs[0] if probs else 1.0)
        out.append({**r, "margin": margin})
    out.sort(key=lambda r: r["margin"])
    for rank, r in enumerate(out):
        r["rank"] = rank
    return out


def write_labelling(
    store: str,
    version: str,
    rows: list[dict[str, Any]],
    window_id: str,
    p_value: float,
    limit: int,
    settings: Any = None,
    estimated: float | None = None,
) -> str:
    """Queue a drifting window's texts for labelling, most uncertain first (never the random
    sample), with the window's p-value and its estimated accuracy (`estimated`, from the
    calibrated probabilities: a labelling tool takes the most harmful drift first by it)."""
    import pyarrow as pa

    rows = [r for r in rows if r.get("sample") != RANDOM]  # the sample is labelled as drawn
    ordered = uncertainty_order(rows)[:limit]
    now = datetime.now(UTC)
    table = pa.Table.from_pylist(
        [
            {
                **{c: r.get(c) for c in COLUMNS},
                "margin": r["margin"],
                "rank": r["rank"],
                "window_id": window_id,
                "window_p_value": p_value,
                "window_estimated_accuracy": estimated,
                "queued_at": now,
            }
            for r in ordered
        ]
    )
    uri = layout.labelling_part(store, version, now)
    layout.put_bytes(layout.parquet_bytes(table), uri, settings)
    metrics.LABELLING_QUEUED.labels(str(rows[0].get("model_name") if rows else ""), version).inc(
        len(ordered)
    )
    return uri
