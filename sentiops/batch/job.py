"""A whole batch job: plan it (or resume it), score every shard not yet finished, summarise.

    plan_job()      the plan from the model's manifest and the input files (every file checked
                    and counted first: a bad file fails before any work), written to the
                    output, or the output's own plan when a rerun may resume it
    score_shards()  the job's shards (all, or the given ids: one KFP pod's) not finished yet,
                    scored with the model loaded once; finished ones are skipped
    summarize()     every shard's done record added up into summary.json
    run()           the three in a row (`sentiops batch`)

Progress goes to an optional listener as `JobEvent`s; nothing here prints.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentiops.batch import inputs
from sentiops.batch.output import MANIFEST, SUMMARY, Output
from sentiops.batch.plan import BATCH_SIZE, KEEP_ALL, SHARD_ROWS, BatchPlan, InputFile, cut, loads
from sentiops.batch.score import OK, STATUSES, is_done, prob_column, score_shard, window_rows
from sentiops.config import Settings
from sentiops.errors import ConfigError, DataError, ModelError
from sentiops.estimation.performance import Tally, from_tally


@dataclass
class JobEvent:
    """`planned` (the plan, `rows` already done), `loaded` (the model is loaded: scoring
    starts), `rows` (rows just scored), `shard` (a shard finished: `record`; `skipped` when it
    was finished before)."""

    kind: str
    rows: int = 0
    plan: BatchPlan | None = None
    record: dict[str, Any] | None = None
    skipped: bool = False


Listener = Callable[[JobEvent], None]


@dataclass
class Result:
    plan: BatchPlan
    summary: dict[str, Any]
    scored: list[dict[str, Any]] = field(default_factory=list)  # done records of this run
    skipped: list[dict[str, Any]] = field(default_factory=list)  # finished before
    seconds: float = 0.0  # scoring, this run (the model loaded)
    load_seconds: float = 0.0

    @property
    def rows_scored(self) -> int:
        return sum(int(r["rows"]) for r in self.scored)

    @property
    def texts_per_sec(self) -> float:
        ok = sum(int(r["status"]["ok"]) for r in self.scored)
        return ok / self.seconds if self.seconds > 0 else 0.0


def _noop(event: JobEvent) -> None:
    return None


# ------------------------------------------------------------------------------ plan
def model_info(model: str, settings: Settings | None = None) -> dict[str, Any]:
    """What the plan records of the model, from its manifest (`model.json`) alone: a KFP plan
    step needs no weights; every scorer verifies the whole directory when it loads it."""
    from sentiops.models.modeldir import MANIFEST as MODEL_MANIFEST  # lazy: pulls cryptography
    from sentiops.models.modeldir import read_manifest  # lazy: pulls cryptography
    from sentiops.store.storage import S3Store, is_s3  # lazy: pulls minio

    if is_s3(model):
        with tempfile.TemporaryDirectory(prefix="sentiops-batch-model-") as tmp:
            uri = f"{str(model).rstrip('/')}/{MODEL_MANIFEST}"
            if S3Store(settings).stat(uri) is None:
                raise ModelError(
                    f"no SentiOps model at {model} (no {MODEL_MANIFEST})",
                    "pass --model a model directory or the s3:// prefix a model was pushed to",
                )
            S3Store(settings).download_file(uri, Path(tmp) / MODEL_MANIFEST)
            manifest = read_manifest(Path(tmp), verify=False)
    else:
        manifest = read_manifest(Path(model), verify=False)
    return {
        "uri": str(model),
        "version": str(manifest["version"]),
        "model_type": manifest.get("model_type"),
        "labels": list(manifest["labels"]),
        "serving_form": (manifest.get("serving") or {}).get("form"),
    }


def _options(
    text_column: str, keep: list[str] | None, shard_rows: int, max_chars: int | None
) -> dict[str, Any]:
    from sentiops.models import MAX_CHARS  # lazy: pulls cryptography

    max_chars = MAX_CHARS if max_chars is None else max_chars
    if max_chars < 1:
        raise ConfigError(f"max chars {max_chars} < 1", "pass --max-chars of at least 1")
    if shard_rows < 1:
        raise ConfigError(f"shard rows {shard_rows} < 1", "pass --shard-rows of at least 1")
    return {
        "text_column": text_column,
        "keep_option": list(keep or [KEEP_ALL]),
        "shard_rows": shard_rows,
        "max_chars": max_chars,
    }


def make_plan(
    model: dict[str, Any],
    input: str,
    files: list[InputFile],
    options: dict[str, Any],
    settings: Settings | None = None,
) -> BatchPlan:
    """The plan: every input file checked (text column, kept columns) and counted."""
    text_column, shard_rows = options["text_column"], options["shard_rows"]
    fetcher = inputs.Fetcher(settings)
    counted: list[InputFile] = []
    offsets: dict[int, list[int]] = {}
    kept: list[str] = []
    types: dict[str, str] | None = None
    try:
        for i, f in enumerate(files):
            local = fetcher.local(f)
            cols = inputs.columns(f, local)
            if i == 0:
                kept = inputs.resolve_keep(options["keep_option"], f, cols, text_column)
            inputs.check_columns(f, cols, text_column, kept)
            if f.format == "parquet":
                mine = inputs.parquet_types(f, local, text_column, kept)
                if types is not None and mine != types:
                    raise DataError(
                        f"{f.name}: the kept columns' types {mine} differ from {files[0].name}'s "
                        f"{types}",
                        "keep only columns of the same type in every file (--keep), or score "
                        "the files as separate jobs",
                    )
                types = mine
            f, offsets[i] = inputs.inspect(f, local, text_column, shard_rows)
            counted.append(f)
    finally:
        fetcher.close()
    return BatchPlan(
        model, str(input), counted, cut(counted, shard_rows, offsets), keep=kept, **options
    )


def plan_job(
    model: str,
    input: str,
    output: str,
    *,
    text_column: str = "text",
    keep: list[str] | None = None,
    fmt: str = "auto",
    shard_rows: int = SHARD_ROWS,
    max_chars: int | None = None,
    restart: bool = False,
    settings: Settings | None = None,
) -> BatchPlan:
    """The plan in effect for `output` (the KFP plan step): the output's own plan when this
    job agrees with it (the model version, the input files' sizes and stamps, the options:
    nothing is counted again), else a new plan written to an empty output. Anything else in
    the output is refused, never overwritten without `restart`."""
    options = _options(text_column, keep, shard_rows, max_chars)
    info = model_info(model, settings)
    files = inputs.find(input, fmt, settings, exclude=output)
    out = Output(output, settings)
    if restart:
        out.clear()
    existing = out.entries()
    raw = out.read_json(MANIFEST) if MANIFEST in existing else None
    if raw is None and existing:
        shown = ", ".join(sorted(existing)[:5])
        raise DataError(
            f"--output {out.uri} is not empty and holds no batch job ({shown})",
            "pass a new or empty directory or prefix (a batch job's own output resumes)",
        )
    if raw is not None:
        old = loads(json.dumps(raw), out.where(MANIFEST))
        changed = BatchPlan(info, str(input), files, [], **options).differences(old)
        if changed:
            raise DataError(
                f"--output {out.uri} holds a batch job that differs from this one: "
                + "; ".join(changed[:6]),
                "rerun with the same model, input and options to resume it, pass --restart to "
                "score everything again into it, or pass another --output",
            )
        out.remove_stale()
        return old
    plan = make_plan(info, input, files, options, settings)
    out.write_json(MANIFEST, plan.to_json())
    return plan


def read_plan(output: str, settings: Settings | None = None) -> BatchPlan:
    out = Output(output, settings)
    raw = out.read_json(MANIFEST)
    if raw is None:
        raise DataError(
            f"no batch job in {output} (no {MANIFEST})", "plan the job first (sentiops batch)"
        )
    return loads(json.dumps(raw), out.where(MANIFEST))


# ------------------------------------------------------------------------------ score
def load(model: str, plan: BatchPlan, settings: Settings | None = None) -> Any:
    """The model (checksums verified, the serving form), refused unless it is the plan's."""
    from sentiops.models import load_model  # lazy: pulls cryptography
    from sentiops.store.storage import local_model  # lazy: pulls minio

    loaded = load_model(local_model(model, settings))
    if loaded.version != plan.version:
        raise ModelError(
            f"model {model} is version {loaded.version}; the job was planned with {plan.version}",
            "score with the job's model, or pass --restart to score everything again",
        )
    return loaded


