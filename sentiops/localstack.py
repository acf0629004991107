"""The embedded default's servers on loopback: predictors, a traffic split in front of them,
and Debian's Prometheus scraping them. Used by the local rollout (and `make run` / `make up`);
the same predictor, metrics and judge as on a cluster, only the plumbing differs.

Every server is a child process or a thread bound to 127.0.0.1 and is stopped by `close()` /
the context manager, also on errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentiops.config import MODEL_NAME
from sentiops.errors import StackError


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
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
            start_new_session=True,  # own process group: killpg stops it and its children
            env={**os.environ, **(env or {})},
        )  # fmt: skip
    return Process(name, proc, log)


def wait_http(url: str, process: Process | None, timeout: float, what: str) -> None:
    """Until `url` answers 200; fails early (with the log's tail) if the process exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise StackError(
                f"{process.name} exited ({process.proc.returncode}) before {what}",
                f"its log ({process.log}) ends with:\n{process.tail()}",
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback)
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    log = f"; log {process.log}:\n{process.tail()}" if process else ""
    raise StackError(f"{what}: no answer from {url} after {timeout:.0f}s ({last})", log)


# ------------------------------------------------------------------------------ tokens
@dataclass
class StackTokens:
    """Tokens made for one run of the local stack (`sentiops.security.auth`, files of mode
    0600 in its folder, never printed): the annotators' token for label feedback, and the
    predictors' token for the inference log they send the drift sidecar."""

    folder: Path
    annotators: str = ""

    def __post_init__(self) -> None:
        from sentiops.security.auth import generate

        self.folder = Path(self.folder).resolve()
        self.annotators = generate(self.token_file, ("annotators",))["annotators"]
        generate(self.logger_token_file, ("predictor",))

    @property
    def token_file(self) -> Path:
        return self.folder / "tokens"

    @property
    def logger_token_file(self) -> Path:
        return self.folder / "logger-token"

    def predictor_args(self) -> list[str]:
        return [f"--auth_token_file={self.token_file}",
                f"--logger_token_file={self.logger_token_file}"]  # fmt: skip

    def sidecar_args(self) -> list[str]:
        return ["--auth-token-file", str(self.logger_token_file)]

    @property
    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.annotators}"}


# ------------------------------------------------------------------------------ predictor
@dataclass
class Predictor:
    """`python -m serving` on a model directory (the image's command, on loopback)."""

    model_dir: Path
    version: str
    workdir: Path
    name: str = MODEL_NAME
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    process: Process | None = None

    def __post_init__(self) -> None:  # it runs in its own folder: paths resolved here
        self.model_dir, self.workdir = Path(self.model_dir).resolve(), Path(self.workdir).resolve()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def launch(self) -> Process:
        """Start the process without waiting for it to become ready."""
        args = [
            sys.executable, "-m", "serving", f"--model_name={self.name}",
            f"--model_dir={self.model_dir}", f"--http_port={self.http_port}",
            f"--grpc_port={self.grpc_port}", *self.extra_args,
        ]  # fmt: skip
        self.process = start_process(
            f"predictor-{self.version}", args, self.workdir,
            {"SENTIOPS_MODEL_VERSION": self.version},
        )  # fmt: skip
        return self.process

    def start(self, timeout: float = 180.0) -> Predictor:
        """Launch and wait until ready; a predictor that never gets ready is stopped."""
        self.process = self.launch()
        try:
            wait_http(f"{self.url}/v2/models/{self.name}/ready", self.process, timeout,
                      f"predictor v{self.version} ready")  # fmt: skip
        except BaseException:  # never leave a predictor behind that did not get ready
            self.process.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# ------------------------------------------------------------------------------ drift sidecar
