"""The loop's report: live accuracy before and after on the new domain, from the random
evaluation sample, with the one-sided test that it rose."""

from __future__ import annotations

from sentiops.local.loop.story import improvement_p, verdict


def _row(version: str, correct: int, labels: int) -> dict[str, object]:
    from sentiops.scoring import wilson_interval

    low, high = wilson_interval(correct, labels)
    return {
        "model_version": version,
        "labels": labels,
        "correct": correct,
        "accuracy": correct / labels,
        "accuracy_95": [low, high],
    }


def test_a_clear_rise_is_called_better_with_its_p_value() -> None:
    before, after = _row("2", 670, 1000), _row("3", 227, 300)
    p = improvement_p(before, after)
    assert p < 0.01
    line = verdict(before, after, "vader-movies", 0.05)
    assert "v2 0.670" in line and "v3 0.757" in line and "n=300" in line
    assert ": better (one-sided Fisher p = " in line


def test_a_rise_within_the_noise_is_not_shown_better() -> None:
    before, after = _row("2", 670, 1000), _row("3", 21, 30)
    assert improvement_p(before, after) > 0.05
    assert "not shown better" in verdict(before, after, "vader-movies", 0.05)
    worse = _row("3", 180, 300)
    assert improvement_p(before, worse) > 0.9
    assert "not shown better" in verdict(before, worse, "vader-movies", 0.05)


def test_no_change_and_no_labels_are_said_plainly() -> None:
    before = _row("2", 670, 1000)
    assert "the model did not change" in verdict(before, before, "vader-movies")
    assert "too few labels" in verdict(None, before, "vader-movies")


def test_the_first_window_of_the_new_traffic_and_its_estimate_in_words() -> None:
    from datetime import UTC, datetime

    from sentiops.local.loop.story import estimate_line, first_window_after

    shift = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    estimate = {
        "n": 100,
        "accuracy": {"value": 0.71, "low": 0.63, "high": 0.79},
        "macro_f1": {"value": 0.52},
        "validation_accuracy": 0.8,
    }
    status = {
        "versions": {
            "2": {
                "recent": [
                    {
                        "first": "2026-12-05T09:59:58+00:00",
                        "estimate": estimate,
                    },  # straddles the shift
                    {"first": "2026-12-05T10:00:03+00:00", "estimate": estimate, "window_id": "b"},
                ]
            }
        }
    }
    window = first_window_after(status, "2", shift)
    assert window is not None and window["window_id"] == "b"
    assert first_window_after(status, "3", shift) is None
    assert first_window_after({}, "2", shift) is None
    line = estimate_line("2", "vader-movies", window)
    assert "before any label" in line and "0.710 (95 % 0.630-0.790, window of 100)" in line
    assert "vs 0.800 on its validation rows" in line
    far = {
        "labels": 400.0,
        "estimated": 0.72,
        "realized": 0.55,
        "error": 0.17,
        "expected_within": 0.04,
    }
    line = estimate_line("2", "vader-movies", window, far)
    assert "estimated accuracy 0.720" in line and "realized 0.550 on 400 labels" in line
    assert "+0.170" in line and "p(label | text)" in line
    near = far | {"realized": 0.70, "error": 0.02}
    assert "within what the calibration explains" in estimate_line("2", "x", None, near)


def test_the_labelled_estimate_reads_the_random_sample_of_one_version_and_domain(tmp_path) -> None:
    from datetime import UTC, datetime

    import pandas as pd

    from sentiops.local.loop.story import labelled_estimate

    rows = [
        {
            "id": f"i{i}",
            "text": f"t{i}",
            "label": "positive",
            "predicted_label": "positive" if i % 4 else "negative",
            "confidence": 0.9,
            "model_name": "sentiment",
            "model_version": "2" if i < 40 else "3",
            "sample": "random" if i % 10 else "targeted",
        }
        for i in range(60)
    ]
    folder = tmp_path / "labels" / "feedback" / f"date={datetime.now(UTC):%Y-%m-%d}"
    folder.mkdir(parents=True)
    from sentiops.feedback.labels import COLUMNS

    df = pd.DataFrame(rows)
    for i, column in enumerate(c for c in COLUMNS if c not in df.columns):
        df[column] = f"2026-12-05T10:00:{i:02d}+00:00" if column.endswith("_at") else ""
    df.to_parquet(folder / "part-000000-a.parquet")
    domain = {f"t{i}": "vader-movies" if i < 30 else "vader-tweets" for i in range(60)}
    got = labelled_estimate(str(tmp_path), domain, "2", "vader-movies")
    # rows 0-29 of v2 on movies, minus the targeted 0, 10, 20: 27 labels; wrong: 4, 8, 12, 16,
    # 24, 28
    assert got is not None and got["labels"] == 27
    assert got["estimated"] == 0.9 and got["realized"] == round(21 / 27, 4)
    assert labelled_estimate(str(tmp_path), domain, "9", "vader-movies") is None
