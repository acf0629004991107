"""The loop's report: live accuracy before and after on the new domain, from the random
evaluation sample, with the one-sided test that it rose."""

from __future__ import annotations

from sentiops.local.loop.story import improvement_p, verdict


def _row(version: str, correct: int, labels: int) -> dict[str, object]:
    from sentiops.scoring import wilson_interval

    low, high = wilson_interval(correct, labels)
    return {"model_version": version, "labels": labels, "correct": correct,
            "accuracy": correct / labels, "accuracy_95": [low, high]}  # fmt: skip


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