@dataclass
class DriftSidecar:
    """The drift sidecar (`python -m drift`, in the drift environment's interpreter) on
    loopback: it takes the predictors' inference log on POST /, writes the prediction log and
    the labelling queue to `store`, exports /metrics and may trigger retraining.
    `args` are its flags (`python -m drift --help`)."""

    workdir: Path
    store: str
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:  # it runs in its own folder: paths resolved here
        from sentiops.store.storage import is_s3

        self.workdir = Path(self.workdir).resolve()
        self.store = self.store if is_s3(self.store) else str(Path(self.store).resolve())
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 240.0) -> DriftSidecar:
        from sentiops.drift.environment import drift_python

        python = drift_python()
        if python is None:
            raise StackError(
                "the drift environment is missing (.venv-drift or $SENTIOPS_DRIFT_PYTHON)",
                "run `make install` (it builds .venv-drift)",
            )
        argv = [str(python), "-m", "drift", "--host", "127.0.0.1", "--port", str(self.port),
                "--store", str(self.store), "--workdir", str(self.workdir), *self.args]  # fmt: skip
        self.process = start_process(f"drift-{self.port}", argv, self.workdir)
        wait_http(f"{self.url}/readyz", self.process, timeout, "drift sidecar ready")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# ------------------------------------------------------------------------------ prometheus
@dataclass
class Prometheus:
    """Debian's Prometheus on loopback, scraping `targets` (host:port) every `interval`."""

    workdir: Path
    targets: list[str]
    interval: str = "1s"
    port: int = field(default_factory=free_port)
    process: Process | None = None

    def __post_init__(self) -> None:  # it runs in its own folder: paths resolved here
        self.workdir = Path(self.workdir).resolve()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        import yaml

        return yaml.safe_dump(
            {
                "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
                "scrape_configs": [
                    {
                        "job_name": "sentiops-predictor",
                        "static_configs": [{"targets": list(self.targets)}],
                    }  # fmt: skip
                ],
            }
        )

    def start(self, timeout: float = 60.0) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "prometheus.yml").write_text(self.config())
        self.process = start_process(
            "prometheus",
            [
                find_tool("prometheus"), f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            self.workdir,
        )  # fmt: skip
        wait_http(f"{self.url}/-/ready", self.process, timeout, "prometheus ready")
        return self

    def set_targets(self, targets: list[str]) -> None:
        """Scrape other targets from now on (config rewritten, then reloaded)."""
        self.targets = list(targets)
        (self.workdir / "prometheus.yml").write_text(self.config())
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310 (loopback)
            pass

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# ------------------------------------------------------------------------------ traffic split
class TrafficSplit:
    """A reverse proxy on loopback that sends `canary_percent` % of requests to the canary
    and the rest to stable (per request, at random) — the local stand-in for Knative's split.
    Every path and method is forwarded as is."""

    def __init__(self, stable: str, port: int | None = None, seed: int = 0) -> None:
        self.stable, self.canary = stable, ""
        self.canary_percent = 0
        self.port = port or free_port()
        self.counts = {"stable": 0, "canary": 0}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, canary: str, percent: int) -> None:
        with self._lock:
            self.canary, self.canary_percent = canary, percent

    def _pick(self) -> tuple[str, str]:
        with self._lock:
            if self.canary and self._rng.random() * 100 < self.canary_percent:
                self.counts["canary"] += 1
                return "canary", self.canary
            self.counts["stable"] += 1
            return "stable", self.stable

    def app(self) -> Any:
        import httpx
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        client = httpx.AsyncClient(timeout=30.0)

        async def forward(request: Request) -> Response:
            _, upstream = self._pick()
            try:
                resp = await client.request(
                    request.method,
                    upstream + request.url.path,
                    params=request.query_params,
                    content=await request.body(),
                    headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                )
            except httpx.HTTPError as exc:
                return Response(f'{{"error": "upstream {upstream}: {exc}"}}', status_code=502,
                                media_type="application/json")  # fmt: skip
            drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
            headers = {k: v for k, v in resp.headers.items() if k.lower() not in drop}
            return Response(resp.content, status_code=resp.status_code, headers=headers)

        methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]
        return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])

    def start(self) -> TrafficSplit:
        import uvicorn

        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not getattr(self._server, "started", False):
            if time.monotonic() > deadline:
                raise StackError("traffic split did not start", "")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)


