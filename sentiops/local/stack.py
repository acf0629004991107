"""The embedded default's servers on loopback: predictors (`python -m serving`), the drift
sidecar and Debian's Prometheus scraping them, and the tokens of one run. Used by the local
rollout (`sentiops.local.rollout`), `make run` and `make up`: the same predictor, metrics and
judge as on a cluster, only the plumbing differs.

Every server is a child process bound to 127.0.0.1 (`sentiops.local.processes`) and is stopped
by `stop()`, also on errors and Ctrl-C.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sentiops.config import MODEL_NAME
from sentiops.detection.environment import drift_python
from sentiops.errors import StackError
from sentiops.labelling.studio import (
    Admin,
    Studio,
    label_studio_executable,
    server_args,
    server_env,
)
from sentiops.local.processes import Process, find_tool, free_port, start_process, wait_http
from sentiops.security.auth import generate


# ------------------------------------------------------------------------------ tokens
@dataclass
class StackTokens:
    """Tokens made for one run of the local stack (`sentiops.security.auth`, files of mode
    0600 in its folder, never printed): the annotators' token for label feedback, the
    labelling receiver's (labels from Label Studio: its own file, the annotators never see it),
    and the predictors' token for the inference log they send the drift sidecar."""

    folder: Path
    annotators: str = ""

    def __post_init__(self) -> None:
        self.folder = Path(self.folder).resolve()
        self.annotators = generate(self.token_file, ("annotators",))["annotators"]
        receiver = generate(self.labelstudio_token_file, ("labelstudio",))["labelstudio"]
        with open(self.token_file, "a") as fh:  # the predictors accept it beside the annotators'
            fh.write(f"labelstudio:{receiver}\n")
        generate(self.logger_token_file, ("predictor",))

    @property
    def labelstudio_token_file(self) -> Path:
        return self.folder / "labelstudio-token"

    @property
    def token_file(self) -> Path:
        return self.folder / "tokens"

    @property
    def logger_token_file(self) -> Path:
        return self.folder / "logger-token"

    def predictor_args(self) -> list[str]:
        return [
            f"--auth_token_file={self.token_file}",
            f"--logger_token_file={self.logger_token_file}",
        ]

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

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.alive()

    def launch(self) -> Process:
        """Start the process without waiting for it to become ready."""
        args = [
            sys.executable,
            "-m",
            "serving",
            f"--model_name={self.name}",
            f"--model_dir={self.model_dir}",
            f"--http_port={self.http_port}",
            f"--grpc_port={self.grpc_port}",
            "--host=127.0.0.1",
            *self.extra_args,
        ]
        self.process = start_process(
            f"predictor-{self.version}",
            args,
            self.workdir,
            {"SENTIOPS_MODEL_VERSION": self.version},
        )
        return self.process

    def start(
        self, timeout: float = 180.0, *, progress: Callable[[str], Any] | None = None
    ) -> Predictor:
        """Launch and wait until ready (`progress` hears every ~10 s that it waits); a
        predictor that never gets ready is stopped."""
        self.process = self.launch()
        try:
            wait_http(
                f"{self.url}/v2/models/{self.name}/ready",
                self.process,
                timeout,
                f"predictor v{self.version} ready",
                progress=progress,
            )
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
        from sentiops.store.storage import is_s3  # lazy: pulls minio

        self.workdir = Path(self.workdir).resolve()
        self.store = self.store if is_s3(self.store) else str(Path(self.store).resolve())

    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(
        self, timeout: float = 240.0, *, progress: Callable[[str], Any] | None = None
    ) -> DriftSidecar:
        """Start it and wait until it is ready (`progress` hears every ~10 s that it waits).
        Its output is unbuffered, and so is a retraining run's it starts (`--retrain-mode
        command`): their logs can be followed as they grow."""
        python = drift_python()
        if python is None:
            raise StackError(
                "the drift environment is missing (.venv-drift or $SENTIOPS_DRIFT_PYTHON)",
                "run `make install` (it builds .venv-drift)",
            )
        argv = [
            str(python),
            "-m",
            "drift",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            str(self.store),
            "--workdir",
            str(self.workdir),
            *self.args,
        ]
        self.process = start_process(
            f"drift-{self.port}", argv, self.workdir, {"PYTHONUNBUFFERED": "1"}
        )
        wait_http(
            f"{self.url}/readyz", self.process, timeout, "drift sidecar ready", progress=progress
        )
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
        return yaml.safe_dump(
            {
                "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
                "scrape_configs": [
                    {
                        "job_name": "sentiops-predictor",
                        "static_configs": [{"targets": list(self.targets)}],
                    }
                ],
            }
        )

    def start(self, timeout: float = 60.0) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "prometheus.yml").write_text(self.config())
        self.process = start_process(
            "prometheus",
            [
                find_tool("prometheus"),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            self.workdir,
        )
        wait_http(f"{self.url}/-/ready", self.process, timeout, "prometheus ready")
        return self

    def set_targets(self, targets: list[str]) -> None:
        """Scrape other targets from now on (config rewritten, then reloaded)."""
        self.targets = list(targets)
        (self.workdir / "prometheus.yml").write_text(self.config())
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310 (loopback)
            pass

    def wait_scraped(self, targets: list[str], timeout: float = 30.0) -> None:
        """Wait until every target in `targets` has been scraped successfully (`up` = 1)."""
        import httpx

        deadline = time.monotonic() + timeout
        left = set(targets)
        while left:
            r = httpx.get(f"{self.url}/api/v1/query", params={"query": "up == 1"}, timeout=10)
            r.raise_for_status()
            left -= {s["metric"].get("instance") for s in r.json()["data"]["result"]}
            if not left:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"Prometheus has not scraped {', '.join(sorted(left))} in {timeout:.0f}s",
                    f"see {self.workdir / 'prometheus.log'} and the predictor's log",
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def round_trip(url: str, texts: list[str], name: str = MODEL_NAME) -> dict[str, Any]:
    """One v1 predict and one v2 (Open Inference Protocol) infer with `texts` against a
    predictor: what `make run` prints to show the served champion answering."""
    import httpx

    v1 = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": texts}, timeout=30)
    body = {
        "id": "make-run",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}],
    }
    v2 = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
    meta = httpx.get(f"{url}/v2/models/{name}", timeout=30)
    for r in (v1, v2, meta):
        if r.status_code != 200:
            raise StackError(f"{r.request.url} answered {r.status_code}: {r.text[:300]}", "")
    return {"v1": v1.json(), "v2": v2.json(), "metadata": meta.json()}


