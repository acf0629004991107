"""`make up` (`sentiops up`): the local stack until Ctrl-C — the registry's champion served
behind the traffic split with the drift sidecar and feedback, Prometheus, MLflow's UI and the
web console, with tweets replayed so there is something to see."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentiops.config import get_settings
from sentiops.errors import StackError
from sentiops.local.loop.config import TWEETS
from sentiops.local.loop.run import test_texts
from sentiops.local.processes import start_process, wait_http
from sentiops.pipeline.run import local_arguments, run_local
from sentiops.registry import lifecycle as registry
from sentiops.registry import tracking


def up(
    workdir: Path | None = None,
    rate: float = 5.0,
    console_port: int = 8501,
    mlflow_port: int = 5000,
    progress: Callable[[str], Any] = print,
    wait: Callable[[], Any] | None = None,
) -> dict[str, str]:
    """The local stack, kept up until `wait()` returns (default: until Ctrl-C): the registry's
    champion served behind the traffic split with the drift sidecar and feedback, Prometheus,
    MLflow's UI, the web console, and tweets replayed at `rate`/s so there is something to see.
    With no champion yet, the pipeline trains the baseline first. Returns the URLs."""
    from sentiops.local.wiring import Wiring  # lazy: pulls scipy
    from sentiops.store.storage import local_model  # lazy: pulls minio

    settings = get_settings()
    work = (workdir or settings.home / "up").resolve()
    version, uri = _champion(progress)
    # Label Studio when its environment is built (`make labelling-install`): its data and the
    # installation's admin stay in $SENTIOPS_HOME/labelstudio from one `make up` to the next
    wiring = Wiring.build(
        work,
        str(settings.local_store),
        sidecar_args=["--flush-seconds", "5"],
        label_studio=settings.home / "labelstudio",
        progress=progress,
    )
    children: list[Any] = []
    try:
        wiring.start(local_model(uri), version)
        wiring.stack.replay_texts(test_texts(TWEETS), rate)
        wiring.start_labelling()
        urls = _start_uis(wiring, work, console_port, mlflow_port, children)
        _tell(wiring, urls, progress)
        progress(f"champion v{version} serving; tweets replayed at {rate:.0f}/s; Ctrl-C stops all")
        (wait or _until_interrupted)()
        return urls
    finally:
        progress("stopping every server")
        for child in reversed(children):
            child.stop()
        wiring.stop()


def _champion(progress: Callable[[str], Any]) -> tuple[str, str]:
    """The registry's champion (version, storage URI); with none yet, the pipeline trains
    the baseline first."""
    settings = get_settings()
    tracking.configure(settings)
    version = registry.version_of(registry.CHAMPION)
    if version is None:
        progress("no champion yet: training the baseline with the pipeline (kfp.local)")
        run = run_local(local_arguments(settings, model_type="tfidf-logreg", champion="none"))
        if not run.approved:
            raise StackError("the baseline did not pass the gate", str(run.run_dir))
        version = registry.version_of(registry.CHAMPION)
    uri = registry.tags_of(str(version)).get(registry.STORAGE_URI_TAG)
    if not uri:
        raise StackError(
            f"champion v{version} has no storage URI",
            "promote a model that the pipeline registered (make run)",
        )
    return str(version), str(uri)


def _start_uis(
    wiring: Any, work: Path, console_port: int, mlflow_port: int, children: list[Any]
) -> dict[str, str]:
    """MLflow's UI and the web console (added to `children` as they start); the URLs of
    everything."""
    settings = get_settings()
    exe = Path(sys.executable).with_name
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    mlflow = start_process(
        "mlflow-ui",
        [
            str(exe("mlflow")),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--backend-store-uri",
            settings.tracking_uri,
            "--workers",
            "1",
        ],
        work,
    )
    children.append(mlflow)
    console_url = f"http://127.0.0.1:{console_port}"
    studio = wiring.studio
    console = start_process(
        "console",
        [
            str(exe("sentiops")),
            "console",
            "--port",
            str(console_port),
            "--predictor-url",
            wiring.stack.split.url,
            "--prometheus-url",
            wiring.stack.prometheus.url,
            "--mlflow-url",
            mlflow_url,
            "--rollout-dir",
            str(work / "rollout"),
        ],
        work,
        {"SENTIOPS_LABEL_STUDIO_URL": studio.url} if studio else None,
    )
    children.append(console)
    wait_http(f"{console_url}/healthz", console, 120, "console ready", progress=wiring.progress)
    wait_http(f"{mlflow_url}/health", mlflow, 120, "MLflow UI ready", progress=wiring.progress)
    served = wiring.urls()
    return {
        "console": console_url,
        "predictor (through the split)": served.pop("predictor (through the split)"),
        "prometheus": served.pop("prometheus"),
        "mlflow": mlflow_url,
        **served,  # the drift sidecar, Label Studio and the labelling receiver
    }


def _tell(wiring: Any, urls: dict[str, str], progress: Callable[[str], Any]) -> None:
    """Where everything is, and how to sign in."""
    for name, url in urls.items():
        progress(f"  {name:30s} {url}")
    progress(
        f"  labels need the annotators' token: it is in {wiring.tokens.token_file} (after "
        "`annotators:`); the console asks for it once per tab"
    )
    studio = wiring.studio
    if studio is not None:
        progress(
            f"  Label Studio: sign in as {studio.admin.email}, the password is in "
            f"{studio.admin.password_file}; its projects fill from the labelling "
            "queue and the evaluation sample"
        )
    else:
        progress("  Label Studio: not installed (`make labelling-install` adds it)")


def _until_interrupted() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return