# ------------------------------------------------------------------------------ replay
class Replay:
    """Replays texts as live traffic: one v1 request per text to `url` at `rate` a second
    (open loop: `concurrency` clients take the next send slot, so one slow answer does not
    slow the others down), in a loop until stopped. Counts answers by status (a 5xx is a
    served error, not a crash); `on_response(text, body, request_id)` sees every 200."""

    def __init__(
        self,
        url: str,
        texts: list[str],
        rate: float = 50.0,
        name: str = MODEL_NAME,
        on_response: Callable[[str, dict[str, Any], str], Any] | None = None,
        concurrency: int = 8,
    ) -> None:
        if not texts:
            raise StackError("no texts to replay", "pass a file with a text column")
        self.url = f"{url}/v1/models/{name}:predict"
        self.texts, self.rate = list(texts), rate
        self.on_response = on_response
        self.stop_event = threading.Event()
        self.status: dict[int, int] = {}
        self._lock = threading.Lock()
        self._sent = 0
        self._base = 0
        self._t0 = 0.0
        self._threads = [
            threading.Thread(target=self._client, daemon=True, name=f"replay-{i}")
            for i in range(max(1, concurrency))
        ]

    def start(self) -> Replay:
        self._t0 = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def set_texts(self, texts: list[str]) -> None:
        """Replay other texts from now on (a traffic shift)."""
        if not texts:
            raise StackError("no texts to replay", "pass a file with a text column")
        with self._lock:
            self.texts = list(texts)

    def set_rate(self, rate: float) -> None:
        """Requests per second from now on."""
        if rate <= 0:
            raise StackError(f"replay rate {rate} must be > 0", "use e.g. 20")
        with self._lock:
            self._t0, self._base, self.rate = time.monotonic(), self._sent, rate

    def _next(self) -> tuple[float, str]:
        with self._lock:
            k = self._sent
            self._sent += 1
            return self._t0 + (k - self._base) / self.rate, self.texts[k % len(self.texts)]

    def _client(self) -> None:
        import uuid

        import httpx

        with httpx.Client(timeout=30.0) as client:
            while not self.stop_event.is_set():
                at, text = self._next()
                if self.stop_event.wait(max(0.0, at - time.monotonic())):
                    return
                request_id = uuid.uuid4().hex
                try:
                    resp = client.post(self.url, json={"instances": [text]},
                                       headers={"x-request-id": request_id})  # fmt: skip
                    code = resp.status_code
                    if self.on_response is not None and code == 200:
                        # the id the predictor answered with (it replaces a used one)
                        answered = resp.headers.get("x-request-id", request_id)
                        self.on_response(text, resp.json(), answered)
                except httpx.HTTPError:
                    code = 0
                with self._lock:
                    self.status[code] = self.status.get(code, 0) + 1

    def stop(self) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(10)


@contextlib.contextmanager
def closing_all(*items: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for item in reversed(items):
            with contextlib.suppress(Exception):
                item.stop()


def round_trip(url: str, texts: list[str], name: str = MODEL_NAME) -> dict[str, Any]:
    """One v1 predict and one v2 (Open Inference Protocol) infer with `texts` against a
    predictor: what `make run` prints to show the served champion answering."""
    import httpx

    v1 = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": texts}, timeout=30)
    body = {"id": "make-run", "inputs": [{"name": "text", "datatype": "BYTES",
                                           "shape": [len(texts)], "data": texts}]}  # fmt: skip
    v2 = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
    meta = httpx.get(f"{url}/v2/models/{name}", timeout=30)
    for r in (v1, v2, meta):
        if r.status_code != 200:
            raise StackError(f"{r.request.url} answered {r.status_code}: {r.text[:300]}", "")
    return {"v1": v1.json(), "v2": v2.json(), "metadata": meta.json()}
