"""The input of a batch job: files found, checked, counted and streamed in bounded chunks.

    find()     a file, a directory or an s3:// prefix -> its input files (CSV / TSV / JSONL /
               Parquet, gzip for CSV and JSONL), in name order
    inspect()  one file's columns checked (the text column, the kept columns), its rows
               counted in one streaming pass (CSV: Arrow's streaming reader; JSONL: lines;
               Parquet: the footer), and the byte offset of every shard's first row (JSONL)
    Reader     rows [start, stop) of a file as chunks of at most `chunk_rows` rows, shard after
               shard in one pass: nothing holds more than one Arrow block (CSV: 1 MB) or row
               group (Parquet) plus one chunk

An s3:// input file is downloaded to local disk first (its sha256 checked, `sentiops.store`)
and streamed from there; `Fetcher` keeps one downloaded file at a time.

Every CSV column is read as bytes and decoded here, so a row that is not UTF-8 is one bad row,
not a failed job. CSV rows with the wrong number of fields are skipped by the parser and
counted (`InputFile.malformed`, with examples); row numbers count the rows that were read.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from sentiops.batch.plan import FORMATS, KEEP_ALL, KEEP_NONE, InputFile
from sentiops.config import Settings
from sentiops.errors import ConfigError, DataError

#: Bytes the CSV reader parses at a time (one Arrow block is the most CSV held in memory).
CSV_BLOCK_BYTES = 1 << 20
#: Status of rows the reader could not make a text of (see `sentiops.batch.score`).
NOT_TEXT, UNREADABLE = "not_text", "unreadable"
_EXAMPLES = 3


@dataclass
class Chunk:
    """Consecutive rows of one file, starting at row `first_row`.

    `texts[i]` is the row's text (a str), None when it has none (null, missing), or another
    value when it is not text; `problems[i]` = (status, message) for rows the reader could not
    read; `kept` holds the kept input columns as Arrow arrays."""

    first_row: int
    texts: list[Any]
    problems: dict[int, tuple[str, str]] = field(default_factory=dict)
    kept: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.texts)


# ------------------------------------------------------------------------------ finding
def format_of(name: str, fmt: str = "auto") -> str | None:
    """The format of a file name (None: not an input file), or `fmt` when one is given."""
    if fmt != "auto":
        return fmt
    lower = name.lower()
    for kind, suffixes in FORMATS.items():
        if lower.endswith(suffixes):
            return kind
    return None


def _hidden(rel: str) -> bool:
    return any(part.startswith((".", "_")) for part in rel.split("/"))


def find(
    spec: str, fmt: str = "auto", settings: Settings | None = None, exclude: str | None = None
) -> list[InputFile]:
    """The input files of `spec`: one file, every input file of a directory (recursively), or
    every object under an s3:// prefix; hidden names (`.x`, `_SUCCESS`) and whatever lies under
    `exclude` (the job's output, when it sits inside the input) are skipped. With `fmt` auto the
    format comes from each name; files of other names are left out."""
    from sentiops.store.storage import is_s3  # lazy: pulls minio

    if fmt != "auto" and fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}", f"use auto or one of: {', '.join(FORMATS)}")
    found = _find_s3(spec, settings) if is_s3(spec) else _find_local(Path(spec))
    single = (len(found) == 1 and found[0][0] == spec) if is_s3(spec) else Path(spec).is_file()
    files, others = [], []
    for uri, rel, size, stamp in found:
        if exclude and _under(uri, exclude):
            continue
        kind = format_of(rel, fmt)
        if kind is None or (not single and _hidden(rel)):
            others.append(rel)
            continue
        files.append(InputFile(uri, rel, kind, size, stamp))
    if not files:
        shown = ", ".join(others[:8]) + (" ..." if len(others) > 8 else "")
        raise DataError(
            f"no input files in {spec}" + (f" (found only: {shown})" if others else " (empty)"),
            "pass a .csv, .tsv, .jsonl or .parquet file, a directory or s3:// prefix holding "
            "them, or --format csv|jsonl|parquet to read files of other names",
        )
    kinds = sorted({f.format for f in files})
    if len(kinds) > 1:
        raise DataError(
            f"{spec} mixes input formats ({', '.join(kinds)})",
            "score each format as its own job, or pass --format to pick one",
        )
    return sorted(files, key=lambda f: f.name)


def _under(uri: str, folder: str) -> bool:
    from sentiops.store.storage import is_s3  # lazy: pulls minio

    if is_s3(uri) or is_s3(folder):
        return uri.startswith(folder.rstrip("/") + "/")
    return Path(uri).resolve().is_relative_to(Path(folder).resolve())


def _find_local(path: Path) -> list[tuple[str, str, int, str]]:
    if path.is_file():
        st = path.stat()
        return [(str(path), path.name, st.st_size, str(st.st_mtime_ns))]
    if not path.exists():
        raise DataError(
            f"input not found: {path}", "check --input (a file, a directory or an s3:// prefix)"
        )
    out = []
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            out.append((str(p), p.relative_to(path).as_posix(), st.st_size, str(st.st_mtime_ns)))
    return out


def _find_s3(spec: str, settings: Settings | None) -> list[tuple[str, str, int, str]]:
    from sentiops.store.storage import S3Store, parse_s3  # lazy: pulls minio

    store = S3Store(settings)
    bucket, key = parse_s3(spec)
    try:
        exists = store.client.bucket_exists(bucket)
    except Exception as exc:  # noqa: BLE001 - translated into a StorageError
        raise store._fail(f"look up bucket {bucket!r}", exc) from exc
    if not exists:
        raise DataError(
            f"input not found: there is no bucket {bucket!r} ({spec})",
            "check the bucket of --input (and the S3 endpoint: SENTIOPS_S3_ENDPOINT)",
        )
    one = store.stat(spec) if key and not key.endswith("/") else None
    if one is not None:
        return [(spec, key.rsplit("/", 1)[-1], one["size"], one["etag"])]
    prefix = key.rstrip("/") + "/" if key else ""
    out = []
    for k in store.list_keys(f"s3://{bucket}/{prefix}"):
        st = store.stat(f"s3://{bucket}/{k}") or {"size": 0, "etag": ""}
        out.append((f"s3://{bucket}/{k}", k[len(prefix) :], st["size"], st["etag"]))
    if not out:
        raise DataError(
            f"input not found: nothing under {spec}",
            "check the bucket and prefix of --input (and the S3 endpoint and credentials)",
        )
    return out


class Fetcher:
    """Local copies of input files: a local file as it is; an s3:// object downloaded (sha256
    checked) into a work directory, one file at a time."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self._dir: Path | None = None
        self._held: tuple[str, Path] | None = None

    def local(self, f: InputFile) -> Path:
        from sentiops.store.storage import S3Store, is_s3  # lazy: pulls minio

        if not is_s3(f.uri):
            return Path(f.uri)
        if self._held and self._held[0] == f.uri:
            return self._held[1]
        self.release()
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="sentiops-batch-input-"))
        target = self._dir / f"input{''.join(Path(f.name).suffixes[-2:])}"
        S3Store(self.settings).download_file(f.uri, target)
        self._held = (f.uri, target)
        return target

    def release(self) -> None:
        if self._held:
            self._held[1].unlink(missing_ok=True)
            self._held = None

    def close(self) -> None:
        self.release()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


