"""Data: built-in VADER ground-truth datasets, user tables (CSV/JSONL/Parquet, local or S3),
and write-once snapshots whose content hash is the dataset version.

Built-in data comes from Hutto & Gilbert, "VADER: A Parsimonious Rule-based Model for Sentiment
Analysis of Social Media Text", ICWSM 2014 (MIT licence), shipped inside the
`vaderSentiment==3.3.2` source distribution on PyPI.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from sentiops.config import Settings, get_settings
from sentiops.errors import DataError
from sentiops.scoring import LABELS as LABELS  # the classes, re-exported
from sentiops.store.checksum import sha256_file
from sentiops.store.storage import get_file, is_s3

TEXT, LABEL, SOURCE, ROW = "text", "label", "_source", "_row"
#: Optional: the raters' mean score (-4..+4 for the built-in data) behind a label; the
#: transformer learns soft targets from it (`sentiops.models.transformer.soft_targets`).
SCORE = "score"
#: Optional: which sample a live label belongs to (`sentiops.feedback`: random = the evaluation
#: sample, targeted = chosen for training); the split keeps targeted rows out of the test set.
SAMPLE = "sample"

VADER_SDIST = "vaderSentiment==3.3.2"
VADER_SDIST_FILE = "vaderSentiment-3.3.2.tar.gz"
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
BUILTIN: dict[str, str] = {
    "vader-tweets": "hutto_ICWSM_2014/tweets_GroundTruth.txt",
    "vader-movies": "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
    "vader-amazon": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
    "vader-nyt": "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
}
POSITIVE_AT, NEGATIVE_AT = 0.5, -0.5


def label_from_score(score: float) -> str:
    """Mean human rating on -4..+4 -> label: >= 0.5 positive, <= -0.5 negative, else neutral."""
    if score >= POSITIVE_AT:
        return "positive"
    if score <= NEGATIVE_AT:
        return "negative"
    return "neutral"


def _vader_sdist(settings: Settings) -> Path:
    """Download (once) and verify the vaderSentiment sdist; returns its path."""
    cache = settings.cache_dir / "vader"
    path = cache / VADER_SDIST_FILE
    if path.exists() and sha256_file(path) == VADER_SDIST_SHA256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        "-d",
        str(cache),
        VADER_SDIST,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not path.exists():
        raise DataError(
            f"could not download {VADER_SDIST} from the package index: "
            f"{proc.stderr.strip()[-400:]}",
            "check network access to PyPI (pip config list), or copy the sdist to " + str(path),
        )
    digest = sha256_file(path)
    if digest != VADER_SDIST_SHA256:
        path.unlink()
        raise DataError(
            f"{VADER_SDIST_FILE} has sha256 {digest}, expected {VADER_SDIST_SHA256}",
            "the index served a different file; refusing to use it",
        )
    return path


def _read_vader(sdist: Path, member: str) -> pd.DataFrame:
    with tarfile.open(sdist) as outer:
        inner_bytes = outer.extractfile(VADER_INNER)
        if inner_bytes is None:
            raise DataError(f"{VADER_INNER} missing from {sdist}", "delete the cached sdist")
        with tarfile.open(fileobj=io.BytesIO(inner_bytes.read())) as inner:
            fh = inner.extractfile(member)
            if fh is None:
                raise DataError(f"{member} missing from the VADER archive", "delete the cache")
            raw = fh.read().decode("utf-8")
    rows = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        ident, score, text = line.split("\t", 2)
        rows.append((ident, float(score), text.strip()))
    df = pd.DataFrame(rows, columns=["id", "score", TEXT])
    df[LABEL] = df["score"].map(label_from_score)
    return df


def fetch_builtin(name: str, settings: Settings | None = None) -> pd.DataFrame:
    """A built-in dataset as a DataFrame with columns id, score, text, label."""
    if name not in BUILTIN:
        raise DataError(f"unknown built-in dataset {name!r}", f"choose one of {sorted(BUILTIN)}")
    s = settings or get_settings()
    return _read_vader(_vader_sdist(s), BUILTIN[name])


def read_table(
    path: str | Path,
    text_column: str = TEXT,
    label_column: str | None = LABEL,
    keep: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Read CSV / JSONL / Parquet (local or s3://) into columns text, label, _source, _row.

    Bytes that are not UTF-8 are kept as surrogate escapes so validation can name the rows.
    """
    name = str(path)
    local = get_file(path)
    if not local.exists():
        raise DataError(
            f"data file not found: {name}",
            f"check the path or use a built-in dataset name: {', '.join(sorted(BUILTIN))}",
        )
    suffix = "".join(local.suffixes[-2:]).lower() if local.suffix == ".gz" else local.suffix.lower()
    try:
        if suffix in (".csv", ".csv.gz", ".tsv"):
            df = pd.read_csv(
                local,
                dtype=str,
                keep_default_na=False,
                encoding="utf-8",
                encoding_errors="surrogateescape",
                sep="\t" if suffix == ".tsv" else ",",
            )
        elif suffix in (".jsonl", ".json", ".ndjson", ".jsonl.gz"):
            df = pd.read_json(
                local, lines=True, dtype=False, encoding="utf-8", encoding_errors="surrogateescape"
            )
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(local)
        else:
            raise DataError(
                f"unsupported file type {suffix!r} for {name}", "use .csv, .tsv, .jsonl or .parquet"
            )
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - parser errors become DataError
        raise DataError(
            f"could not parse {name}: {type(exc).__name__}: {exc}",
            "check that the file is well-formed CSV/JSONL/Parquet",
        ) from exc
    wanted = [text_column] + ([label_column] if label_column else [])
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(
            f"{name}: missing column(s) {missing}; found {list(df.columns)}",
            "rename the columns or pass --text-column / --label-column",
        )
    out = pd.DataFrame({TEXT: df[text_column].map(lambda v: "" if v is None else str(v))})
    if label_column:
        out[LABEL] = df[label_column].map(lambda v: "" if v is None else str(v).strip().lower())
    if SCORE in df.columns:  # optional; what is not a number is no score
        out[SCORE] = pd.to_numeric(df[SCORE], errors="coerce").astype("float64")
    if SAMPLE in df.columns:
        out[SAMPLE] = df[SAMPLE].map(lambda v: "" if v is None else str(v))
    for col in keep:  # further columns a caller wants, when the file has them
        if col in df.columns and col not in out.columns:
            out[col] = df[col].to_numpy()
    out[SOURCE] = name
    out[ROW] = range(1, len(out) + 1)
    return out