def score_shards(
    model: str,
    output: str,
    shard_ids: Iterable[int] | None = None,
    batch_size: int = BATCH_SIZE,
    settings: Settings | None = None,
    on_event: Listener = _noop,
    plan: BatchPlan | None = None,
) -> Result:
    """Score the job's shards (all, or `shard_ids`) that are not finished yet."""
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size} < 1", "pass --batch-size of at least 1")
    out = Output(output, settings)
    plan = plan or read_plan(output, settings)
    wanted = [plan.shard(i) for i in shard_ids] if shard_ids is not None else list(plan.shards)
    result = Result(plan, {})
    todo = []
    for shard in wanted:
        record = is_done(out, plan, shard)
        if record is None:
            todo.append(shard)
        else:
            result.skipped.append(record)
    on_event(JobEvent("planned", rows=sum(int(r["rows"]) for r in result.skipped), plan=plan))
    for record in result.skipped:
        on_event(JobEvent("shard", record=record, skipped=True))
    if not todo:
        return result
    started = time.perf_counter()
    loaded = load(model, plan, settings)
    result.load_seconds = time.perf_counter() - started
    on_event(JobEvent("loaded"))
    fetcher = inputs.Fetcher(settings)
    reader: inputs.Reader | None = None
    started = time.perf_counter()
    try:
        for shard in todo:
            f = plan.files[shard.file]
            if reader is None or reader.f != f:  # one reader per file: CSV parsed once
                reader = inputs.Reader(
                    f, fetcher.local(f), plan.text_column, plan.keep, window_rows(batch_size)
                )
            record = score_shard(
                loaded,
                plan,
                shard,
                out,
                reader,
                batch_size,
                lambda n: on_event(JobEvent("rows", rows=n)),
            )
            result.scored.append(record)
            on_event(JobEvent("shard", record=record))
    finally:
        fetcher.close()
        result.seconds = time.perf_counter() - started
    return result


