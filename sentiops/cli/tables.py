"""What more than one command prints: the gate's decision (challenger and champion side by
side, every check) and a served model's answers (v1 and v2 round trip). Imports nothing of the
CLI but the consoles."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from sentiops.cli.common import console


def print_decision(decision: dict[str, Any], title: str = "promotion gate") -> None:
    verdict = "[bold green]APPROVED[/]" if decision["approved"] else "[bold red]REJECTED[/]"
    ch, cp = decision["challenger"], decision.get("champion")
    table = Table(
        title=f"{title}: challenger {ch.get('model_type')} {ch.get('version')} vs "
        + (f"champion {cp.get('model_type')} {cp.get('version')}" if cp else "no champion")
    )
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for c in decision["checks"]:
        table.add_row(c["name"], "pass" if c["passed"] else "[red]FAIL[/]", c["message"])
    console.print(comparison_table(ch, cp, decision.get("dataset") or {}))
    console.print(table)
    console.print(f"{verdict}  delta macro-F1 {decision['delta_macro_f1']:+.4f}", highlight=False)


def comparison_table(ch: dict[str, Any], cp: dict[str, Any] | None, dataset: dict) -> Table:
    """Challenger and champion side by side on the same held-out test set."""
    table = Table(title=f"held-out test set: dataset {dataset.get('version')} n={dataset.get('n')}")
    table.add_column("metric")
    table.add_column(f"challenger ({ch.get('model_type')})", justify="right")
    table.add_column(f"champion ({cp.get('model_type')})" if cp else "champion", justify="right")

    def num(m: dict[str, Any] | None, key: str, fmt: str = ".4f") -> str:
        value = (m or {}).get(key)
        return "-" if value is None else format(value, fmt)

    table.add_row("macro-F1", num(ch, "macro_f1"), num(cp, "macro_f1"))
    table.add_row("accuracy", num(ch, "accuracy"), num(cp, "accuracy"))
    for label in sorted(set(ch.get("recall", {})) | set((cp or {}).get("recall", {}))):
        table.add_row(
            f"recall {label}", num(ch.get("recall"), label), num((cp or {}).get("recall"), label)
        )
    table.add_row(
        "p95 latency (ms)", num(ch, "p95_latency_ms", ".1f"), num(cp, "p95_latency_ms", ".1f")
    )
    table.add_row("size (MB)", num(ch, "size_mb", ".1f"), num(cp, "size_mb", ".1f"))
    return table


def print_round_trip(answers: dict[str, Any], texts: list[str], version: str) -> None:
    """One v1 and one v2 answer for the same texts, side by side."""
    v2 = {o["name"]: o for o in answers["v2"]["outputs"]}
    table = Table(title=f"champion v{version} served: v1 :predict and v2 /infer (OIP)")
    for col in ("text", "v1 label", "v1 score", "v2 label", "v2 probabilities"):
        table.add_column(col)
    labels = answers["metadata"]["parameters"]["labels"]
    rows = zip(
        texts,
        answers["v1"]["predictions"],
        v2["label"]["data"],
        _rows(v2["probabilities"]["data"], len(labels)),
        strict=True,
    )
    for text, p1, label2, probs in rows:
        shown = ", ".join(f"{k} {p:.2f}" for k, p in zip(labels, probs, strict=True))
        table.add_row(text, p1["label"], f"{p1['score']:.3f}", label2, shown)
    console.print(table)
    console.print(
        f"v2 response id {answers['v2']['id']!r}, model_version "
        f"{answers['v2'].get('model_version')!r}",
        highlight=False,
    )


def _rows(flat: list[float], width: int) -> list[list[float]]:
    return [flat[i : i + width] for i in range(0, len(flat), width)]
