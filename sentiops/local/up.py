"""`make up` (`sentiops up`): the local stack until Ctrl-C — the registry's champion served
behind the traffic split with the drift sidecar and feedback, Prometheus, MLflow's UI and the
web console, with tweets replayed so there is something to see."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentiops.config import MODEL_NAME, get_settings
from sentiops.errors import StackError
from sentiops.local.loop.config import TWEETS
from sentiops.local.loop.run import test_texts


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
    from sentiops.labelling.studio import label_studio_executable
    from sentiops.local.processes import start_process, wait_http
    from sentiops.local.rollout import LocalStack
    from sentiops.local.stack import DriftSidecar, LabellingReceiver, LabelStudio, StackTokens
    from sentiops.pipeline.run import local_arguments, run_local
    from sentiops.registry import lifecycle as registry
    from sentiops.registry import tracking
    from sentiops.store.storage import local_model

    settings = get_settings()
    work = (workdir or settings.home / "up").resolve()
    store = str(settings.local_store)
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
    tokens = StackTokens(work)  # writes need a token: labels and the inference log
    sidecar = DriftSidecar(work / "drift", store, ["--flush-seconds", "5", *tokens.sidecar_args()])
    # Label Studio when its environment is built (`make labelling-install`): its data and the
    # installation's admin stay in $SENTIOPS_HOME/labelstudio from one `make up` to the next
    studio = LabelStudio(settings.home / "labelstudio") if label_studio_executable() else None
    receiver = None
    if studio is not None:
        receiver = LabellingReceiver(
            work / "labelling", studio, store, "", tokens.labelstudio_token_file
        )
    stack = LocalStack(
        work / "rollout",
        MODEL_NAME,
        predictor_args=[
            f"--logger_url={sidecar.url}/",
            f"--feedback_store={store}",
            *tokens.predictor_args(),
        ],
        extra_targets=[sidecar.target, *([receiver.target] if receiver else [])],
        progress=progress,
    )
    exe = Path(sys.executable).with_name
    children: list[Any] = []
    try:
        sidecar.start()
        stack.start(local_model(uri), str(version))
        stack.replay_texts(test_texts(TWEETS), rate)
        if studio is not None and receiver is not None:
            progress("starting Label Studio (its first start migrates its database: ~1 min)")
            children.append(studio.start())
            receiver.feedback_url = stack.split.url
            children.append(receiver.start())
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
        children.append(
            start_process(
                "console",
                [
                    str(exe("sentiops")),
                    "console",
                    "--port",
                    str(console_port),
                    "--predictor-url",
                    stack.split.url,
                    "--prometheus-url",
                    stack.prometheus.url,
                    "--mlflow-url",
                    mlflow_url,
                    "--rollout-dir",
                    str(work / "rollout"),
                ],
                work,
                {"SENTIOPS_LABEL_STUDIO_URL": studio.url} if studio else None,
            )
        )
        wait_http(f"{console_url}/healthz", children[-1], 120, "console ready")
        wait_http(f"{mlflow_url}/health", mlflow, 120, "MLflow UI ready")
        urls = {
            "console": console_url,
            "predictor (through the split)": stack.split.url,
            "prometheus": stack.prometheus.url,
            "mlflow": mlflow_url,
            "drift sidecar": sidecar.url,
        }
        if studio is not None and receiver is not None:
            urls["label studio"] = studio.url
            urls["labelling receiver"] = receiver.url
        for name, url in urls.items():
            progress(f"  {name:30s} {url}")
        progress(
            f"  labels need the annotators' token: it is in {tokens.token_file} (after "
            "`annotators:`); the console asks for it once per tab"
        )
        if studio is not None:
            progress(
                f"  Label Studio: sign in as {studio.admin.email}, the password is in "
                f"{studio.admin.password_file}; its projects fill from the labelling "
                "queue and the evaluation sample"
            )
        else:
            progress("  Label Studio: not installed (`make labelling-install` adds it)")
        progress(f"champion v{version} serving; tweets replayed at {rate:.0f}/s; Ctrl-C stops all")
        (wait or _until_interrupted)()
        return urls
    finally:
        progress("stopping every server")
        for child in reversed(children):
            child.stop()
        stack.stop()
        sidecar.stop()


def _until_interrupted() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return