def load(
    specs: list[str],
    text_column: str = TEXT,
    label_column: str | None = LABEL,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Load and concatenate datasets: built-in names or CSV/JSONL/Parquet paths / s3:// URIs.
    `label_column=None`: unlabelled texts (e.g. traffic to replay); files need no label."""
    if not specs:
        raise DataError("no data given", "pass --data PATH (repeatable) or a built-in name")
    frames = []
    for spec in specs:
        if spec in BUILTIN:
            df = fetch_builtin(spec, settings)[[TEXT, LABEL, SCORE]].copy()
            df[SOURCE] = spec
            df[ROW] = range(1, len(df) + 1)
        elif is_s3(spec) or Path(spec).exists() or Path(spec).suffix:
            df = read_table(spec, text_column, label_column)
        else:
            raise DataError(
                f"{spec!r} is neither a file nor a built-in dataset",
                f"built-in datasets: {', '.join(sorted(BUILTIN))}",
            )
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def content_hash(df: pd.DataFrame) -> str:
    """Dataset version: sha256 over the (text, label) rows in order."""
    h = hashlib.sha256()
    for text, label in zip(df[TEXT], df[LABEL], strict=True):
        h.update(text.encode("utf-8", "surrogateescape"))
        h.update(b"\t")
        h.update(label.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


@dataclass
class Manifest:
    name: str
    version: str
    source: list[str]
    rows: int
    label_counts: dict[str, int]
    sha256: str
    created_at: str
    path: str


def snapshot(df: pd.DataFrame, name: str, source: list[str], root: Path) -> Manifest:
    """Write `df` once under root/<name>/<version>/ (data.parquet + manifest.json).

    The version is the first 12 hex digits of the content hash; an existing snapshot with the
    same content is reused, never rewritten.
    """
    digest = content_hash(df)
    version = digest[:12]
    folder = root / name / version
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        return Manifest(**json.loads(manifest_path.read_text()))
    tmp = root / name / f".{version}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    cols = [c for c in (TEXT, LABEL, SCORE, SAMPLE, SOURCE, ROW) if c in df.columns]
    df[cols].to_parquet(tmp / "data.parquet", index=False)
    counts = df[LABEL].value_counts()
    manifest = Manifest(
        name=name,
        version=version,
        source=source,
        rows=len(df),
        label_counts={str(k): int(v) for k, v in counts.sort_index().items()},
        sha256=digest,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        path=str(folder),
    )
    (tmp / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2))
    tmp.rename(folder)
    return manifest


def read_snapshot(folder: Path) -> tuple[pd.DataFrame, Manifest]:
    manifest = Manifest(**json.loads((folder / "manifest.json").read_text()))
    return pd.read_parquet(folder / "data.parquet"), manifest
