"""Promotion gate: paired bootstrap, the guardrails, the no-champion rule, the decision record,
the registry side (tags, alias moves only on approval) and `sentiops gate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from sentiops.errors import ConfigError
from sentiops.evaluation import evaluate
from sentiops.gate import decision as gate
from sentiops.gate.decision import ModelSummary, compare
from sentiops.gate.report import decision_markdown
from sentiops.models import load_model, modeldir
from sentiops.models.tfidf import TfidfModel
from sentiops.params import GateConfig, parse
from sentiops.registry.lifecycle import gate_tags
from sentiops.significance import group_weights, paired_bootstrap
from tests.conftest import gate_and_pipeline_app, make_frame

LABELS = ["negative", "neutral", "positive"]
FAST = GateConfig(n_resamples=1000)


def _noisy(y: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wrong = np.array(LABELS)[rng.integers(0, 3, len(y))]
    return np.where(rng.random(len(y)) < accuracy, y, wrong)


@pytest.fixture(scope="module")
def y() -> np.ndarray:
    return np.array(LABELS)[np.random.default_rng(0).integers(0, 3, 600)]


# ------------------------------------------------------------------------ bootstrap + rules
def test_bootstrap_delta_is_the_macro_f1_difference_and_seeded(y) -> None:
    a, b = _noisy(y, 0.5, 1), _noisy(y, 0.8, 2)
    boot = paired_bootstrap(list(y), list(a), list(b), n_resamples=1000, seed=3)
    expected = f1_score(y, b, average="macro") - f1_score(y, a, average="macro")
    assert boot.delta == pytest.approx(expected, abs=1e-12)
    assert boot.ci_low < boot.delta < boot.ci_high and boot.confidence > 0.99
    assert paired_bootstrap(list(y), list(a), list(b), 1000, seed=3) == boot
    assert paired_bootstrap(list(y), list(a), list(b), 1000, seed=4).ci_low != boot.ci_low


def test_clearly_better_challenger_is_approved_and_record_is_complete(y) -> None:
    d = compare(
        list(y), list(_noisy(y, 0.8, 2)), list(_noisy(y, 0.6, 1)), FAST, dataset_version="abc123"
    )
    assert d.approved and d.delta_macro_f1 > 0.05
    assert [c.name for c in d.checks] == ["improvement", "confidence", "class_recall"]
    record = json.loads(json.dumps(d.to_dict()))
    assert {
        "approved",
        "delta_macro_f1",
        "reasons",
        "thresholds",
        "dataset",
        "challenger",
        "champion",
        "bootstrap",
    } <= set(record)
    assert record["dataset"] == {"version": "abc123", "n": 600}
    assert record["thresholds"]["n_resamples"] == 1000
    markdown = decision_markdown(d)
    assert "APPROVED" in markdown and "| confidence | pass |" in markdown
    tags = gate_tags(d)
    assert tags["gate.approved"] == "true" and tags["gate.dataset_version"] == "abc123"


def test_identical_predictions_are_never_approved(y) -> None:
    a = list(_noisy(y, 0.7, 1))
    d = compare(list(y), a, a, FAST)
    assert not d.approved and d.delta_macro_f1 == 0.0
    assert any(r.startswith("FAIL: improvement") for r in d.reasons)


def test_gain_below_min_delta_is_rejected(y) -> None:
    champ, chall = _noisy(y, 0.70, 1), _noisy(y, 0.72, 1)
    d = compare(list(y), list(chall), list(champ), GateConfig(n_resamples=1000, min_delta=0.2))
    assert 0 < d.delta_macro_f1 < 0.2 and not d.approved
    assert not {c.name: c for c in d.checks}["improvement"].passed


def test_small_noisy_gain_lacks_confidence() -> None:
    y = np.array(LABELS * 10)
    champ = y.copy()
    champ[:6] = "neutral"  # a few mistakes
    chall = champ.copy()
    chall[0] = y[0]  # one more right answer out of 30
    d = compare(list(y), list(chall), list(champ), FAST)
    checks = {c.name: c for c in d.checks}
    assert checks["improvement"].passed and not checks["confidence"].passed
    assert not d.approved


# --------------------------------------------------------------------------------- guardrails
def test_class_recall_guardrail(y) -> None:
    champ = _noisy(y, 0.5, 1)
    chall = _noisy(y, 0.98, 2)
    neg = np.flatnonzero(y == "negative")
    chall[neg[: int(len(neg) * 0.45)]] = "neutral"  # better overall, but loses negatives
    d = compare(list(y), list(chall), list(champ), FAST)
    checks = {c.name: c for c in d.checks}
    assert checks["improvement"].passed and checks["confidence"].passed
    assert not checks["class_recall"].passed and "negative" in checks["class_recall"].message
    assert not d.approved
    loose = GateConfig(n_resamples=1000, max_class_recall_drop=1.0)
    assert compare(list(y), list(chall), list(champ), loose).approved


@pytest.mark.parametrize(
    "summary, check",
    [
        (ModelSummary(p95_latency_ms=1500.0, size_mb=10.0), "latency_p95"),
        (ModelSummary(p95_latency_ms=5.0, size_mb=5000.0), "model_size"),
    ],
)
def test_latency_and_size_budgets(y, summary: ModelSummary, check: str) -> None:
    chall, champ = _noisy(y, 0.9, 2), _noisy(y, 0.6, 1)
    d = compare(list(y), list(chall), list(champ), FAST, challenger=summary)
    failed = [c.name for c in d.checks if not c.passed]
    assert failed == [check] and not d.approved
    # the budgets apply to a first champion as well
    first = compare(list(y), list(chall), None, FAST, challenger=summary)
    assert [c.name for c in first.checks if not c.passed] == [check]


def test_no_champion_rule_is_min_macro_f1(y) -> None:
    good = compare(list(y), list(_noisy(y, 0.9, 2)), None, FAST)
    assert good.approved and good.champion is None and good.bootstrap is None
    assert [c.name for c in good.checks] == ["min_macro_f1"]
    assert good.delta_macro_f1 == 0.0
    weak = compare(list(y), list(_noisy(y, 0.2, 2)), None, FAST)
    assert not weak.approved and "no champion yet" in weak.reasons[0]


def test_config_refuses_too_few_resamples() -> None:
    with pytest.raises(ValidationError):
        GateConfig(n_resamples=999)
    with pytest.raises(ValidationError):
        GateConfig(confidence=1.0)
    with pytest.raises(ConfigError, match="min_detla"):  # a typo is an error, never ignored
        parse(GateConfig, {"min_detla": 0.1})


# -------------------------------------------------------------------------- property tests
label = st.sampled_from(LABELS)


@st.composite
def gate_inputs(draw):
    n = draw(st.integers(5, 60))
    y = draw(st.lists(label, min_size=n, max_size=n))
    a = draw(st.lists(label, min_size=n, max_size=n))
    b = draw(st.lists(label, min_size=n, max_size=n))
    return y, a, b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gate_inputs(), st.floats(0.0, 0.2), st.floats(0.5, 0.99), st.integers(0, 10**6))
def test_never_approves_a_challenger_that_scores_worse(data, min_delta, conf, seed) -> None:
    y, champion, challenger = data
    labels = sorted(set(y) | set(champion) | set(challenger))
    ours = f1_score(y, challenger, labels=labels, average="macro", zero_division=0)
    theirs = f1_score(y, champion, labels=labels, average="macro", zero_division=0)
    cfg = GateConfig(
        n_resamples=1000, min_delta=min_delta, confidence=conf, seed=seed, max_class_recall_drop=1.0
    )
    d = compare(y, challenger, champion, cfg)
    if ours <= theirs:
        assert not d.approved, d.reasons
    if d.approved:
        assert d.delta_macro_f1 >= min_delta and d.delta_macro_f1 > 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gate_inputs(), st.data())
def test_never_approves_a_challenger_that_breaks_correct_predictions(data, draw) -> None:
    """Challenger = champion with some of its right answers turned wrong: always worse."""
    y, champion, _ = data
    right = [i for i, (t, p) in enumerate(zip(y, champion, strict=True)) if t == p]
    broken = draw.draw(st.lists(st.sampled_from(right), min_size=1, unique=True)) if right else []
    challenger = list(champion)
    for i in broken:
        challenger[i] = draw.draw(st.sampled_from([lab for lab in LABELS if lab != y[i]]))
    d = compare(y, challenger, champion, GateConfig(n_resamples=1000, max_class_recall_drop=1.0))
    assert not d.approved


# ------------------------------------------------------------------ real models, any type
def _tfidf(folder: Path, n_per_class: int, seed: int = 0) -> Path:
    df = make_frame(n_per_class, seed=seed)
    model = TfidfModel.fit(df.text, df.label, char_ngrams=False)
    return modeldir.write(
        folder, model.save, {"model_type": "tfidf-logreg", "labels": model.labels}
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate-models")
    strong = _tfidf(root / "strong", 40)
    weak_df = make_frame(40, seed=5)
    weak_df.loc[weak_df.label == "negative", "label"] = "neutral"  # never says negative
    weak = TfidfModel.fit(weak_df.text, weak_df.label, char_ngrams=False)
    weak_dir = modeldir.write(
        root / "weak", weak.save, {"model_type": "tfidf-logreg", "labels": weak.labels}
    )
    test = make_frame(30, seed=9)
    test_csv = root / "test.csv"
    test.to_csv(test_csv, index=False)
    return {"strong": strong, "weak": weak_dir, "test": test_csv}


def test_decide_on_model_directories(models) -> None:
    test = make_frame(30, seed=9)
    strong, weak = load_model(models["strong"]), load_model(models["weak"])
    d = gate.decide(strong, test.text, test.label, weak, FAST, "ds1")
    assert d.approved and d.challenger.version == strong.version
    assert d.champion is not None and d.champion.version == weak.version
    assert d.challenger.p95_latency_ms is not None and d.challenger.p95_latency_ms > 0
    assert d.challenger.size_mb == pytest.approx(evaluate.size_mb(models["strong"]))
    back = gate.decide(weak, test.text, test.label, strong, FAST)
    assert not back.approved


def test_calibration_budget_judges_a_calibrated_challenger_only(y) -> None:
    chall, champ = _noisy(y, 0.9, 2), _noisy(y, 0.6, 1)
    record = {
        "method": "temperature",
        "temperature": 1.4,
        "rows": 400,
        "before": {"ece": 0.2, "brier": 0.5},
        "after": {"ece": 0.03, "brier": 0.4},
    }
    far_off = ModelSummary(ece=0.25, brier=0.6, calibration=record)
    d = compare(list(y), list(chall), list(champ), FAST, challenger=far_off)
    check = next(c for c in d.checks if c.name == "calibration")
    assert not d.approved and not check.passed and check.value == 0.25
    assert "recalibrate" in check.message and check.threshold == FAST.max_ece
    within = ModelSummary(ece=0.04, brier=0.4, calibration=record)
    assert compare(list(y), list(chall), list(champ), FAST, challenger=within).approved
    loose = GateConfig(n_resamples=1000, max_ece=0.3)
    assert compare(list(y), list(chall), list(champ), loose, challenger=far_off).approved
    # raw probabilities (no calibrator): recorded, not judged
    raw = ModelSummary(ece=0.25, brier=0.6)
    d = compare(list(y), list(chall), list(champ), FAST, challenger=raw)
    check = next(c for c in d.checks if c.name == "calibration")
    assert d.approved and check.passed and "not judged" in check.message
    md = decision_markdown(compare(list(y), list(chall), None, FAST, challenger=far_off))
    assert "| ECE (served probabilities) | 0.25 |" in md and "temperature scaling" in md


def test_decide_records_ece_and_brier_of_served_probabilities(tmp_path: Path) -> None:
    """A model packaged by training serves calibrated probabilities; the gate's record has
    both models' ECE and Brier score on the test set and the challenger's calibrator."""
    from sentiops.params import TrainConfig
    from sentiops.training.train import train_on_splits

    df = make_frame(60, seed=11)
    cfg = TrainConfig(
        data=["synthetic"],
        output=tmp_path / "m",
        track=False,
        drift_detector=False,
        char_ngrams=False,
    )
    train_on_splits(cfg, df.iloc[:120], df.iloc[120:], None, {}, progress=False)
    test = make_frame(30, seed=12)
    d = gate.decide(load_model(tmp_path / "m"), test.text, test.label, None, FAST)
    assert d.challenger.ece is not None and 0 <= d.challenger.ece <= FAST.max_ece
    assert d.challenger.brier is not None and d.challenger.calibration["method"] == "temperature"
    assert "calibration" in [c.name for c in d.checks] and d.approved
    assert d.to_dict()["challenger"]["calibration"]["after"]["ece"] >= 0


# ------------------------------------------------------------------------------- the CLI
@pytest.fixture
def cli() -> typer.Typer:
    return gate_and_pipeline_app()


def test_gate_cli_writes_decision_and_exits_zero_either_way(cli, models, tmp_path: Path) -> None:
    runner = CliRunner()
    for chall, champ, approved in (("strong", "weak", True), ("weak", "strong", False)):
        out = tmp_path / f"{chall}.json"
        res = runner.invoke(
            cli,
            [
                "gate",
                "--champion",
                str(models[champ]),
                "--challenger",
                str(models[chall]),
                "--data",
                str(models["test"]),
                "--output-json",
                str(out),
                "--n-resamples",
                "1000",
                "--report-md",
                str(tmp_path / "d.md"),
            ],
        )
        assert res.exit_code == 0, res.output
        record = json.loads(out.read_text())
        assert record["approved"] is approved
        assert isinstance(record["delta_macro_f1"], float)
        assert record["reasons"] and all(isinstance(r, str) for r in record["reasons"])
        assert ("APPROVED" if approved else "REJECTED") in res.output
    assert "Promotion gate" in (tmp_path / "d.md").read_text()


def test_gate_cli_with_added_data_weighs_both_halves(cli, models, tmp_path: Path) -> None:
    """`sentiops gate --data original --data added`: the same groups as the pipeline's gate."""
    added = tmp_path / "labels.csv"
    make_frame(8, seed=11).to_csv(added, index=False)
    out = tmp_path / "g.json"
    res = CliRunner().invoke(
        cli,
        [
            "gate",
            "--champion",
            str(models["weak"]),
            "--challenger",
            str(models["strong"]),
            "--data",
            str(models["test"]),
            "--data",
            str(added),
            "--output-json",
            str(out),
            "--n-resamples",
            "1000",
        ],
    )
    assert res.exit_code == 0, res.output
    record = json.loads(out.read_text())
    assert record["dataset"]["balanced"] is True
    groups = record["dataset"]["groups"]
    assert set(groups) == {"original", "added"} and groups["added"]["weight"] == 0.5
    assert sum(g["n"] for g in groups.values()) == record["dataset"]["n"]
    assert set(record["dataset"]["test_sources"]) == {str(models["test"]), str(added)}