# ------------------------------------------------------------------------------ summary
def summarize(
    output: str, settings: Settings | None = None, plan: BatchPlan | None = None
) -> dict[str, Any]:
    """Every shard's done record added up (and checked: a missing or incomplete shard fails
    with its name), written to summary.json."""
    out = Output(output, settings)
    plan = plan or read_plan(output, settings)
    records, missing = [], []
    for shard in plan.shards:
        record = is_done(out, plan, shard)
        if record is None:
            missing.append(shard.name)
        else:
            records.append(record)
    if missing:
        raise DataError(
            f"{len(missing)} of {len(plan.shards)} shards are not finished: "
            + ", ".join(missing[:8])
            + (" ..." if len(missing) > 8 else ""),
            "run the job again (the same command): finished shards are skipped",
        )
    status = dict.fromkeys(STATUSES, 0)
    labels = dict.fromkeys(plan.labels, 0)
    for r in records:
        for k, v in r["status"].items():
            status[k] = status.get(k, 0) + int(v)
        for k, v in r["labels"].items():
            labels[k] = labels.get(k, 0) + int(v)
    seconds = sum(float(r["seconds"]) for r in records)
    summary = {
        "model": plan.model,
        "input": plan.input,
        "output": out.uri,
        "rows": plan.rows,
        "shards": len(plan.shards),
        "files": [
            {
                "name": f.name,
                "rows": f.rows,
                "malformed": f.malformed,
                "malformed_examples": list(f.malformed_examples),
            }
            for f in plan.files
        ],
        "status": status,
        "labels": labels,
        "malformed": sum(f.malformed for f in plan.files),
        "shard_seconds": round(seconds, 3),
        "shard_cpu_seconds": round(sum(float(r.get("cpu_seconds", 0)) for r in records), 3),
        "texts_per_sec_per_scorer": round(status["ok"] / seconds, 1) if seconds > 0 else 0.0,
        "data": out.where("shards/"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    summary["estimate"] = estimate_job(out, plan)
    out.write_json(SUMMARY, summary)
    return summary


def estimate_job(out: Output, plan: BatchPlan) -> dict[str, Any]:
    """The job's performance estimated without labels (`sentiops.estimation.performance`)
    from the served, calibrated probabilities of its `ok` rows, shard by shard (each shard's
    sums added up, only the probability columns read): accuracy, per-class recall and
    macro-F1 with 95 % intervals. It assumes p(label | text) is the model's validation data's;
    on another domain it is too high (docs/estimation.md)."""
    import pyarrow.parquet as pq

    columns = [prob_column(lab) for lab in plan.labels]
    tally = Tally(tuple(plan.labels))
    for shard in plan.shards:
        rel = out.shard_path(shard.name)
        with tempfile.TemporaryDirectory(prefix="sentiops-batch-") as tmp:
            local = Path(out.where(rel))
            if out.s3:
                local = Path(tmp) / "shard.parquet"
                out.store.download_file(out.where(rel), local)
            table = pq.read_table(local, columns=["status", *columns]).to_pandas()
        ok = table[table["status"] == OK]
        if len(ok):
            tally = tally + Tally.of(ok[columns].to_numpy(dtype="float64"), plan.labels)
    est = from_tally(tally)
    return {
        "rows": est.n,
        "accuracy": est.accuracy.to_dict(),
        "macro_f1": est.macro_f1.to_dict(),
        "recall": {k: v.to_dict() for k, v in est.recall.items()},
        "expected_support": {k: round(v, 1) for k, v in est.expected_support.items()},
        "assumes": "calibrated probabilities and p(label | text) as on validation",
    }


def run(
    model: str,
    input: str,
    output: str,
    *,
    text_column: str = "text",
    keep: list[str] | None = None,
    fmt: str = "auto",
    shard_rows: int = SHARD_ROWS,
    batch_size: int = BATCH_SIZE,
    max_chars: int | None = None,
    restart: bool = False,
    settings: Settings | None = None,
    on_event: Listener = _noop,
) -> Result:
    """Plan (or resume), score every unfinished shard, summarise."""
    plan = plan_job(
        model,
        input,
        output,
        text_column=text_column,
        keep=keep,
        fmt=fmt,
        shard_rows=shard_rows,
        max_chars=max_chars,
        restart=restart,
        settings=settings,
    )
    result = score_shards(model, output, None, batch_size, settings, on_event, plan)
    result.summary = summarize(output, settings, plan)
    return result
