"""A batch job's plan: what is scored with which model, cut into shards, and the manifest that
lets a rerun resume.

A shard is a fixed range of rows of one input file (`shard_rows` rows; a file's last shard is
shorter), so the same input and settings always give the same shards: a rerun, a KFP pod or a
second machine finds the same `part-NNNNN` for the same rows. The manifest (`manifest.json` in
the output) records the model version, every input file with its size and stamp (mtime or
ETag) and row count, and the shards; a rerun into the same output compares its own plan with
it and resumes only when nothing that changes the output differs.

This module imports nothing heavy (the CLI reads its defaults at start-up).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sentiops.errors import ConfigError, DataError

FORMAT_VERSION = 1
KIND = "sentiops-batch"
#: Rows per shard: the unit of resumption (and one KFP pod's work on a cluster).
SHARD_ROWS = 50_000
#: Texts per forward pass (the predictor's forward batch).
BATCH_SIZE = 64
#: Batches read, sorted by length and scored together: the most rows held in memory at once.
SORT_WINDOW = 16
#: Input formats and the file names each is found by in a directory or under a prefix.
FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv", ".csv.gz", ".tsv", ".tsv.gz"),
    "jsonl": (".jsonl", ".jsonl.gz", ".ndjson", ".json"),
    "parquet": (".parquet", ".pq"),
}
#: `keep` values: every input column (the default), or none but the text.
KEEP_ALL, KEEP_NONE = "all", "none"


@dataclass(frozen=True)
class InputFile:
    """One input file: `name` is its path relative to the input (the output's `file` column);
    `stamp` is its mtime (local) or ETag (S3): a changed file is a different input."""

    uri: str
    name: str
    format: str
    size: int
    stamp: str
    rows: int = 0
    #: CSV rows with the wrong number of fields: skipped (row numbers count the rows read)
    malformed: int = 0
    malformed_examples: tuple[str, ...] = ()

    @property
    def delimiter(self) -> str:
        return "\t" if self.name.lower().endswith((".tsv", ".tsv.gz")) else ","


@dataclass(frozen=True)
class Shard:
    """Rows [start, stop) of input file number `file`; `offset` is the byte offset of row
    `start` where the format can seek to it (JSONL), else None (streamed up to it)."""

    id: int
    file: int
    start: int
    stop: int
    offset: int | None = None

    @property
    def name(self) -> str:
        return f"part-{self.id:05d}"

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass
class BatchPlan:
    model: dict[str, Any]  # uri, version, model_type, labels
    input: str
    files: list[InputFile]
    shards: list[Shard]
    text_column: str = "text"
    keep: list[str] = field(default_factory=list)  # input columns carried to the output
    keep_option: list[str] = field(default_factory=lambda: [KEEP_ALL])  # --keep as given
    shard_rows: int = SHARD_ROWS
    max_chars: int = 5000
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.model["labels"]]

    @property
    def version(self) -> str:
        return str(self.model["version"])

    def shard(self, shard_id: int) -> Shard:
        if not 0 <= shard_id < len(self.shards):
            raise ConfigError(
                f"shard {shard_id} does not exist: the job has shards 0..{len(self.shards) - 1}",
                "pass a shard id from the plan (manifest.json)",
            )
        return self.shards[shard_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "input": self.input,
            "text_column": self.text_column,
            "keep": self.keep,
            "keep_option": self.keep_option,
            "shard_rows": self.shard_rows,
            "max_chars": self.max_chars,
            "rows": self.rows,
            "created_at": self.created_at,
            "files": [
                asdict(f) | {"malformed_examples": list(f.malformed_examples)} for f in self.files
            ],
            "shards": [asdict(s) for s in self.shards],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: str = "manifest.json") -> BatchPlan:
        if raw.get("kind") != KIND or raw.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{where} is not a SentiOps batch manifest (format {FORMAT_VERSION})",
                "point --output at a new directory or prefix, or at a batch job's output",
            )
        files = [
            InputFile(**(f | {"malformed_examples": tuple(f.get("malformed_examples", ()))}))
            for f in raw["files"]
        ]
        return cls(
            model=raw["model"],
            input=raw["input"],
            files=files,
            shards=[Shard(**s) for s in raw["shards"]],
            text_column=raw["text_column"],
            keep=list(raw["keep"]),
            keep_option=list(raw["keep_option"]),
            shard_rows=int(raw["shard_rows"]),
            max_chars=int(raw["max_chars"]),
            created_at=raw.get("created_at", ""),
        )

    def differences(self, other: BatchPlan) -> list[str]:
        """What differs between two plans in a way that changes the output (the model
        version, the input files, the options); empty when a rerun may resume `other`. Rows
        are not compared: `self` may be a plan whose files are found but not yet counted."""
        found = []
        if self.version != other.version:
            found.append(f"model version {other.version} -> {self.version}")
        for key in ("text_column", "keep_option", "shard_rows", "max_chars"):
            if getattr(self, key) != getattr(other, key):
                found.append(f"{key} {getattr(other, key)!r} -> {getattr(self, key)!r}")
        mine = {f.name: f for f in self.files}
        theirs = {f.name: f for f in other.files}
        for name in sorted(set(mine) ^ set(theirs)):
            found.append(f"input file {name} {'added' if name in mine else 'gone'}")
        for name in sorted(set(mine) & set(theirs)):
            a, b = theirs[name], mine[name]
            if (a.size, a.stamp, a.format) != (b.size, b.stamp, b.format):
                found.append(f"input file {name} changed (size {a.size} -> {b.size})")
        return found


def loads(text: str, where: str) -> BatchPlan:
    try:
        return BatchPlan.from_json(json.loads(text), where)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{where} cannot be read: {type(exc).__name__}: {exc}",
            "it was altered or truncated; pass --restart to score everything again",
        ) from exc


def cut(
    files: list[InputFile], shard_rows: int, offsets: dict[int, list[int]] | None = None
) -> list[Shard]:
    """Every file's rows in shards of `shard_rows` (files in order, shard ids running on);
    `offsets[i]` are the byte offsets of rows 0, shard_rows, 2*shard_rows, ... of file i."""
    if shard_rows < 1:
        raise ConfigError(f"shard rows {shard_rows} < 1", "pass --shard-rows of at least 1")
    shards: list[Shard] = []
    for i, f in enumerate(files):
        known = (offsets or {}).get(i) or []
        for k, start in enumerate(range(0, f.rows, shard_rows)):
            offset = known[k] if k < len(known) else None
            shards.append(Shard(len(shards), i, start, min(start + shard_rows, f.rows), offset))
    return shards