def test_gate_cli_errors_have_exit_codes(cli, models, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "gate",
            "--challenger",
            str(tmp_path / "missing"),
            "--data",
            str(models["test"]),
            "--output-json",
            str(tmp_path / "o.json"),
        ],
    )
    assert res.exit_code == 4 and "model directory not found" in res.output
    res = runner.invoke(
        cli,
        [
            "gate",
            "--challenger",
            str(models["strong"]),
            "--data",
            str(models["test"]),
            "--output-json",
            str(tmp_path / "o.json"),
            "--n-resamples",
            "10",
        ],
    )
    assert res.exit_code != 0 and not (tmp_path / "o.json").exists()


def _retraining_test_set() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A retraining run's test set: 900 original rows (both models about as good, each with its
    own mistakes) and 60 rows of labels from live traffic (champion poor, challenger good)."""
    y = np.array(LABELS)[np.random.default_rng(3).integers(0, 3, 960)]
    champion, challenger = _noisy(y, 0.6, 5), _noisy(y, 0.6, 63)
    challenger[900:] = _noisy(y[900:], 0.75, 6)
    champion[900:] = _noisy(y[900:], 0.35, 7)
    return y, champion, challenger, ["original"] * 900 + ["added"] * 60


def test_groups_weigh_the_labels_from_live_traffic_as_much_as_the_original_rows() -> None:
    y, champion, challenger, groups = _retraining_test_set()
    counted = compare(y, challenger, champion, FAST)
    balanced = compare(y, challenger, champion, FAST, groups=groups)
    assert not counted.approved  # 60 rows among 960: the gain drowns in the original rows
    assert balanced.approved, balanced.reasons
    assert balanced.delta_macro_f1 > 3 * counted.delta_macro_f1
    g = balanced.dataset["groups"]
    assert g["original"]["n"] == 900 and g["added"]["n"] == 60 and balanced.dataset["balanced"]
    assert g["added"]["challenger_macro_f1"] > g["added"]["champion_macro_f1"] + 0.15
    assert abs(g["original"]["challenger_macro_f1"] - g["original"]["champion_macro_f1"]) < 0.03
    assert "| added | 60 | 0.5 |" in decision_markdown(balanced)
    # switched off: rows count equally again, and the record says so
    off = compare(
        y, challenger, champion, GateConfig(n_resamples=1000, balance_sources=False), groups=groups
    )
    assert off.delta_macro_f1 == pytest.approx(counted.delta_macro_f1)
    assert off.dataset["balanced"] is False and off.dataset["groups"]["added"]["weight"] == 0.0625


def test_groups_do_not_hide_a_regression_on_the_original_data() -> None:
    """Better on the new traffic but much worse on the original data: rejected."""
    y, champion, challenger, groups = _retraining_test_set()
    challenger[:900] = _noisy(y[:900], 0.45, 5)
    decision = compare(y, challenger, champion, FAST, groups=groups)
    assert not decision.approved
    checks = {c.name: c for c in decision.checks}
    assert checks["improvement"].passed and not checks["group_drop"].passed  # gains overall
    g = decision.dataset["groups"]["original"]
    assert g["challenger_macro_f1"] < g["champion_macro_f1"] - 0.05


def test_group_weights_and_bad_groups() -> None:
    w = group_weights(["a"] * 3 + ["b"])
    assert w.tolist() == pytest.approx([4 / 6] * 3 + [2.0]) and w.sum() == pytest.approx(4)
    y = np.array(LABELS * 4)
    with pytest.raises(ValueError, match="12 test rows but 3 group names"):
        compare(y, y, y, FAST, groups=["a", "b", "c"])
    one = compare(y, y, _noisy(y, 0.5, 0), FAST, groups=["a"] * 12)  # one group: plain counting
    assert one.dataset["balanced"] is False and one.dataset["groups"]["a"]["weight"] == 1.0


def test_the_split_names_the_original_and_the_added_rows() -> None:
    from sentiops.data.datasets import SOURCE
    from sentiops.data.split import groups, split

    df = make_frame(20)
    df[SOURCE] = "tweets"
    added = make_frame(10, seed=7)
    added[SOURCE] = "labels/feedback/part-1.parquet"
    parts = split(pd.concat([df, added], ignore_index=True))
    test_groups = groups(parts["test"])
    assert test_groups is not None and test_groups[0] == "original"
    assert set(test_groups) == {"original", "added"}
    assert test_groups.count("added") == (parts["test"][SOURCE] != "tweets").sum()
    assert groups(df) is None  # one source only
