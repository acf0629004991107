"""Run the training pipeline: locally with kfp.local, or on a KFP backend with kfp.Client.

The pipeline definition and its components ship in the package (`sentiops.pipeline.kubeflow`).
Local runs use `kfp.local.SubprocessRunner(use_venv=False)`: every component runs in a subprocess
of this interpreter, offline, and writes its artifacts under `<SENTIOPS_HOME>/pipeline-runs/`.
With no canary rollout in a local run, an approved candidate is promoted to champion in one
explicit step afterwards (`sentiops.gate.promotion.promote_local`).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiops.config import (
    BASE_MODEL_PIPELINE,
    EXPERIMENT,
    REGISTERED_MODEL,
    Settings,
    get_settings,
)
from sentiops.errors import PipelineError
from sentiops.pipeline.kubeflow import COMPILED

__all__ = ["COMPILED", "PipelineError", "compile_pipeline", "run_local", "submit"]


def load_pipeline(image: str | None = None) -> Any:
    """The training pipeline with every component running from `image`."""
    from sentiops.pipeline.kubeflow.training import build  # lazy: pulls kfp

    return build(image)


def compile_pipeline(output: Path, image: str | None = None) -> Path:
    """Compile to YAML (`make pipeline` writes the packaged
    sentiops/pipeline/kubeflow/compiled/)."""
    from kfp import compiler

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(load_pipeline(image), str(output))
    return output


def local_arguments(settings: Settings | None = None, **overrides: Any) -> dict[str, Any]:
    """Pipeline arguments for a local run: this machine's MLflow store and S3 endpoint, and a
    local model store (`<SENTIOPS_HOME>/store`) unless `model_store` is given."""
    s = settings or get_settings()
    args: dict[str, Any] = {
        "mlflow_tracking_uri": s.tracking_uri,
        "s3_endpoint": s.s3_endpoint,
        "model_store": str(s.local_store),
        "rollout": "none",  # no cluster: the candidate is promoted right after the run
    }
    args.update({k: v for k, v in overrides.items() if v is not None})
    return args


@dataclass
class LocalRun:
    run_dir: Path
    decision: dict[str, Any]
    storage_uri: str | None = None
    log: Path | None = None
    promoted: str | None = None  # registry version promoted candidate -> champion

    @property
    def approved(self) -> bool:
        return bool(self.decision.get("approved"))


@contextlib.contextmanager
def _task_logs(log: Path | None) -> Iterator[None]:
    """kfp.local echoes every task's output (executor input JSON included) on stdout; send it
    to `log` unless verbose. kfp's own task start/finish lines (logging) still show."""
    with warnings.catch_warnings():
        # the component image is not a python:* image; the subprocess runner warns about that
        warnings.filterwarnings("ignore", category=RuntimeWarning, message=".*non-Python base")
        warnings.filterwarnings("ignore", category=FutureWarning)
        # resource requests are for the cluster; the local runner says it ignores them
        warnings.filterwarnings("ignore", category=UserWarning, message=".*no effect in the")
        if log is None:
            yield
            return
        with open(log, "a", buffering=1) as fh, contextlib.redirect_stdout(fh):
            yield


_ERROR_LINE = re.compile(r"^\s*[\w.]+(Error|Failed|Exception|Rejected|Exit)\b.*")


def _last_error(log: Path) -> str | None:
    """The last exception line a task printed (e.g. `sentiops.errors.DataError: ...`)."""
    if not log.exists():
        return None
    hits = [m.group(0).strip() for m in map(_ERROR_LINE.match, log.read_text().splitlines()) if m]
    return hits[-1][:500] if hits else None


def _task_output(run_dir: Path, task: str, name: str = "Output") -> Any:
    path = run_dir / task / "executor_output.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("parameterValues", {}).get(name)


