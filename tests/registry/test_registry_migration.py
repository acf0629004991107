"""An sqlite MLflow store moved to PostgreSQL (scripts/mlflow_sqlite_to_postgresql.py, what
docs/mlflow-postgresql.md tells operators to run): an `mlflow server` over the moved
database answers exactly as the sqlite store did — runs, params, metrics and their
histories, nested tuning trials, registered versions, aliases and lifecycle tags — and the
registry goes on from there (the next version, fresh experiment ids)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest

from sentiops.config import EXPERIMENT
from sentiops.models import load_model
from sentiops.params import TrainConfig
from sentiops.registry import lifecycle, tracking
from sentiops.training.train import train
from sentiops.training.tune import tune
from tests.conftest import make_frame
from tests.servers import Postgres, mlflow_server, postgres_bin

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mlflow_sqlite_to_postgresql.py"


def _config(tmp_path: Path, name: str, seed: int) -> TrainConfig:
    data = tmp_path / "d.csv"
    if not data.exists():
        make_frame(20).to_csv(data, index=False)
    return TrainConfig.model_validate(
        {"data": [str(data)], "output": tmp_path / name, "seed": seed, "drift_detector": False}
    )


def _snapshot() -> dict[str, Any]:
    """Everything the platform reads back from MLflow, in a comparable form."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    models = {}
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name='{model.name}'")
        models[model.name] = {  # versions: str from the sqlite store, int over REST
            "aliases": {alias: str(v) for alias, v in model.aliases.items()},
            "versions": {
                str(v.version): (v.run_id, v.source, v.status, dict(v.tags)) for v in versions
            },
        }
    return {
        "experiment": (experiment.experiment_id, experiment.artifact_location),
        "runs": {
            r.info.run_id: {
                "name": r.info.run_name,
                "status": r.info.status,
                "times": (r.info.start_time, r.info.end_time),
                "params": r.data.params,
                "metrics": r.data.metrics,
                "tags": r.data.tags,
                "history": {
                    key: [
                        (m.value, m.step, m.timestamp)
                        for m in client.get_metric_history(r.info.run_id, key)
                    ]
                    for key in r.data.metrics
                },
            }
            for r in runs
        },
        "models": models,
    }


def _row_counts(database: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(database) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def _move(sqlite: Path, database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(sqlite)],
        env={**os.environ, "MLFLOW_BACKEND_STORE_URI": database},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sqlite_store_moves_to_postgresql(
    postgres: Postgres, tmp_path: Path, sentiops_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the embedded default: two versions through the lifecycle, a tuning run with trials
    tracking.configure()
    first = train(_config(tmp_path, "m1", 1), progress=False).tracking["registered_version"]
    second = train(_config(tmp_path, "m2", 2), progress=False).tracking["registered_version"]
    lifecycle.mark_candidate(first, "s3://b/models/sentiment/1", {"approved": True})
    lifecycle.promote(first, "canary healthy")
    lifecycle.mark_candidate(second, "s3://b/models/sentiment/2", {"approved": True})
    lifecycle.reject(second, ["error rate 12% vs 0%"])
    tune(_config(tmp_path, "tuned", 3), 2, progress=False)
    before = _snapshot()
    assert len(before["runs"]) == 2 + 1 + 2

    # as on a cluster: the server switched to the new database first (it creates its schema)
    database = postgres.create_database("moved")
    with mlflow_server(tmp_path / "first-start", database):
        pass
    moved = _move(sentiops_home / "mlflow.db", database)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "tables match" in moved.stdout
    again = _move(sentiops_home / "mlflow.db", database)  # never over data
    assert again.returncode != 0 and "not empty" in again.stderr

    with mlflow_server(tmp_path / "mlflow", database) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        tracking.configure()
        assert _snapshot() == before
        assert lifecycle.version_of(lifecycle.CHAMPION) == first
        assert lifecycle.tags_of(second)["lifecycle.stage"] == "rejected"
        load_model(lifecycle.download(first, tmp_path / "download"))  # artifacts where they were
        # the registry goes on where it was: the next version, a new experiment's own id
        third = train(_config(tmp_path, "m3", 4), progress=False).tracking["registered_version"]
        assert third == "3" and lifecycle.version_of(lifecycle.CHALLENGER) == "3"
        client = mlflow.MlflowClient()
        ids = {e.experiment_id for e in client.search_experiments()}
        assert client.create_experiment("after-the-move") not in ids

    # a backup as docs/mlflow-postgresql.md takes it (pg_dump, custom format) restores whole
    restored = postgres.create_database("restored")
    dump = tmp_path / "mlflow.dump"
    bindir = postgres_bin()
    run = subprocess.run  # the client tools of the server's version
    run([str(bindir / "pg_dump"), "-Fc", "-f", str(dump), "-d", database], check=True)
    run([str(bindir / "pg_restore"), "--no-owner", "-d", restored, str(dump)], check=True)
    assert _row_counts(restored) == _row_counts(database)