# ------------------------------------------------------------------------------ columns
def columns(f: InputFile, local: Path) -> list[str]:
    """The file's column names (JSONL: the keys of its first object)."""
    try:
        if f.format == "csv":
            return list(_csv_open(local, f.delimiter, None).schema.names)
        if f.format == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(local).schema_arrow.names)
        with _open_lines(local) as fh:
            for line in fh:
                if line.strip():
                    first = json.loads(line)
                    if not isinstance(first, dict):
                        raise DataError(
                            f"{f.name}: the first line is a JSON {type(first).__name__}, "
                            "not an object",
                            "JSONL input holds one JSON object per line, e.g. "
                            '{"id": 1, "text": "..."}',
                        )
                    return [str(k) for k in first]
        return []
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a parser's error becomes the user's DataError
        raise _unreadable(f, exc) from exc


def _unreadable(f: InputFile, exc: Exception) -> DataError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(
        f"cannot read {f.name} as {f.format.upper()}: {first}",
        f"check that it is well-formed {f.format.upper()}, or pass the right --format",
    )


def resolve_keep(
    keep: list[str], first: InputFile, first_columns: list[str], text_column: str
) -> list[str]:
    """The kept columns: every column of the first file but the text (`all`), none (`none`)
    or the named ones, in the order given."""
    if not keep or keep == [KEEP_ALL]:
        return [c for c in first_columns if c != text_column]
    if keep == [KEEP_NONE]:
        return []
    if KEEP_ALL in keep or KEEP_NONE in keep:
        raise ConfigError(
            f"--keep {' '.join(keep)}: {KEEP_ALL!r} and {KEEP_NONE!r} stand alone",
            "pass --keep all, --keep none, or column names",
        )
    return [c for c in dict.fromkeys(keep) if c != text_column]


