"""What Label Studio's annotations say: each annotation's label, the label of a task (the
majority of its annotations; a tie is held for review), agreement between annotators
(Krippendorff's alpha, nominal, per project and per annotator), and the feedback item that
stores a task's label with its provenance.

A task's label is stored when a strict majority of its annotations (skipped ones left out)
chose it; the annotators who chose it are its `annotator`, the task is its `origin`
(`labelstudio:project=P:task=T`), and its annotations' ids and update times make its
`revision` — the same annotations again are no change, an edited annotation is a new revision,
and a task left without a majority (every annotation deleted, or a tie) withdraws the label it
had (`sentiops.feedback.labels`).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sentiops.feedback.labels import LABELS, MAX_PROVENANCE, Item
from sentiops.labelling.tasks import FROM_NAME

ORIGIN = "labelstudio"


@dataclass(frozen=True)
class Annotation:
    id: int
    annotator: str
    updated_at: str
    label: str | None  # None: skipped, or no label of the platform's set chosen


@dataclass
class TaskLabels:
    """One task and its annotations, as the labels they give."""

    project: int
    task: int
    prediction_id: str
    annotations: list[Annotation] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"{ORIGIN}:project={self.project}:task={self.task}"

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self.annotations if a.label is not None]

    def majority(self) -> str | None:
        """The label a strict majority of the annotations chose, else None (none, or a tie)."""
        counts = Counter(self.labels).most_common()
        if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
            return None
        return counts[0][0]

    @property
    def held(self) -> bool:
        """Annotations that disagree without a majority: a person reviews the task."""
        return bool(self.labels) and self.majority() is None

    def revision(self) -> str:
        """The annotations behind the label: their ids and update times (hashed) and ids."""
        parts = sorted(f"{a.id}@{a.updated_at}" for a in self.annotations if a.label)
        digest = hashlib.sha256(";".join(parts).encode()).hexdigest()[:16]
        ids = ",".join(p.split("@")[0] for p in parts)
        return f"{digest} annotations={ids}"[:MAX_PROVENANCE]

    def item(self, stored: tuple[str, str, bool] | None) -> Item | None:
        """The feedback item for this task's current state, given what is stored for its
        prediction id (origin, revision, withdrawn), or None when there is nothing to send
        (no label and none stored; or this very revision is stored already)."""
        label = self.majority()
        if label is None:
            if stored is None or stored[0] != self.origin or stored[2]:
                return None
            return Item(
                self.prediction_id, "", origin=self.origin, withdrawn=True, revision=self.revision()
            )
        revision = self.revision()
        if stored is not None and stored[:2] == (self.origin, revision) and not stored[2]:
            return None
        who = sorted({a.annotator for a in self.annotations if a.label == label})
        return Item(
            self.prediction_id,
            label,
            annotator=",".join(who)[:MAX_PROVENANCE],
            origin=self.origin,
            revision=revision,
        )


def label_of(annotation: dict[str, Any]) -> str | None:
    """The platform label an annotation chose (Label Studio's `result`), None if it was
    skipped or chose nothing the platform knows."""
    if annotation.get("was_cancelled"):
        return None
    for result in annotation.get("result") or []:
        if result.get("from_name") != FROM_NAME:
            continue
        chosen = (result.get("value") or {}).get("choices") or []
        if len(chosen) == 1 and chosen[0] in LABELS:
            return str(chosen[0])
    return None


def task_labels(task: dict[str, Any], users: dict[int, str]) -> TaskLabels | None:
    """A Label Studio task (with its annotations) as TaskLabels; None if it carries no
    prediction id (a task someone added by hand)."""
    pid = str((task.get("data") or {}).get("prediction_id") or "")
    if not pid:
        return None
    out = TaskLabels(int(task["project"]), int(task["id"]), pid)
    for a in task.get("annotations") or []:
        by = a.get("completed_by")
        uid = int(by["id"] if isinstance(by, dict) else by or 0)
        out.annotations.append(
            Annotation(
                int(a["id"]),
                users.get(uid, f"user-{uid}"),
                str(a.get("updated_at") or ""),
                label_of(a),
            )
        )
    return out


# ------------------------------------------------------------------------------ agreement
Weights = dict[Any, float]


def _coincidences(units: Iterable[Sequence[tuple[str, str]]]) -> tuple[Weights, Weights]:
    """Krippendorff's coincidences of nominal values: (all pairs, pairs per annotator), each
    pair weighted 1 / (m_u - 1) in a unit of m_u values (units with one value are left out)."""
    pairs: Weights = defaultdict(float)  # (value, value) -> weight
    per: Weights = defaultdict(float)  # (annotator, agree) -> weight of the pairs it is in
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        for i, (who, c) in enumerate(unit):
            for j, (_, k) in enumerate(unit):
                if i != j:
                    pairs[(c, k)] += 1 / (m - 1)
                    per[(who, c == k)] += 1 / (m - 1)
    return pairs, per


def _expected(pairs: Weights) -> float | None:
    """Expected disagreement D_e of nominal values from the coincidences (None: undefined)."""
    totals: Weights = defaultdict(float)
    for (c, _), w in pairs.items():
        totals[c] += w
    n = sum(totals.values())
    if n <= 1:
        return None
    agree = sum(t * (t - 1) for t in totals.values())
    expected = 1 - agree / (n * (n - 1))
    return expected if expected > 0 else None


def krippendorff_alpha(units: Iterable[Sequence[str]]) -> float | None:
    """Krippendorff's alpha for nominal values: `units` are the values given to each unit
    (a task's labels, any number per unit); units with fewer than two are not pairable. None
    when it is undefined (no pairable unit, or every value the same: nothing to tell apart)."""
    pairs, _ = _coincidences([[("", v) for v in unit] for unit in units])
    expected = _expected(pairs)
    if expected is None:
        return None
    n = sum(pairs.values())
    observed = sum(w for (c, k), w in pairs.items() if c != k) / n
    return 1 - observed / expected


def agreement(tasks: Iterable[TaskLabels]) -> dict[str, Any]:
    """Agreement of a project's annotators: Krippendorff's alpha over its tasks (nominal), and
    per annotator the same alpha on the pairs it is part of (its observed disagreement with
    the others against the project's expected disagreement); with the units and pairable
    labels it rests on and the tasks held for review (a tie)."""
    units = [[(a.annotator, a.label) for a in t.annotations if a.label] for t in tasks]
    units = [u for u in units if u]
    pairs, per = _coincidences(units)
    expected = _expected(pairs)
    alpha = krippendorff_alpha([[v for _, v in u] for u in units])
    annotators: dict[str, Any] = {}
    for who in sorted({w for u in units for w, _ in u}):
        agree, disagree = per[(who, True)], per[(who, False)]
        total = agree + disagree
        annotators[who] = {
            "labels": sum(1 for u in units for w, _ in u if w == who),
            "alpha": None if expected is None or total == 0 else 1 - (disagree / total) / expected,
            "agreement": None if total == 0 else agree / total,
        }
    return {
        "alpha": alpha,
        "units": sum(1 for u in units if len(u) >= 2),
        "labels": sum(len(u) for u in units),
        "annotators": annotators,
    }
