"""Several training runs and tuning trials at once against one MLflow tracking server over
PostgreSQL — the cluster's shape: components reach `mlflow server` over HTTP, the server
(two workers, as the chart runs it) keeps the metadata in PostgreSQL. Six client processes
start together on an empty database (the experiment does not exist yet), each training into
the shared registered model, tuning, and walking a model of its own through the lifecycle;
afterwards every version is there exactly once with its run, the aliases point at existing
versions, and every run's metrics are complete. Then threads set new aliases for the first
time all at once (the race two training runs moving `challenger` first run into)."""

from __future__ import annotations

import json
import multiprocessing
import queue
import threading
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest

from sentiops.config import EXPERIMENT, REGISTERED_MODEL
from sentiops.models import load_model, modeldir
from sentiops.registry import lifecycle, tracking
from tests.conftest import make_frame
from tests.registry.registry_clients import SHARED_ROUNDS, TRIALS, client_process, own_model
from tests.servers import Postgres, mlflow_server

CLIENTS = 6
RACES, THREADS = 10, 8  # new aliases set at once by several threads
pytestmark = pytest.mark.integration


def _noisy_data(path: Path, seed: int) -> Path:
    """Learnable data with a quarter of the labels shuffled: scores differ between clients
    and trials, so a metric that went to the wrong run would show."""
    frame = make_frame(20, seed=seed)
    noisy = frame.sample(frac=0.25, random_state=seed).index
    frame.loc[noisy, "label"] = frame.loc[noisy, "label"].sample(frac=1.0, random_state=seed).values
    frame.to_csv(path, index=False)
    return path


