"""The rollout's decision record: every step with every metric's verdict (shaped like the gate's
checks: value, threshold, message), the decision and its reasons, the thresholds; written as
JSON and Markdown."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sentiops.rollout.judge import FAIL, Verdict, _fmt

PROMOTED, ROLLED_BACK = "promoted", "rolled_back"


@dataclass
class Step:
    traffic: int
    verdict: str  # continue | hold | promote | rollback
    checks: list[Verdict]
    score: float  # share of metrics that passed, 0-100
    canary: dict[str, Any]
    stable: dict[str, Any]
    started_at: str
    ended_at: str
    # "live": stable's traffic in this step; else which earlier step's stable traffic the
    # canary was compared with (at 100 % the stable version serves nothing)
    baseline: str = "live"
    # how much of the step the numbers cover: a held step is observed again over the whole
    # step so far (0: not recorded)
    window_seconds: float = 0.0
    # canary: `traffic` % of requests answered by the canary; shadow: copied to it (clients
    # always got stable's answer)
    mode: str = "canary"


@dataclass
class Record:
    decision: str  # promoted | rolled_back
    canary_version: str
    stable_version: str | None
    steps: list[Step]
    reasons: list[str]
    thresholds: dict[str, Any]
    started_at: str
    ended_at: str = ""
    mode: str = "canary"  # canary | shadow (sentiops.rollout.steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: Path) -> Path:
        from sentiops.records import write_json

        return write_json(self.to_dict(), path)

    def to_markdown(self) -> str:
        verdict = "PROMOTED" if self.decision == PROMOTED else "ROLLED BACK"
        shadow = self.mode == "shadow"
        lines = [
            f"# {'Shadow' if shadow else 'Canary'} rollout: {verdict}",
            "",
            f"{'Shadow' if shadow else 'Canary'} v{self.canary_version} vs stable "
            f"v{self.stable_version or '-'}, {self.started_at} - {self.ended_at}.",
            "",
            *(["A copy of the step's share of requests went to the shadow; every client got "
               "stable's answer. The canary column is the shadow.", ""] if shadow else []),
        ]  # fmt: skip
        for i, s in enumerate(self.steps, 1):
            moved = "copied to the shadow" if s.mode == "shadow" else "to the canary"
            lines += [
                f"## Step {i}: {s.traffic}% {moved} -> {s.verdict} (score {s.score:.0f})",
                "",
                *([f"Observed over the last {s.window_seconds:.0f}s.", ""]
                  if s.window_seconds else []),  # fmt: skip
                *([f"Compared with {s.baseline}.", ""] if s.baseline != "live" else []),
                "| metric | result | effect | margin | p-value | canary | stable |",
                "|---|---|---|---|---|---|---|",
            ]
            for c in s.checks:
                result = c.result if c.result != FAIL else "**fail**"
                lines.append(
                    f"| {c.name} | {result} | {_fmt(c.value)} | {_fmt(c.threshold)} | "
                    f"{_fmt(c.p_value)} | {_fmt(c.canary)} | {_fmt(c.stable)} |"
                )
            lines.append("")
        if self.reasons:
            lines += ["Reasons:", ""] + [f"- {r}" for r in self.reasons] + [""]
        lines.append("Thresholds: " + ", ".join(f"{k}={v}" for k, v in self.thresholds.items()))
        return "\n".join(lines) + "\n"
