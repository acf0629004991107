"""Child processes of the local stack: each on loopback with its log file, in its own process
group (stopped with everything it started, also on errors and Ctrl-C), and waited for until it
answers over HTTP; the tools they run come from PATH or the project's tool cache."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiops.config import get_settings
from sentiops.errors import StackError
from sentiops.local.loop.progress import EVERY, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_tool(name: str) -> str:
    """A tool from PATH or the project's tool cache (`make cluster-tools` installs there)."""
    cache = Path(
        os.environ.get("SENTIOPS_TOOLS_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sentiops-tools"
    )
    for candidate in (shutil.which(name), cache / "bin" / name, Path("/usr/bin") / name):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise StackError(f"{name} not found", f"run `make cluster-tools` (installs {name})")


@dataclass
class Process:
    """A child process with its log file; stopped by its process group."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def start_process(
    name: str, args: list[str], workdir: Path, env: dict[str, str] | None = None
) -> Process:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    # a child runs in its own folder: it gets this process's home as an absolute path (a
    # relative default would name another folder there: the retraining run the sidecar starts
    # would keep its own store and datasets)
    home = {"SENTIOPS_HOME": str(get_settings().home)}  # resolved by Settings
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            args,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            start_new_session=True,  # own process group: killpg stops it and its children
            env={**os.environ, **home, **(env or {})},
        )
    return Process(name, proc, log)


def wait_http(
    url: str,
    process: Process | None,
    timeout: float,
    what: str,
    *,
    progress: Callable[[str], Any] | None = None,
    every: float = EVERY,
) -> None:
    """Until `url` answers 200; fails early (with the log's tail) if the process exits.
    With `progress`, says every `every` seconds that it still waits, for what and where its
    log is (the loop's heartbeat: `sentiops.local.loop.progress.wait_for`)."""
    last = [""]

    def answered() -> bool:
        if process is not None and not process.alive():
            raise StackError(
                f"{process.name} exited ({process.proc.returncode}) before {what}",
                f"its log ({process.log}) ends with:\n{process.tail()}",
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback)
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError) as exc:
            last[0] = str(exc)
            return False

    where = f"log {process.log}" if process is not None else ""
    started = time.monotonic()
    try:
        wait_for(
            answered, timeout, what, progress=progress, seen=lambda: where, every=every, poll=0.2
        )
    except StackError:
        if time.monotonic() - started < timeout:  # the process exited
            raise
        log = f"; log {process.log}:\n{process.tail()}" if process else ""
        raise StackError(
            f"{what}: no answer from {url} after {timeout:.0f}s ({last[0]})", log
        ) from None


@contextlib.contextmanager
def closing_all(*items: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for item in reversed(items):
            with contextlib.suppress(Exception):
                item.stop()
