"""Artifact store: a local directory or `s3://bucket/prefix` through the `minio` client.

Uploads carry the file's sha256 as object metadata and downloads verify it, so a truncated or
altered object is caught. Network failures are retried with back-off and end in a
`StorageError` that names the endpoint and the setting to fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import S3Error

from sentiops.config import Settings, get_settings
from sentiops.errors import StorageError
from sentiops.store.checksum import sha256_file

SHA_META = "sha256"


def is_s3(uri: str | Path) -> bool:
    return str(uri).startswith("s3://")


def parse_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> ("bucket", "some/key")."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"not an S3 URI: {uri!r}", "use the form s3://bucket/key")
    return parsed.netloc, parsed.path.lstrip("/")


def _endpoint(settings: Settings) -> tuple[str, bool]:
    raw = settings.s3_endpoint
    if "://" in raw:
        parsed = urlparse(raw)
        return parsed.netloc, parsed.scheme == "https"
    return raw, settings.s3_secure


class S3Store:
    """Checksummed object I/O against any S3 API (MinIO on the cluster, any S3 server locally)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        endpoint, secure = _endpoint(self.settings)
        self.endpoint = endpoint
        retries = urllib3.Retry(
            total=self.settings.s3_retries,
            backoff_factor=0.2,
            status_forcelist=[500, 502, 503, 504],
        )
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60), retries=retries, maxsize=8
        )
        self.client = Minio(
            endpoint,
            access_key=self.settings.s3_access_key,
            secret_key=self.settings.s3_secret_key,
            secure=secure,
            region=self.settings.s3_region,
            http_client=http,
        )

    def _fail(self, what: str, exc: Exception) -> StorageError:
        if isinstance(exc, S3Error):
            return StorageError(
                f"S3 at {self.endpoint} refused to {what}: {exc.code}: {exc.message}",
                "check the bucket/key and the credentials (SENTIOPS_S3_ACCESS_KEY / "
                "AWS_ACCESS_KEY_ID, SENTIOPS_S3_SECRET_KEY / AWS_SECRET_ACCESS_KEY)",
            )
        if isinstance(exc, ValueError):
            return StorageError(
                f"could not {what}: {exc}",
                "bucket names are 3-63 lowercase letters, digits, '-' or '.'",
            )
        return StorageError(
            f"could not {what}: S3 endpoint {self.endpoint} unreachable after "
            f"{self.settings.s3_retries} retries ({type(exc).__name__}: {exc})",
            "start the S3 server or set SENTIOPS_S3_ENDPOINT (host:port or http(s)://host:port)",
        )

    def ensure_bucket(self, bucket: str) -> None:
        try:
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
        except Exception as exc:  # noqa: BLE001 - translated into a StorageError
            raise self._fail(f"create bucket {bucket!r}", exc) from exc

    def upload_file(self, local: Path, uri: str) -> str:
        bucket, key = parse_s3(uri)
        digest = sha256_file(local)
        try:
            self.client.fput_object(bucket, key, str(local), metadata={SHA_META: digest})
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"upload {local} to {uri}", exc) from exc
        return digest

    def download_file(self, uri: str, local: Path) -> str:
        bucket, key = parse_s3(uri)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".part")
        try:
            stat = self.client.stat_object(bucket, key)
            self.client.fget_object(bucket, key, str(tmp))
        except Exception as exc:  # noqa: BLE001
            tmp.unlink(missing_ok=True)
            raise self._fail(f"download {uri}", exc) from exc
        digest = sha256_file(tmp)
        meta = {k.lower(): v for k, v in (stat.metadata or {}).items()}
        expected = meta.get(f"x-amz-meta-{SHA_META}")
        if expected and expected != digest:
            tmp.unlink(missing_ok=True)
            raise StorageError(
                f"checksum mismatch for {uri}: expected sha256 {expected}, got {digest}",
                "the object was altered or truncated; upload it again",
            )
        tmp.replace(local)
        return digest

    def stat(self, uri: str) -> dict[str, Any] | None:
        """An object's size, ETag and the sha256 it was uploaded with (None if the server kept
        no metadata); None when there is no such object."""
        bucket, key = parse_s3(uri)
        try:
            st = self.client.stat_object(bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound"):
                return None
            raise self._fail(f"stat {uri}", exc) from exc
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"stat {uri}", exc) from exc
        meta = {k.lower(): v for k, v in (st.metadata or {}).items()}
        return {
            "size": int(st.size or 0),
            "etag": str(st.etag or ""),
            "sha256": meta.get(f"x-amz-meta-{SHA_META}"),
        }

    def remove(self, uri: str) -> None:
        """Delete one object (no error when it is not there)."""
        bucket, key = parse_s3(uri)
        try:
            self.client.remove_object(bucket, key)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"remove {uri}", exc) from exc

    def list_keys(self, uri: str) -> Iterator[str]:
        bucket, prefix = parse_s3(uri)
        try:
            for obj in self.client.list_objects(bucket, prefix=prefix, recursive=True):
                if obj.object_name and not obj.is_dir:
                    yield obj.object_name
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"list {uri}", exc) from exc

    def upload_dir(self, local_dir: Path, uri: str) -> dict[str, str]:
        bucket, prefix = parse_s3(uri.rstrip("/") + "/")
        self.ensure_bucket(bucket)
        digests = {}
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(local_dir).as_posix()
            digests[rel] = self.upload_file(path, f"s3://{bucket}/{prefix}{rel}")
        return digests

    def download_dir(self, uri: str, local_dir: Path) -> dict[str, str]:
        bucket, prefix = parse_s3(uri.rstrip("/") + "/")
        keys = list(self.list_keys(f"s3://{bucket}/{prefix}"))
        if not keys:
            raise StorageError(
                f"nothing found under {uri}", "check the prefix (list it with mc ls)"
            )
        digests = {}
        for key in keys:
            rel = key[len(prefix) :]
            digests[rel] = self.download_file(f"s3://{bucket}/{key}", local_dir / rel)
        return digests