def run_local(
    arguments: dict[str, Any],
    pipeline_root: Path | None = None,
    image: str | None = None,
    verbose: bool = False,
    promote: bool = True,
) -> LocalRun:
    """Run the whole pipeline with kfp.local's SubprocessRunner under this interpreter; then,
    with `promote`, make an approved candidate the champion (no canary in a local run)."""
    from kfp import local

    root = pipeline_root or (get_settings().home / "pipeline-runs")
    root.mkdir(parents=True, exist_ok=True)
    pipeline = load_pipeline(image)
    log = None if verbose else root / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    if log is not None:
        print(f"  task output (training progress included): tail -f {log}", file=sys.stderr)
    with _task_logs(log):
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
        try:
            task = pipeline(**arguments)
        except RuntimeError as exc:
            where = f"the task logs are in {log}" if log else "the failing task's log is above"
            cause = _last_error(log) if log else None
            raise PipelineError(
                f"local pipeline run failed: {exc}" + (f"\n  cause: {cause}" if cause else ""),
                f"{where}; artifacts are under {root}",
            ) from exc
    decision_path = Path(task.output.path)
    run_dir = decision_path.parent.parent
    decision = json.loads(decision_path.read_text())
    run = LocalRun(run_dir, decision, _task_output(run_dir, "register"), log)
    version = (decision.get("challenger") or {}).get("registry_version")
    if promote and run.approved and version:
        from sentiops.gate.promotion import promote_local  # lazy: pulls minio

        promote_local(version, arguments.get("registered_model") or REGISTERED_MODEL)
        run.promoted = version
    return run


def submit(
    host: str,
    arguments: dict[str, Any],
    *,
    experiment: str = EXPERIMENT,
    run_name: str | None = None,
    schedule: str | None = None,
    package: Path | None = None,
    image: str | None = None,
    namespace: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Submit a run (or, with a cron `schedule`, a recurring run) to a KFP backend.

    `package` is a compiled YAML; by default the pipeline is compiled now with `image`.
    """
    import kfp

    with tempfile.TemporaryDirectory() as tmp:
        path = package or compile_pipeline(Path(tmp) / "training.yaml", image)
        name = run_name or "sentiops-training"
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning)
                client = kfp.Client(
                    host=host, namespace=namespace or "kubeflow", existing_token=token
                )
            if schedule:
                exp = client.create_experiment(experiment, namespace=namespace)
                job = client.create_recurring_run(
                    experiment_id=exp.experiment_id,
                    job_name=name,
                    cron_expression=schedule,
                    pipeline_package_path=str(path),
                    params=arguments,
                    max_concurrency=1,
                    no_catchup=True,
                )
                return {
                    "recurring_run_id": job.recurring_run_id,
                    "experiment": experiment,
                    "experiment_id": exp.experiment_id,
                    "schedule": schedule,
                }
            result = client.create_run_from_pipeline_package(
                str(path),
                arguments=arguments,
                run_name=name,
                experiment_name=experiment,
                namespace=namespace,
            )
        except Exception as exc:  # noqa: BLE001 - API and connection errors alike
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PipelineError(
                f"KFP at {host} refused the submission: {first}",
                "check --host (the ml-pipeline API or UI URL), the namespace "
                "and the token; kubectl port-forward svc/ml-pipeline-ui works "
                "for a quick test",
            ) from exc
        return {
            "run_id": result.run_id,
            "experiment": experiment,
            "run_name": name,
            "url": f"{host.rstrip('/')}/#/runs/details/{result.run_id}",
        }


def champion_challenger(
    datasets: list[str],
    base_model: str = BASE_MODEL_PIPELINE,
    hyperparameters: dict[str, Any] | None = None,
    pipeline_root: Path | None = None,
    verbose: bool = False,
    progress: Callable[[str], Any] = print,
    settings: Settings | None = None,
    **overrides: Any,
) -> tuple[LocalRun, LocalRun]:
    """The local pipeline twice (`make run`): the TF-IDF baseline, gated only by the
    first-champion bar, becomes champion; then a transformer challenges it."""
    common = {"datasets": list(datasets), **overrides}
    progress("run 1/2: TF-IDF baseline (gated as a first champion: min_macro_f1)")
    first = run_local(
        local_arguments(
            settings, model_type="tfidf-logreg", champion="none", hyperparameters={}, **common
        ),
        pipeline_root,
        verbose=verbose,
    )
    progress(f"run 2/2: transformer ({base_model}) vs the registry's champion")
    second = run_local(
        local_arguments(
            settings,
            model_type="transformer",
            base_model=base_model,
            hyperparameters=hyperparameters or {},
            champion="",
            **common,
        ),
        pipeline_root,
        verbose=verbose,
    )
    return first, second
