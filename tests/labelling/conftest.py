"""One real Label Studio server for the whole test session (its own environment,
`.venv-labelstudio`, on loopback: `sentiops.local.stack.LabelStudio`), and the receiver of a
test (`sentiops.labelling.receiver` under uvicorn in a thread, storing through the feedback
intake into the test's store). Each test uses its own model name, so its projects are its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sentiops.labelling.studio import label_studio_executable
from sentiops.local.processes import free_port
from sentiops.local.stack import LabelStudio
from tests.helpers import wait_until


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    if label_studio_executable() is None:
        pytest.fail(
            "Label Studio is not installed: run `make labelling-install` (it builds "
            ".venv-labelstudio, as `make test` does)",
            pytrace=False,
        )
    server = LabelStudio(tmp_path_factory.mktemp("labelstudio"))
    started = time.monotonic()
    server.start()
    print(f"\nLabel Studio ready in {time.monotonic() - started:.1f} s (first start)")
    try:
        yield server
    finally:
        server.stop()
        log = server.process.tail(10**7) if server.process else ""
        assert server.admin.token not in log and server.admin.password not in log


@dataclass
class Receiver:
    url: str
    worker: Any
    server: Any
    secret: str

    def stop(self) -> None:
        self.worker.stop()
        self.server.should_exit = True


def start_receiver(sync: Any, secret_file: Path, interval: float = 3600.0) -> Receiver:
    """The webhook receiver for `sync` on a free loopback port (uvicorn in a thread)."""
    import uvicorn

    from sentiops.labelling.receiver import Worker, create_app
    from sentiops.security.auth import TokenFile, generate

    secret = generate(secret_file, ("labelstudio",))["labelstudio"]
    port = free_port()
    sync.webhook = (f"http://127.0.0.1:{port}/webhook", secret)
    worker = Worker(sync, interval)
    config = uvicorn.Config(
        create_app(worker, TokenFile(secret_file)), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    wait_until(lambda: server.started, timeout=30, interval=0.05, what="the receiver started")
    worker.start()
    return Receiver(f"http://127.0.0.1:{port}", worker, server, secret)