def check_columns(f: InputFile, cols: list[str], text_column: str, keep: list[str]) -> None:
    """The text column and the kept columns are there (JSONL: in the first object)."""
    if text_column not in cols:
        raise DataError(
            f"{f.name} has no column {text_column!r}; its columns: {', '.join(cols) or 'none'}",
            "pass --text-column with the column that holds the texts",
        )
    missing = [c for c in keep if c not in cols]
    if missing and f.format != "jsonl":  # a JSONL object may leave a key out: null there
        raise DataError(
            f"{f.name} has no column(s) {', '.join(missing)} to keep; its columns: "
            f"{', '.join(cols)}",
            "pass --keep with columns every input file has (or --keep none)",
        )


def parquet_types(f: InputFile, local: Path, text_column: str, keep: list[str]) -> dict[str, str]:
    """A Parquet file's kept column types (every input file must agree); the text column must
    hold strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.ParquetFile(local).schema_arrow
    kind = schema.field(text_column).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        raise DataError(
            f"{f.name}: column {text_column!r} holds {kind}, not text",
            "pass --text-column with the column that holds the texts",
        )
    return {c: str(schema.field(c).type) for c in keep}


# ------------------------------------------------------------------------------ counting
def inspect(
    f: InputFile, local: Path, text_column: str, shard_rows: int
) -> tuple[InputFile, list[int]]:
    """The file with its rows (and malformed CSV rows) counted in one streaming pass, and the
    byte offsets of rows 0, shard_rows, 2*shard_rows, ... where the format can seek (JSONL)."""
    try:
        if f.format == "parquet":
            import pyarrow.parquet as pq

            return replace(f, rows=int(pq.ParquetFile(local).metadata.num_rows)), []
        if f.format == "jsonl":
            rows, offsets = 0, []
            with _open_lines(local) as fh:
                pos = 0
                for line in fh:
                    if line.strip():
                        if rows % shard_rows == 0:
                            offsets.append(pos)
                        rows += 1
                    pos += len(line)
            return replace(f, rows=rows), offsets
        bad: list[str] = []
        reader = _csv_open(local, f.delimiter, [text_column], bad)
        rows = sum(batch.num_rows for batch in reader)
        examples = tuple(b[:200] for b in bad[:_EXAMPLES])
        return replace(f, rows=rows, malformed=len(bad), malformed_examples=examples), []
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(f, exc) from exc


# ------------------------------------------------------------------------------ reading
class Reader:
    """One input file read forward, shard after shard: `chunks(start, stop)` goes on from where
    the previous call stopped when it can, so the shards of a CSV file scored in order parse
    the file once (a CSV has no index to seek to a row); reading backwards starts again.
    Parquet reads only the row groups of the range, JSONL seeks to the shard's byte offset."""

    def __init__(
        self, f: InputFile, local: Path, text_column: str, keep: list[str], chunk_rows: int
    ) -> None:
        self.f, self.local, self.text_column, self.keep = f, local, text_column, list(keep)
        self.chunk_rows = max(1, chunk_rows)
        self._batches: Iterator[Any] | None = None
        self._pos = 0  # the row number of the first row of `_held` (or of the next batch)
        self._held: Any = None  # the rest of a batch a later range starts in

    def chunks(self, start: int, stop: int, offset: int | None = None) -> Iterator[Chunk]:
        """Rows [start, stop) in chunks of at most `chunk_rows` rows."""
        cols = [self.text_column, *self.keep]
        if self.f.format == "jsonl":
            yield from _read_jsonl(
                self.local, self.text_column, self.keep, start, stop, self.chunk_rows, offset
            )
            return
        if self.f.format == "parquet":
            batches, pos = _parquet_batches(self.local, cols, start, stop, self.chunk_rows)
            for first_row, batch in _slices(batches, pos, start, stop, self.chunk_rows):
                yield _chunk(first_row, batch, self.text_column, self.keep)
            return
        if self._batches is None or start < self._pos:
            self._batches = iter(_csv_open(self.local, self.f.delimiter, cols, []))
            self._pos, self._held = 0, None
        while self._pos < stop:
            batch = self._held if self._held is not None else next(self._batches, None)
            self._held = None
            if batch is None:
                return
            lo, hi = max(start - self._pos, 0), min(stop - self._pos, batch.num_rows)
            for s in range(lo, hi, self.chunk_rows):
                part = batch.slice(s, min(self.chunk_rows, hi - s))
                yield _chunk(self._pos + s, part, self.text_column, self.keep)
            if 0 <= hi < batch.num_rows:  # the rest of this batch is a later range's
                self._held = batch.slice(hi)
                self._pos += hi
                return
            self._pos += batch.num_rows


def read(
    f: InputFile,
    local: Path,
    text_column: str,
    keep: list[str],
    start: int,
    stop: int,
    chunk_rows: int,
    offset: int | None = None,
) -> Iterator[Chunk]:
    """Rows [start, stop) of the file in chunks of at most `chunk_rows` rows, streamed."""
    yield from Reader(f, local, text_column, keep, chunk_rows).chunks(start, stop, offset)