def put_dir(local_dir: Path, dest: str | Path, settings: Settings | None = None) -> str:
    """Copy a directory to a local path or an `s3://` prefix; returns the destination URI."""
    if is_s3(dest):
        S3Store(settings).upload_dir(local_dir, str(dest))
        return str(dest).rstrip("/") + "/"
    target = Path(dest)
    tmp = Path(
        tempfile.mkdtemp(prefix=".put-", dir=target.parent if target.parent.exists() else None)
    )
    try:
        shutil.copytree(local_dir, tmp / "d")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        (tmp / "d").rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target.resolve())


def get_dir(src: str | Path, local_dir: Path, settings: Settings | None = None) -> Path:
    """Materialise a local path or an `s3://` prefix as a local directory."""
    if is_s3(src):
        S3Store(settings).download_dir(str(src), local_dir)
        return local_dir
    path = Path(src)
    if not path.is_dir():
        raise StorageError(f"directory not found: {path}", "check the path")
    return path


def get_file(src: str | Path, settings: Settings | None = None) -> Path:
    """Materialise a local path or an `s3://` object as a local file (cached by key)."""
    if not is_s3(src):
        return Path(src)
    s = settings or get_settings()
    bucket, key = parse_s3(str(src))
    local = s.cache_dir / "s3" / bucket / key
    S3Store(s).download_file(str(src), local)
    return local


def local_model(uri: str | Path, settings: Settings | None = None) -> Path:
    """A model directory on local disk: a local path as is; an `s3://` prefix downloaded
    (every object's sha256 verified) under $TMPDIR/models/<hash of the URI> — what KServe's
    storage-initializer does for a pod, for `sentiops serve` and the predictor.

    Safe for several processes at once (the shards of a batch job on one node): each downloads
    into its own directory and renames it into place; a copy already there with the same
    digests is kept (a process may be loading from it), a stale one is moved aside first."""
    if not is_s3(uri):
        return Path(uri)

    digest = hashlib.sha256(str(uri).encode()).hexdigest()[:16]
    dest = Path(os.environ.get("TMPDIR", "/tmp")) / "models" / digest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=dest.parent))
    try:
        digests = S3Store(settings).download_dir(str(uri), tmp / "d")
        manifest = json.dumps(digests, sort_keys=True)
        (tmp / "d" / DOWNLOAD_RECORD).write_text(manifest)
        for _ in range(5):
            try:
                (tmp / "d").rename(dest)
                return dest
            except OSError:  # dest exists (another process, or an earlier download)
                pass
            try:
                if (dest / DOWNLOAD_RECORD).read_text() == manifest:
                    return dest
            except OSError:
                pass
            aside = Path(tempfile.mkdtemp(prefix=f".{digest}-stale-", dir=dest.parent))
            with contextlib.suppress(OSError):
                dest.rename(aside / "d")
            shutil.rmtree(aside, ignore_errors=True)
        raise StorageError(
            f"could not install the model {uri} at {dest}: other processes keep replacing it",
            "give each process its own TMPDIR",
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: The digests a downloaded model copy was made from (`local_model`); a model directory may hold
#: it besides the files its manifest lists (`sentiops.models.modeldir.UNLISTED`).
DOWNLOAD_RECORD = ".sentiops-download.json"
