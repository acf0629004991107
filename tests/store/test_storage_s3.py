"""Artifact store against a real S3 server (rclone serve s3) on loopback."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from sentiops.config import Settings
from sentiops.errors import StorageError
from sentiops.models import load_model
from sentiops.store import storage
from tests.conftest import make_frame, run_cli
from tests.servers import free_port

pytestmark = pytest.mark.integration


def test_dir_round_trip_with_checksums(s3, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"\x00" * 3000 + b"end")
    (src / "sub" / "b.txt").write_text("hello")
    uri = storage.put_dir(src, "s3://models/sentiment/v1")
    assert uri == "s3://models/sentiment/v1/"
    store = storage.S3Store()
    assert sorted(store.list_keys(uri)) == ["sentiment/v1/a.bin", "sentiment/v1/sub/b.txt"]
    out = storage.get_dir(uri, tmp_path / "out")
    assert (out / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    assert (out / "sub" / "b.txt").read_text() == "hello"


def test_altered_object_is_detected(s3, tmp_path: Path) -> None:
    store = storage.S3Store()
    store.ensure_bucket("bkt")
    good = hashlib.sha256(b"original").hexdigest()
    # an object whose stored checksum does not match its bytes (as after silent corruption)
    store.client.put_object("bkt", "k", io.BytesIO(b"tampered"), 8, metadata={"sha256": good})
    with pytest.raises(StorageError, match="checksum mismatch"):
        store.download_file("s3://bkt/k", tmp_path / "k")
    assert not (tmp_path / "k").exists() and not (tmp_path / "k.part").exists()


def test_missing_prefix_and_bad_credentials(s3, tmp_path: Path, monkeypatch) -> None:
    storage.S3Store().ensure_bucket("bkt")
    with pytest.raises(StorageError, match="nothing found under s3://bkt/none"):
        storage.get_dir("s3://bkt/none", tmp_path / "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StorageError, match="refused"):
        storage.S3Store().ensure_bucket("bkt2")


def test_unreachable_endpoint_fails_with_hint(tmp_path: Path) -> None:
    settings = Settings(
        s3_endpoint=f"127.0.0.1:{free_port()}", s3_access_key="k", s3_secret_key="s", s3_retries=1
    )
    with pytest.raises(StorageError) as info:
        storage.put_dir(tmp_path, "s3://bkt/x", settings)
    assert "unreachable" in info.value.message, info.value.message
    assert "SENTIOPS_S3_ENDPOINT" in info.value.hint


def test_train_reads_s3_data_and_model_round_trips(s3, tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    make_frame(20).to_csv(csv, index=False)
    store = storage.S3Store()
    store.ensure_bucket("data")
    store.upload_file(csv, "s3://data/in/d.csv")
    out = tmp_path / "model"
    proc = run_cli(
        "train",
        "--data",
        "s3://data/in/d.csv",
        "--model-type",
        "tfidf-logreg",
        "--output",
        out,
        "--no-track",
    )
    assert proc.returncode == 0, proc.stderr
    uri = storage.put_dir(out, "s3://models/sentiment/1")
    back = storage.get_dir(uri, tmp_path / "back")
    assert load_model(back).version == load_model(out).version


def test_invalid_bucket_name(s3) -> None:
    with pytest.raises(StorageError, match="invalid bucket name"):
        storage.S3Store().ensure_bucket("b")


def test_cli_unreachable_s3_exit_code(tmp_path: Path) -> None:
    proc = run_cli(
        "train",
        "--data",
        "s3://data/in/d.csv",
        "--model-type",
        "tfidf-logreg",
        "--output",
        tmp_path / "m",
        "--no-track",
        env={
            "SENTIOPS_S3_ENDPOINT": f"127.0.0.1:{free_port()}",
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
            "SENTIOPS_S3_RETRIES": "1",
        },
    )
    assert proc.returncode == 6, proc.stderr
    assert "unreachable" in proc.stderr and "SENTIOPS_S3_ENDPOINT" in proc.stderr
    assert not (tmp_path / "m").exists()


def _fetch_model(uri: str) -> str:
    return str(storage.local_model(uri))


def test_local_model_is_safe_for_concurrent_processes(s3, tmp_path: Path, monkeypatch) -> None:
    """Shards of a batch job on one node fetch the same model at once (a CI failure: one
    process's download deleted the other's half-written file). Each must get a complete copy;
    a model changed under the same URI replaces the stale copy."""
    from concurrent.futures import ProcessPoolExecutor

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    src = tmp_path / "m"
    src.mkdir()
    for i in range(8):
        (src / f"w{i}.bin").write_bytes(bytes([i]) * 200_000)
    uri = storage.put_dir(src, "s3://models/sentiment/1")
    with ProcessPoolExecutor(4) as pool:
        dirs = set(pool.map(_fetch_model, [uri] * 8))
    assert len(dirs) == 1
    got = Path(dirs.pop())
    for i in range(8):
        assert (got / f"w{i}.bin").read_bytes() == bytes([i]) * 200_000
    assert not [p for p in got.parent.iterdir() if p.name.startswith(".")]  # no leftovers
    (src / "w0.bin").write_bytes(b"new")
    storage.put_dir(src, uri)
    assert (storage.local_model(uri) / "w0.bin").read_bytes() == b"new"