def _slices(
    batches: Iterator[Any], pos: int, start: int, stop: int, chunk_rows: int
) -> Iterator[tuple[int, Any]]:
    """(first row, record batch) slices of at most `chunk_rows` rows covering [start, stop);
    `pos` is the row number of the first batch's first row."""
    for batch in batches:
        lo, hi = max(start - pos, 0), min(stop - pos, batch.num_rows)
        for s in range(lo, hi, chunk_rows):
            yield pos + s, batch.slice(s, min(chunk_rows, hi - s))
        pos += batch.num_rows
        if pos >= stop:
            return


def _decode(values: list[Any], strict: bool) -> tuple[list[Any], dict[int, tuple[str, str]]]:
    out: list[Any] = []
    problems: dict[int, tuple[str, str]] = {}
    for i, v in enumerate(values):
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                if strict:
                    problems[i] = (NOT_TEXT, "the text is not UTF-8")
                    v = None
                else:
                    v = v.decode("utf-8", "replace")
        out.append(v)
    return out, problems


def _chunk(first_row: int, batch: Any, text_column: str, keep: list[str]) -> Chunk:
    import pyarrow as pa

    texts, problems = _decode(batch.column(text_column).to_pylist(), strict=True)
    kept = {}
    for name in keep:
        col = batch.column(name)
        if pa.types.is_binary(col.type):  # CSV: every column is read as bytes
            col = pa.array(_decode(col.to_pylist(), strict=False)[0], type=pa.string())
        kept[name] = col
    return Chunk(first_row, texts, problems, kept)


def _csv_open(
    path: Path, delimiter: str, include: list[str] | None, malformed: list[str] | None = None
) -> Any:
    """Arrow's streaming CSV reader with every column as bytes (`include`: only those)."""
    import pyarrow as pa
    import pyarrow.csv as pc

    def skip(row: Any) -> str:
        if malformed is not None:
            malformed.append(
                f"{row.text!r}: {row.actual_columns} fields, expected {row.expected_columns}"
            )
        return "skip"

    read_options = pc.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False)
    parse = pc.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=skip)
    if include is None:
        return pc.open_csv(path, read_options=read_options, parse_options=parse)
    names = _csv_open(path, delimiter, None).schema.names
    convert = pc.ConvertOptions(
        column_types={n: pa.binary() for n in names}, include_columns=include
    )
    return pc.open_csv(
        path, read_options=read_options, parse_options=parse, convert_options=convert
    )


def _parquet_batches(
    path: Path, cols: list[str], start: int, stop: int, chunk_rows: int
) -> tuple[Iterator[Any], int]:
    """Batches of only the row groups that hold [start, stop), and the first one's row."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    groups, first, pos = [], None, 0
    for i in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if pos + n > start and pos < stop:
            groups.append(i)
            first = pos if first is None else first
        pos += n
    if not groups:
        return iter(()), 0
    return pf.iter_batches(batch_size=chunk_rows, row_groups=groups, columns=cols), first or 0


def _open_lines(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _read_jsonl(
    path: Path,
    text_column: str,
    keep: list[str],
    start: int,
    stop: int,
    chunk_rows: int,
    offset: int | None,
) -> Iterator[Chunk]:
    import pyarrow as pa

    def flush(first: int, texts: list[Any], problems: dict, kept: dict[str, list]) -> Chunk:
        arrays = {k: pa.array(v, type=pa.string()) for k, v in kept.items()}
        return Chunk(first, texts, problems, arrays)

    row = start if offset is not None else 0
    texts: list[Any] = []
    problems: dict[int, tuple[str, str]] = {}
    kept: dict[str, list[Any]] = {k: [] for k in keep}
    with _open_lines(path) as fh:
        if offset is not None:
            fh.seek(offset)
        for line in fh:
            if not line.strip():
                continue
            if row >= stop:
                break
            if row < start:
                row += 1
                continue
            i = len(texts)
            try:
                obj = json.loads(line)
            except ValueError as exc:  # UnicodeDecodeError included
                obj, problems[i] = None, (UNREADABLE, f"not a JSON line: {exc}"[:200])
            if obj is not None and not isinstance(obj, dict):
                problems[i] = (UNREADABLE, f"a JSON {type(obj).__name__}, not an object")
                obj = None
            texts.append(obj.get(text_column) if obj is not None else None)
            for k in keep:
                v = obj.get(k) if obj is not None else None
                kept[k].append(
                    v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                )
            row += 1
            if len(texts) == chunk_rows:
                yield flush(row - len(texts), texts, problems, kept)
                texts, problems, kept = [], {}, {k: [] for k in keep}
    if texts:
        yield flush(row - len(texts), texts, problems, kept)
