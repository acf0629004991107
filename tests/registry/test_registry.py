"""The model lifecycle over MLflow aliases: challenger -> candidate -> champion, previous;
only an approved model becomes candidate, only the candidate is promoted or rejected, a
rejection leaves the champion alone, and every transition is tagged. Each test runs on both
backends: the embedded default (sqlite, no server) and the cluster's shape (a real `mlflow
server` over PostgreSQL, reached over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sentiops.errors import GateRejected, RegistryError
from sentiops.gate import promotion
from sentiops.gate.decision import decide
from sentiops.models import load_model, modeldir
from sentiops.models.tfidf import TfidfModel
from sentiops.params import GateConfig
from sentiops.registry import lifecycle as registry
from sentiops.registry import tracking
from tests.conftest import make_frame
from tests.servers import mlflow_server

FAST = GateConfig(n_resamples=1000)


@pytest.fixture(
    autouse=True, params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """sqlite: the default store under SENTIOPS_HOME. postgresql: a fresh database in the
    session's PostgreSQL and an `mlflow server` over it as MLFLOW_TRACKING_URI."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    database = request.getfixturevalue("postgres").create_database("registry")
    with mlflow_server(tmp_path / "mlflow", database) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url
    import psycopg

    with psycopg.connect(database) as conn:  # the versions went to PostgreSQL
        assert conn.execute("SELECT count(*) FROM model_versions").fetchone()[0] > 0


def _trained(folder: Path, seed: int) -> tuple[Path, str]:
    df = make_frame(30, seed=seed)
    model = TfidfModel.fit(df.text, df.label, char_ngrams=False)
    out = modeldir.write(folder, model.save, {"model_type": "tfidf-logreg", "labels": model.labels})
    fitted = registry.log_training(
        out, f"train-{seed}", {"seed": seed}, {}, {"validation": {"macro_f1": 0.9}}
    )
    return out, fitted["registered_version"]


def _approved(model_dir: Path):  # noqa: ANN202
    test = make_frame(20, seed=9)
    decision = decide(load_model(model_dir), test.text, test.label, None, FAST)
    assert decision.approved
    return decision


def test_lifecycle_promote_and_reject(tmp_path: Path) -> None:
    tracking.configure()
    assert registry.latest_version() is None
    first, v1 = _trained(tmp_path / "m1", 1)
    assert registry.latest_version() == v1
    assert registry.version_of(registry.CHALLENGER) == v1
    assert registry.tags_of(v1)["lifecycle.stage"] == "challenger"
    with pytest.raises(RegistryError, match="candidate is not set"):
        registry.promote(v1, "too early")

    decision = _approved(first)
    registry.record_gate(decision, v1)
    info = promotion.register(first, decision, str(tmp_path / "store"), registry_version=v1)
    assert registry.version_of(registry.CANDIDATE) == v1
    assert registry.tags_of(v1)["storage_uri"] == info["uri"]
    assert registry.promote(v1, "canary healthy") is None  # first champion: nothing before it
    assert registry.version_of(registry.CHAMPION) == v1
    assert registry.version_of(registry.CANDIDATE) is None
    assert registry.tags_of(v1)["lifecycle.champion_reason"] == "canary healthy"

    second, v2 = _trained(tmp_path / "m2", 2)
    assert registry.latest_version() == v2 == "2"
    registry.mark_candidate(v2, "s3://b/models/sentiment/2", _approved(second))
    with pytest.raises(RegistryError, match=f"the candidate is v{v2}"):
        registry.promote(v1, "wrong version")
    assert registry.promote(v2, "canary healthy") == v1
    assert registry.version_of(registry.CHAMPION) == v2
    assert registry.version_of(registry.PREVIOUS) == v1
    assert registry.tags_of(v1)["lifecycle.stage"] == "previous"

    third, v3 = _trained(tmp_path / "m3", 3)
    registry.mark_candidate(v3, "s3://b/models/sentiment/3", _approved(third))
    registry.reject(v3, ["error rate 12% vs 0%", "label mix diverged"])
    assert registry.version_of(registry.CHAMPION) == v2  # the rollback left it serving
    assert registry.version_of(registry.CANDIDATE) is None
    tags = registry.tags_of(v3)
    assert tags["lifecycle.stage"] == "rejected"
    assert "label mix diverged" in tags["lifecycle.rejected_reason"]
    assert [(e.alias, e.version) for e in registry.status()] == [
        ("challenger", v3),
        ("champion", v2),
        ("previous", v1),
    ]


def test_only_an_approved_model_becomes_candidate(tmp_path: Path) -> None:
    tracking.configure()
    first, v1 = _trained(tmp_path / "m1", 1)
    rejected = {"approved": False, "reasons": ["FAIL: improvement"]}
    with pytest.raises(GateRejected):
        registry.mark_candidate(v1, "s3://b/x", rejected)
    with pytest.raises(GateRejected):
        promotion.register(first, rejected, str(tmp_path / "store"), registry_version=v1)
    assert registry.version_of(registry.CANDIDATE) is None
    assert not (tmp_path / "store").exists()  # nothing pushed either


def test_record_gate_tags_version_and_run(tmp_path: Path) -> None:
    tracking.configure()
    first, v1 = _trained(tmp_path / "m1", 1)
    decision = _approved(first)
    registry.record_gate(decision, v1)
    tags = registry.tags_of(v1)
    assert tags["gate.approved"] == "true" and "gate.check.min_macro_f1" in tags
    run_id = tracking.client().get_model_version(tracking.REGISTERED_MODEL, v1).run_id
    assert tracking.client().get_run(run_id).data.tags["gate.approved"] == "true"
