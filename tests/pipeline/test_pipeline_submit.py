"""`sentiops pipeline submit`: the real kfp.Client against a stand-in KFP v2beta1 REST API on
loopback that records what it is sent (there is no KFP backend on this machine)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import typer
from typer.testing import CliRunner

from sentiops.params import GateConfig
from tests.conftest import gate_and_pipeline_app
from tests.servers import free_port

pytestmark = pytest.mark.integration

IDS = {
    "experiments": {"experiment_id": "exp-1"},
    "runs": {"run_id": "run-1"},
    "recurringruns": {"recurring_run_id": "job-1"},
}


@pytest.fixture
def kfp_api() -> Iterator[tuple[str, list]]:
    calls: list[tuple[str, str, dict]] = []

    class Api(BaseHTTPRequestHandler):
        def _reply(self, obj: dict, code: int = 200) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            calls.append(("GET", self.path, {}))
            self._reply({})  # healthz; experiment lookups find nothing

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            calls.append(("POST", self.path, body))
            kind = self.path.split("/")[3].split("?")[0]
            self._reply(IDS[kind] | {"display_name": body.get("display_name")})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", calls
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cli() -> typer.Typer:
    return gate_and_pipeline_app()


def _posts(calls: list, kind: str) -> list[dict]:
    return [
        body
        for method, path, body in calls
        if method == "POST" and path.startswith(f"/apis/v2beta1/{kind}")
    ]


def test_submit_run_with_experiment_name_and_parameters(kfp_api, cli) -> None:
    host, calls = kfp_api
    res = CliRunner().invoke(
        cli,
        [
            "pipeline",
            "submit",
            "--host",
            host,
            "--experiment",
            "nightly",
            "--run-name",
            "try-1",
            "--image",
            "reg.example/sentiops/components:2",
            "--data",
            "s3://data/reviews.csv",
            "--model-type",
            "transformer",
            "--base-model",
            "offline",
            "--hyperparameters",
            '{"epochs": 1}',
            "--min-delta",
            "0.01",
            "--set",
            "model_name=sentiment-b",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "run_id: run-1" in res.output and f"{host}/#/runs/details/run-1" in res.output
    (exp,) = _posts(calls, "experiments")
    assert exp["display_name"] == "nightly"
    (run,) = _posts(calls, "runs")
    assert run["display_name"] == "try-1" and run["experiment_id"] == "exp-1"
    params = run["runtime_config"]["parameters"]
    assert params == {
        "datasets": ["s3://data/reviews.csv"],
        "model_type": "transformer",
        "base_model": "offline",
        "hyperparameters": {"epochs": 1},
        "gate": GateConfig(min_delta=0.01).model_dump(),
        "model_name": "sentiment-b",
    }
    spec = run["pipeline_spec"]
    spec = spec.get("pipeline_spec", spec)  # KFP wraps the spec when a platform spec exists
    assert spec["pipelineInfo"]["name"] == "sentiops-training"
    images = {ex["container"]["image"] for ex in spec["deploymentSpec"]["executors"].values()}
    assert images == {"reg.example/sentiops/components:2"}
    assert "sentiops-s3" in json.dumps(run["pipeline_spec"].get("platform_spec", {}))


def test_submit_recurring_run(kfp_api, cli) -> None:
    host, calls = kfp_api
    res = CliRunner().invoke(
        cli,
        [
            "pipeline",
            "submit",
            "--host",
            host,
            "--schedule",
            "0 0 3 * * *",
            "--run-name",
            "nightly-retrain",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "recurring_run_id: job-1" in res.output
    (job,) = _posts(calls, "recurringruns")
    assert job["display_name"] == "nightly-retrain" and job["experiment_id"] == "exp-1"
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert job["max_concurrency"] in (1, "1") and job["no_catchup"] is True
    assert job["runtime_config"]["parameters"] == {}  # the pipeline's defaults apply


def test_submit_to_unreachable_host_fails_cleanly(cli) -> None:
    res = CliRunner().invoke(
        cli, ["pipeline", "submit", "--host", f"http://127.0.0.1:{free_port()}"]
    )
    assert res.exit_code == 8
    assert "refused the submission" in res.output and "--host" in res.output