def _run_clients(url: str, tmp_path: Path) -> dict[int, dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(CLIENTS), ctx.Queue()
    procs = [
        ctx.Process(
            target=client_process,
            args=(
                i,
                url,
                str(tmp_path / f"client-{i}"),
                str(_noisy_data(tmp_path / f"data-{i}.csv", i)),
                barrier,
                results,
            ),
            name=f"registry-client-{i}",
        )
        for i in range(CLIENTS)
    ]
    for p in procs:
        p.start()
    got: list[tuple[str, int, Any]] = []
    deadline = time.monotonic() + 840
    try:
        while len(got) < CLIENTS and time.monotonic() < deadline:
            try:
                got.append(results.get(timeout=5))
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    errors = [f"client {i}:\n{detail}" for status, i, detail in got if status != "ok"]
    assert not errors, "\n".join(errors)
    assert len(got) == CLIENTS, f"only {len(got)} of {CLIENTS} clients reported: {got}"
    return {i: out for _, i, out in got}


def _first_alias_races(versions: dict[str, str]) -> list[str]:
    """RACES new aliases of the shared model, each set by THREADS threads at once (every
    thread its own version); the errors they met."""
    numbers = sorted(versions, key=int)
    errors: list[str] = []

    def set_one(alias: str, version: str, start: threading.Barrier) -> None:
        start.wait(timeout=60)
        try:
            tracking.set_alias(REGISTERED_MODEL, alias, version)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(f"{alias} -> v{version}: {exc}")

    for race in range(RACES):
        start = threading.Barrier(THREADS)
        threads = [
            threading.Thread(
                target=set_one, args=(f"race-{race}", numbers[t % len(numbers)], start)
            )
            for t in range(THREADS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    return errors


def test_concurrent_training_and_tuning_lose_and_corrupt_nothing(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = postgres.create_database("concurrency")
    with mlflow_server(tmp_path / "mlflow", database, workers=2) as url:
        outs = _run_clients(url, tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        mlflow.set_tracking_uri(url)
        client = mlflow.MlflowClient()

        # the shared model: one version per training run, numbered without gaps, each once
        trained = [t for out in outs.values() for t in out["trained"]]
        expected = list(range(1, CLIENTS * SHARED_ROUNDS + 1))
        versions = client.search_model_versions(f"name='{REGISTERED_MODEL}'")
        assert sorted(int(v.version) for v in versions) == expected
        assert sorted(int(t["version"]) for t in trained) == expected
        run_of = {v.version: v.run_id for v in versions}
        for t in trained:
            assert run_of[t["version"]] == t["run_id"]
            run = client.get_run(t["run_id"])
            assert run.info.status == "FINISHED"
            assert run.data.metrics["val_macro_f1"] == pytest.approx(t["val_macro_f1"])
            assert run.data.metrics["test_macro_f1"] == pytest.approx(t["test_macro_f1"])
            assert lifecycle.tags_of(t["version"])["lifecycle.stage"] == "challenger"
        assert lifecycle.version_of(lifecycle.CHALLENGER) in run_of
        # every version's model directory came through the artifact proxy intact (loading
        # verifies its checksums) and is the one its run trained (the content version)
        for version, run_id in run_of.items():
            folder = lifecycle.download(version, tmp_path / "download" / version)
            load_model(folder)
            manifest = json.loads((folder / modeldir.MANIFEST).read_text())
            assert manifest["version"] == client.get_run(run_id).data.tags["model_version"]

        # tuning: one parent per client, one finished child run per trial with its value once
        experiment = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        per_client = SHARED_ROUNDS + 2 + 1 + TRIALS  # shared + own training, tune + trials
        assert len(runs) == CLIENTS * per_client
        assert {r.info.status for r in runs} == {"FINISHED"}
        parents = [r for r in runs if r.info.run_name.startswith("tune-")]
        assert len(parents) == CLIENTS
        logged = []
        for parent in parents:
            children = [
                r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
            ]
            assert len(children) == TRIALS
            for child in children:
                assert len(client.get_metric_history(child.info.run_id, "val_macro_f1")) == 1
            values = sorted(c.data.metrics["val_macro_f1"] for c in children)
            assert parent.data.metrics["best_val_macro_f1"] == pytest.approx(values[-1])
            logged.append(values)
        returned = [sorted(t["value"] for t in out["tuned"]["trials"]) for out in outs.values()]
        assert sorted(logged) == sorted(returned)

        # each client's own model: promoted twice, then reverted
        for index, out in outs.items():
            name = own_model(index)
            assert out["own"] == ["1", "2"] and out["reverted"] == ("2", "1")
            assert lifecycle.version_of(lifecycle.CHAMPION, name) == "1"
            assert lifecycle.version_of(lifecycle.PREVIOUS, name) == "2"
            assert lifecycle.version_of(lifecycle.CANDIDATE, name) is None
            assert lifecycle.tags_of("1", name)["lifecycle.stage"] == "champion"
            assert lifecycle.tags_of("2", name)["lifecycle.stage"] == "reverted"

        # an alias set for the first time by several clients at the same moment: each
        # inserts it, the store refuses all but one insert; tracking.set_alias sets it again
        errors = _first_alias_races(run_of)
        assert errors == [], errors
        aliases = client.get_registered_model(REGISTERED_MODEL).aliases
        assert {aliases[f"race-{a}"] for a in range(RACES)} <= set(run_of)

    # the same in PostgreSQL itself: every row where it belongs, no alias pointing nowhere
    import psycopg

    with psycopg.connect(database) as conn:
        count = conn.execute("SELECT count(*) FROM model_versions").fetchone()
        assert count is not None and count[0] == CLIENTS * (SHARED_ROUNDS + 2)
        dangling = conn.execute(
            "SELECT a.name, a.alias FROM registered_model_aliases a LEFT JOIN model_versions v"
            " ON v.name = a.name AND v.version = a.version WHERE v.version IS NULL"
        ).fetchall()
        assert dangling == []
        aliases = conn.execute("SELECT count(*) FROM registered_model_aliases").fetchone()
        # challenger and the races on the shared model; challenger, champion, previous each
        assert aliases is not None and aliases[0] == 1 + RACES + 3 * CLIENTS
