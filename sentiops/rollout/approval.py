"""A person in the loop: the rollout waits at a step until someone approves or rejects it.

The step loop (`sentiops.rollout.steps`) asks through a `Gate` and polls it; where the answer is
written depends on where the rollout runs:

    FileGate        locally: `approval.json` in the rollout's work folder; `sentiops rollout
                    approve|reject [--workdir DIR]` writes the answer (`answer_file`)
    AnnotationGate  on a cluster: the InferenceService's annotation `sentiops.io/rollout-approval`
                    (`sentiops.rollout.kserve`); `sentiops rollout approve|reject --namespace NS`
                    or `kubectl annotate` writes it

Asking always resets the answer to "pending", so an answer left from an earlier rollout is never
taken for this one; the request says what waits, since when, until when, and how to answer.
While it waits the canary keeps serving its share and the judge keeps looking: a canary that
turns out worse is rolled back without waiting for anyone. At the timeout the plan's policy
decides: `reject` (roll back), `approve` (go on) or `hold` (ask again and keep waiting).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sentiops.errors import RolloutError
from sentiops.records import write_json

APPROVE, REJECT, PENDING = "approve", "reject", "pending"
ANSWERS = (APPROVE, REJECT)
#: What happens when nobody answered in time: reject (roll back), approve, or hold (ask again).
TIMEOUT_POLICIES = ("reject", "approve", "hold")
PROMOTE_POINT = "promote"  # `Approval.before`: before promotion (after the last step)
APPROVAL_FILE = "approval.json"


@dataclass
class Approval:
    """Where a rollout waits for a person, and for how long.

    `before`: "" (never), the traffic percentage of a step ("100": before the canary goes to
    everyone; the first step's: before the rollout starts) or "promote" (after the last step,
    before promotion)."""

    before: str = ""
    timeout_seconds: float = 3600.0
    on_timeout: str = "reject"
    poll_seconds: float = 5.0

    def check(self, steps: list[int]) -> None:
        allowed = ["", PROMOTE_POINT, *(str(s) for s in steps)]
        if str(self.before) not in allowed:
            raise ValueError(
                f"approval before {self.before!r}: use a step's traffic percentage "
                f"({', '.join(map(str, steps))}) or {PROMOTE_POINT!r}"
            )
        if self.on_timeout not in TIMEOUT_POLICIES:
            raise ValueError(
                f"approval timeout policy must be one of {TIMEOUT_POLICIES}, "
                f"got {self.on_timeout!r}"
            )
        if self.timeout_seconds <= 0 or self.poll_seconds <= 0:
            raise ValueError("approval timeout and poll seconds must be > 0")


class Gate(Protocol):
    """Where a person answers a rollout's approval request."""

    how: str  # how to answer, in words (goes into the record and the notifications)

    def ask(self, request: dict[str, Any]) -> None:
        """Publish the request and reset the answer to pending."""

    def answer(self) -> str | None:
        """`approve` or `reject` once someone answered, else None."""

    def close(self) -> None:
        """The wait is over: remove the request and its answer."""


class FileGate:
    """The local gate: `<workdir>/approval.json` holds the request and, once given, the answer."""

    def __init__(self, workdir: Path) -> None:
        self.path = Path(workdir).resolve() / APPROVAL_FILE
        self.how = f"sentiops rollout approve|reject --workdir {self.path.parent}"

    def ask(self, request: dict[str, Any]) -> None:
        write_json({**request, "state": PENDING, "how": self.how}, self.path)

    def answer(self) -> str | None:
        state = read_request(self.path).get("state") if self.path.exists() else None
        return state if state in ANSWERS else None

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def read_request(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RolloutError(
            f"cannot read the approval request {path}: {exc}",
            "a rollout writes it when it waits; start the rollout again",
        ) from exc
    return found if isinstance(found, dict) else {}


def answer_file(workdir: Path, answer: str, by: str = "") -> dict[str, Any]:
    """Answer the local rollout waiting in `workdir` (what `sentiops rollout approve|reject`
    does without --namespace); returns the request answered."""
    if answer not in ANSWERS:
        raise RolloutError(f"answer {answer!r} is not one of {ANSWERS}", "approve or reject")
    path = Path(workdir).resolve() / APPROVAL_FILE
    request = read_request(path) if path.exists() else {}
    if request.get("state") != PENDING:
        raise RolloutError(
            f"no rollout waits for approval in {path.parent}",
            "pass the rollout's --workdir (default $SENTIOPS_HOME/rollout), or --namespace for "
            "a rollout on a cluster",
        )

    write_json({**request, "state": answer, "by": by}, path)
    return request
