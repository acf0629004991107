"""The whole loop, short variant, exactly as `make run` runs it (`sentiops loop --quick`):
the real CLI in its own process with its own SENTIOPS_HOME; every server real, on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sentiops.local.loop.config import LoopConfig
from tests.conftest import run_cli
from tests.servers import refused

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def test_the_loop_trains_serves_notices_drift_collects_labels_and_retrains(
    sentiops_home: Path,
) -> None:
    result = run_cli("loop", "--quick", env={"SENTIOPS_HOME": str(sentiops_home)}, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    story = json.loads((sentiops_home / "loop" / "story.json").read_text())
    chapters = {c["title"]: c["facts"] for c in story["chapters"]}
    assert list(chapters) == [
        "train",
        "serve",
        "canary",
        "shift",
        "drift",
        "retrain",
        "canary-2",
        "report",
    ]
    assert chapters["train"]["approved"] is True
    assert chapters["canary"]["decision"] in ("promoted", "rolled_back")
    assert chapters["drift"]["queued"] > 0 and chapters["drift"]["p_values"]["combined"] < 0.05
    # the accuracy estimated without labels right after the shift, then beside the realized one
    estimate = chapters["shift"]["estimated_right_after"]
    assert estimate["n"] > 0 and 0 < estimate["accuracy"]["value"] < 1
    assert "right after the shift, before any label of it: estimated accuracy" in result.stdout
    assert "(calibrated, no labels) vs realized" in result.stdout
    assert (
        chapters["report"]["estimated_vs_realized"][
            chapters["report"]["shifted_before"]["model_version"]
        ]["labels"]
        > 0
    )
    retrain = chapters["retrain"]
    assert retrain["labelled_rows"] >= LoopConfig.quick().min_labels
    # trained on the labels: the sidecar's snapshot of the burst's labels as they stand
    assert any("retrain/snapshots/" in d for d in retrain["datasets"]), retrain["datasets"]
    gate = retrain["gate"]
    report = chapters["report"]
    before, after = report["shifted_before"], report["shifted_after"]
    assert before["sample"] == after["sample"] == "random"
    # The quick loop's TF-IDF model gains ~+0.01 balanced macro-F1 from ~400-600 labels (measured:
    # 8 of 20 resampled test sets convince the gate at 95 %), so either outcome is correct here;
    # that the full loop improves the model is measured by five seeded runs (docs/results.md).
    if retrain["candidate"]:
        assert gate["gate.approved"] == "true", gate
        assert chapters["canary-2"]["decision"] in ("promoted", "rolled_back")
        if chapters["canary-2"]["decision"] == "promoted":
            assert after["model_version"] != before["model_version"]
            assert report["improvement_p"] is not None  # the one-sided test says how sure
            assert "one-sided Fisher p =" in result.stdout
    else:
        assert gate["gate.approved"] == "false", gate
        assert "fail" in {v for k, v in gate.items() if k.startswith("gate.check.")}, gate
        assert chapters["canary-2"]["decision"].startswith("skipped")
        assert after["model_version"] == before["model_version"]
        assert "the model did not change" in result.stdout
    # exactly one retraining run under the cooldown
    triggers = list((sentiops_home / "store" / "retrain" / "triggers").glob("*.json"))
    assert len(triggers) == 1
    # every server stopped
    serve = chapters["serve"]
    for url in (serve["prometheus"], serve["split"], serve["sidecar"]):
        assert refused(url), url
    assert "the loop in" in result.stdout
