"""The rollout's decision record: every look with every metric's verdict (shaped like the gate's
checks: value, threshold, message, plus the statistics: anytime p-value, e-value, the accuracy
drop's bound), the decision and its reasons, flags (promoted without evidence, approved by a
person), an undecided outcome's numbers, every approval request and its answer, the request a
rollout is waiting on, the notifications sent and failed, the thresholds; JSON and Markdown."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sentiops.records import write_json
from sentiops.rollout.judge import FAIL, Verdict, _fmt

PROMOTED, ROLLED_BACK = "promoted", "rolled_back"


@dataclass
class Step:
    traffic: int
    verdict: str  # continue | hold | promote | rollback | inconclusive | waiting (for a person)
    checks: list[Verdict]
    score: float  # share of metrics that passed, 0-100
    canary: dict[str, Any]
    stable: dict[str, Any]
    started_at: str
    ended_at: str
    # "live": stable's traffic in this step; else which earlier steps' stable traffic the
    # canary was compared with (at 100 % the stable version serves nothing)
    baseline: str = "live"
    # how much of the step the `canary` / `stable` numbers cover: the step so far, holds
    # included (0: not recorded); the verdicts judge the whole rollout so far
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
    # what people should know about the decision: promoted without evidence (the inconclusive
    # policy), approved or rejected by a person or by the approval timeout
    flags: list[str] = field(default_factory=list)
    # undecided by a step's deadline: why, the policy applied, the numbers it would take
    inconclusive: dict[str, Any] | None = None
    # every approval request: what waited, since when, the answer, by whom (person | timeout |
    # the judge, which rolls back a canary that turns out worse while it waits)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    waiting: dict[str, Any] | None = None  # the request a running rollout waits on, and how
    notifications: dict[str, int] = field(default_factory=dict)  # sent / failed / dropped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: Path) -> Path:
        return write_json(self.to_dict(), path)

    def to_markdown(self) -> str:
        verdict = "PROMOTED" if self.decision == PROMOTED else "ROLLED BACK"
        shadow = self.mode == "shadow"
        who = "Shadow" if shadow else "Canary"
        lines = [
            f"# {who} rollout: {verdict}",
            "",
            f"{who} v{self.canary_version} vs stable v{self.stable_version or '-'}, "
            f"{self.started_at} - {self.ended_at}.",
            "",
            *(
                [
                    "A copy of the step's share of requests went to the shadow; every client got "
                    "stable's answer. The canary column is the shadow.",
                    "",
                ]
                if shadow
                else []
            ),
            *(
                [
                    f"**Waiting for approval** ({self.waiting.get('waiting', '')}): "
                    f"{self.waiting.get('how', '')}",
                    "",
                ]
                if self.waiting
                else []
            ),
            *[f"**{flag}**" for flag in self.flags],
            *([""] if self.flags else []),
            "Each look's verdicts judge all of the rollout's data so far (always-valid: the "
            "p-values hold however many looks the rollout takes); the look's own traffic is "
            "in its first line.",
            "",
        ]
        for i, s in enumerate(self.steps, 1):
            lines += _look_lines(i, s)
        if self.approvals:
            lines += (
                ["Approvals:", ""]
                + [
                    f"- {a.get('waiting', '')} (asked {a.get('since', '')}): "
                    f"{a.get('answer') or 'no answer yet'}"
                    + (f" by {a['by']} at {a.get('answered_at', '')}" if a.get("by") else "")
                    for a in self.approvals
                ]
                + [""]
            )
        if self.inconclusive:
            lines += [
                f"Inconclusive at step {self.inconclusive.get('step')}: policy "
                f"{self.inconclusive.get('policy')}.",
                "",
            ]
        if self.reasons:
            lines += ["Reasons:", ""] + [f"- {r}" for r in self.reasons] + [""]
        if self.notifications:
            sent = ", ".join(f"{k} {v}" for k, v in sorted(self.notifications.items()))
            lines += [f"Notifications: {sent}", ""]
        lines.append("Thresholds: " + ", ".join(f"{k}={v}" for k, v in self.thresholds.items()))
        return "\n".join(lines) + "\n"


def _look_lines(i: int, s: Step) -> list[str]:
    moved = "copied to the shadow" if s.mode == "shadow" else "to the canary"
    served = (
        (
            f"This step so far ({s.window_seconds:.0f}s): canary "
            f"{s.canary.get('requests', 0):.0f} requests, stable "
            f"{s.stable.get('requests', 0):.0f}."
        )
        if s.window_seconds
        else ""
    )
    lines = [
        f"## Look {i}: {s.traffic}% {moved} -> {s.verdict} (score {s.score:.0f})",
        "",
        *([served, ""] if served else []),
        *([f"Compared with {s.baseline}.", ""] if s.baseline != "live" else []),
        "| metric | result | effect | margin | anytime p | e-value | canary | stable |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in s.checks:
        result = c.result if c.result != FAIL else "**fail**"
        lines.append(
            f"| {c.name} | {result} | {_fmt(c.value)} | {_fmt(c.threshold)} | "
            f"{_fmt(c.p_value)} | {_fmt(c.e_value)} | {_fmt(c.canary)} | {_fmt(c.stable)} |"
        )
        if c.bound is not None:
            shown = "within" if c.noninferior else "not yet within"
            lines.append(
                f"| | accuracy drop at most {c.bound:.3f}: {shown} the margin | | | | | | |"
            )
    return [*lines, ""]
