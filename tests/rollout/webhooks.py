"""A real HTTP webhook receiver on loopback for the rollout's notifications: it records every
POST (path and JSON body) and answers 200, or with `hang` never answers (a dead receiver that
accepts connections)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers import wait_until


class Receiver:
    def __init__(self, hang: bool = False, status: int = 200) -> None:
        self.received: list[tuple[str, Any]] = []
        self.hang, self.status = hang, status
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.received.append((self.path, json.loads(body or b"null")))
                if owner.hang:
                    owner._release.wait(30)
                    return
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[str, Any]]:
        """What arrived once `n` requests have."""
        wait_until(
            lambda: len(self.received) >= n,
            timeout=timeout,
            interval=0.02,
            what=f"{n} requests",
            detail=lambda: f"received: {self.received}",
        )
        return list(self.received)


def dead_url() -> str:
    """A loopback URL nobody listens on (connection refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
