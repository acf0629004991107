"""Where a batch job writes: a local directory or an s3:// prefix.

    <output>/manifest.json              the plan (sentiops.batch.plan), written once
    <output>/shards/part-NNNNN.parquet  one finished shard's rows (a Parquet dataset:
                                        `pd.read_parquet("<output>/shards")`)
    <output>/done/part-NNNNN.json       its done record: rows, outcomes, labels, size, sha256
    <output>/summary.json               the whole job, once every shard is done

A shard is written to a hidden temporary file and renamed into place (S3: one PUT), and only
then is its done record written the same way: a shard counts as finished when its record
exists and the shard file has the recorded size and sha256. A crash of the job at any point
leaves at most a temporary file, or a shard without a record, and both are simply done again
(files are not fsynced: after a crash of the machine itself, the checksums catch a shard the
disk lost, and it is done again).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sentiops.config import Settings
from sentiops.errors import DataError
from sentiops.store.checksum import sha256_file

MANIFEST, SUMMARY, SHARDS, DONE = "manifest.json", "summary.json", "shards", "done"


class Output:
    def __init__(self, uri: str, settings: Settings | None = None) -> None:
        from sentiops.store.storage import is_s3  # lazy: pulls minio

        self.uri = str(uri).rstrip("/") if is_s3(uri) else str(Path(uri))
        self.s3 = is_s3(uri)
        self.settings = settings
        self._store: Any = None

    # ------------------------------------------------------------------------- paths
    def where(self, rel: str) -> str:
        return f"{self.uri}/{rel}"

    def shard_path(self, name: str) -> str:
        return f"{SHARDS}/{name}.parquet"

    def done_path(self, name: str) -> str:
        return f"{DONE}/{name}.json"

    @property
    def store(self) -> Any:
        if self._store is None:
            from sentiops.store.storage import S3Store  # lazy: pulls minio

            self._store = S3Store(self.settings)
        return self._store

    # ------------------------------------------------------------------------- objects
    def read_json(self, rel: str) -> dict[str, Any] | None:
        """A JSON object written by the job, or None when there is none (or it is not JSON:
        a record that cannot be read is one that was never finished)."""
        if self.s3:
            if self.store.stat(self.where(rel)) is None:
                return None
            with tempfile.TemporaryDirectory(prefix="sentiops-batch-") as tmp:
                local = Path(tmp) / "o.json"
                self.store.download_file(self.where(rel), local)
                text = local.read_text()
        else:
            path = Path(self.where(rel))
            if not path.is_file():
                return None
            text = path.read_text()
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def write_json(self, rel: str, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, indent=2, default=str).encode()
        with tempfile.NamedTemporaryFile(
            dir=self.staging(), prefix=".", suffix=".json", delete=False
        ) as tmp:
            tmp.write(data)
        self.put(Path(tmp.name), rel)

    def staging(self) -> Path:
        """A directory for files about to be put: beside the output (renames stay on one file
        system) or, for S3, a temporary one."""
        if self.s3:
            path = Path(tempfile.gettempdir()) / "sentiops-batch-staging"
        else:
            path = Path(self.uri) / SHARDS
        path.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, local: Path, rel: str) -> None:
        """Move a finished local file into place atomically (S3: uploaded with its sha256,
        then the local file removed)."""
        if self.s3:
            try:
                bucket = self.uri.split("/")[2]
                self.store.ensure_bucket(bucket)
                self.store.upload_file(local, self.where(rel))
            finally:
                local.unlink(missing_ok=True)
            return
        target = Path(self.where(rel))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, target)

    def complete(self, rel: str, size: int, sha256: str) -> bool:
        """Is the file at `rel` there with this size and sha256?"""
        if self.s3:
            st = self.store.stat(self.where(rel))
            if st is None or st["size"] != size:
                return False
            if st.get("sha256"):  # the sha256 it was uploaded with (the store's metadata)
                return bool(st["sha256"] == sha256)
            with tempfile.TemporaryDirectory(prefix="sentiops-batch-") as tmp:
                local = Path(tmp) / "shard.parquet"
                self.store.download_file(self.where(rel), local)
                return sha256_file(local) == sha256
        path = Path(self.where(rel))
        return path.is_file() and path.stat().st_size == size and sha256_file(path) == sha256

    def entries(self) -> list[str]:
        """Every file of the output (relative names)."""
        if self.s3:
            from sentiops.store.storage import parse_s3  # lazy: pulls minio

            bucket, key = parse_s3(self.uri + "/")
            if not self.store.client.bucket_exists(bucket):
                return []
            return [k[len(key) :] for k in self.store.list_keys(f"s3://{bucket}/{key}")]
        root = Path(self.uri)
        if not root.exists():
            return []
        if not root.is_dir():
            raise DataError(f"--output {root} is a file", "pass a directory (or an s3:// prefix)")
        return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]

    def clear(self) -> None:
        """Remove what a job wrote (shards, done records, summary, manifest, stale temporary
        files): `--restart`."""
        if self.s3:
            for rel in self.entries():
                if rel in (MANIFEST, SUMMARY) or rel.startswith((f"{SHARDS}/", f"{DONE}/")):
                    self.store.remove(self.where(rel))
            return
        root = Path(self.uri)
        for sub in (SHARDS, DONE):
            shutil.rmtree(root / sub, ignore_errors=True)
        for name in (MANIFEST, SUMMARY):
            (root / name).unlink(missing_ok=True)

    def remove_stale(self) -> None:
        """Temporary files of a run that was killed mid-write (local output)."""
        if self.s3:
            return
        folder = Path(self.uri) / SHARDS
        if folder.is_dir():
            for p in folder.glob(".*"):
                p.unlink(missing_ok=True)

    def local_file(self, rel: str) -> Path:
        """A job file as a local path (S3: downloaded to a temporary file the caller removes)."""
        if not self.s3:
            return Path(self.where(rel))
        local = Path(tempfile.gettempdir()) / f"sentiops-batch-{uuid.uuid4().hex[:8]}"
        self.store.download_file(self.where(rel), local)
        return local
