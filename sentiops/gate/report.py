"""What people read of the gate's decision: its record as Markdown. Rendering only: the
numbers come from the gate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentiops.gate.decision import Decision


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _group_lines(decision: Decision) -> list[str]:
    groups = decision.dataset.get("groups")
    if not groups:
        return []
    how = (
        "each group weighs the same in every metric below and in the bootstrap"
        if decision.dataset.get("balanced")
        else "rows count equally"
    )
    lines = [
        f"Test set groups ({how}):",
        "",
        "| group | rows | weight | challenger macro-F1 | champion macro-F1 |",
        "|---|---|---|---|---|",
    ]
    for name, g in groups.items():
        lines.append(
            f"| {name} | {g['n']} | {g['weight']:.3g} | {g['challenger_macro_f1']:.4f} "
            f"| {_fmt(g.get('champion_macro_f1'))} |"
        )
    return [*lines, ""]


def _calibration_lines(record: dict[str, Any]) -> list[str]:
    """The challenger's calibrator: what it is and what it did on held-out validation rows."""
    if not record:
        return ["Calibration: none in the challenger's model directory (raw probabilities).", ""]
    if record.get("skipped"):
        return [f"Calibration: skipped ({record['skipped']}).", ""]
    b, a = record.get("before", {}), record.get("after", {})
    return [
        f"Calibration: {record.get('method')} scaling (T = {record.get('temperature', 1):.3f}"
        f"), fitted on {record.get('rows')} validation rows; on held-out halves ECE "
        f"{_fmt(b.get('ece'))} -> {_fmt(a.get('ece'))}, Brier {_fmt(b.get('brier'))} -> "
        f"{_fmt(a.get('brier'))}.",
        "",
    ]


def decision_markdown(decision: Decision) -> str:
    """The gate's decision record as Markdown (KFP Markdown artifact, `--report-md`)."""
    verdict = "APPROVED" if decision.approved else "REJECTED"
    ch, cp = decision.challenger, decision.champion
    lines = [
        f"# Promotion gate: {verdict}",
        "",
        f"Dataset {decision.dataset.get('version')} (n={decision.dataset.get('n')}), "
        f"decided {decision.decided_at}.",
        "",
        *(
            [
                "Test rows by source: "
                + ", ".join(f"{k} ({v})" for k, v in decision.dataset["test_sources"].items()),
                "",
            ]
            if decision.dataset.get("test_sources")
            else []
        ),
        *(
            [
                "Test rows by sample: "
                + ", ".join(f"{k} ({v})" for k, v in decision.dataset["test_samples"].items())
                + f" ({decision.dataset.get('test_samples_note', '')}).",
                "",
            ]
            if decision.dataset.get("test_samples")
            else []
        ),
        *_group_lines(decision),
        "| | challenger | champion |",
        "|---|---|---|",
        f"| model | {ch.model_type} {ch.version} | "
        + (f"{cp.model_type} {cp.version} |" if cp else "none yet |"),
        f"| registry version | {ch.registry_version or '-'} | "
        f"{(cp.registry_version or '-') if cp else '-'} |",
        f"| macro-F1 | {ch.macro_f1:.4f} | {f'{cp.macro_f1:.4f}' if cp else '-'} |",
        f"| accuracy | {ch.accuracy:.4f} | {f'{cp.accuracy:.4f}' if cp else '-'} |",
    ]
    for lab in sorted(set(ch.recall) | set(cp.recall if cp else {})):
        theirs = f"{cp.recall.get(lab, 0.0):.4f}" if cp else "-"
        lines.append(f"| recall {lab} | {ch.recall.get(lab, 0.0):.4f} | {theirs} |")
    lines += [
        f"| p95 latency (ms) | {_fmt(ch.p95_latency_ms)} | "
        f"{_fmt(cp.p95_latency_ms) if cp else '-'} |",
        f"| size (MB) | {_fmt(ch.size_mb)} | {_fmt(cp.size_mb) if cp else '-'} |",
        f"| ECE (served probabilities) | {_fmt(ch.ece)} | {_fmt(cp.ece) if cp else '-'} |",
        f"| Brier score | {_fmt(ch.brier)} | {_fmt(cp.brier) if cp else '-'} |",
        "",
        *_calibration_lines(ch.calibration),
    ]
    if decision.bootstrap:
        b = decision.bootstrap
        lines += [
            f"Paired bootstrap ({b.n_resamples} resamples, seed {b.seed}): "
            f"delta macro-F1 {b.delta:+.4f}, 95% CI [{b.ci_low:+.4f}, {b.ci_high:+.4f}], "
            f"P(delta > min_delta) = {b.confidence:.3f}.",
            "",
        ]
    lines += ["| check | result | value | threshold | |", "|---|---|---|---|---|"]
    for c in decision.checks:
        lines.append(
            f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {_fmt(c.value)} "
            f"| {_fmt(c.threshold)} | {c.message} |"
        )
    lines += ["", "Thresholds: " + ", ".join(f"{k}={v}" for k, v in decision.thresholds.items())]
    return "\n".join(lines) + "\n"