# ------------------------------------------------------------------------------ Label Studio
@dataclass
class _Loopback:
    """A child process of the stack listening on 127.0.0.1:`port`."""

    port: int = field(default_factory=free_port, kw_only=True)
    process: Process | None = field(default=None, kw_only=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class LabelStudio(_Loopback):
    """Label Studio (in its own environment, `.venv-labelstudio`) on loopback: sqlite and
    media in `folder/data`, the installation's admin and API token in `folder` (made once,
    mode 0600, never printed: `sentiops.labelling.studio.Admin`)."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder = Path(self.folder).resolve()

    @property
    def admin(self) -> Any:
        return Admin(self.folder)

    def start(
        self, timeout: float = 300.0, *, progress: Callable[[str], Any] | None = None
    ) -> LabelStudio:
        """Start it and wait until it answers (its first start migrates its database);
        `progress` hears every ~10 s that it waits."""
        exe = label_studio_executable()
        if exe is None:
            raise StackError(
                "Label Studio is not installed (.venv-labelstudio or $SENTIOPS_LABEL_STUDIO)",
                "run `make labelling-install` (its own environment, ~2 min)",
            )
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = server_env(self.admin.ensure(), data)
        args = server_args(exe, self.port, data)
        self.process = start_process(f"label-studio-{self.port}", args, self.folder, env)
        try:
            wait_http(
                f"{self.url}/health", self.process, timeout, "Label Studio ready", progress=progress
            )
        except BaseException:
            self.process.stop()
            raise
        return self

    def studio(self) -> Any:
        """Its REST API as the admin (`sentiops.labelling.studio.Studio`)."""
        return Studio(self.url, self.admin.token)


@dataclass
class LabellingReceiver(_Loopback):
    """`sentiops labels serve` on loopback: Label Studio's webhooks in, labels out through the
    predictors' feedback API with the annotators' token (`tokens`); the webhook secret is a
    file of its own in `workdir`."""

    workdir: Path
    studio: LabelStudio
    store: str
    feedback_url: str
    token_file: Path
    interval: float = 5.0

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()

    def start(
        self, timeout: float = 120.0, *, progress: Callable[[str], Any] | None = None
    ) -> LabellingReceiver:
        secret = self.workdir / "webhook-secret"
        if not secret.exists():
            generate(secret, ("labelstudio",))
        args = [
            str(Path(sys.executable).with_name("sentiops")),
            "labels",
            "serve",
            "--port",
            str(self.port),
            "--store",
            self.store,
            "--studio-url",
            self.studio.url,
            "--studio-token-file",
            str(self.studio.admin.token_file),
            "--feedback-url",
            self.feedback_url,
            "--token-file",
            str(self.token_file),
            "--webhook-secret-file",
            str(secret),
            "--interval",
            str(self.interval),
        ]
        self.process = start_process(f"labelling-{self.port}", args, self.workdir)
        try:
            wait_http(
                f"{self.url}/healthz",
                self.process,
                timeout,
                "labelling receiver ready",
                progress=progress,
            )
        except BaseException:
            self.process.stop()
            raise
        return self
