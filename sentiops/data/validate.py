"""Validation: checks a labelled table before training and writes a JSON + Markdown report.

Fatal problems (training would be meaningless) stop the run and name the first rows:
missing columns (raised while reading), no rows, empty texts, non-UTF-8 bytes, labels outside the
label set, fewer than `min_per_class` examples of a class. With `drop_invalid=True` the row-level
ones (empty, non-UTF-8, unknown label) are dropped and reported instead.
Reported and fixed: exact duplicates (dropped, counted), the same text with conflicting labels
(all copies dropped). After splitting, `check_overlap` reports texts shared across splits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sentiops.data.datasets import LABEL, LABELS, ROW, SOURCE, TEXT

SHOW_ROWS = 20
_SURROGATE = re.compile("[\udc80-\udcff]")


@dataclass
class Finding:
    check: str
    severity: str  # "error" | "warning" | "info"
    message: str
    count: int
    rows: list[str] = field(default_factory=list)


@dataclass
class Report:
    ok: bool
    rows_in: int
    rows_out: int
    label_counts: dict[str, int]
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "label_counts": self.label_counts,
            "findings": [f.__dict__ for f in self.findings],
        }

    def to_markdown(self) -> str:
        status = "PASSED" if self.ok else "FAILED"
        lines = [
            f"# Data validation: {status}",
            "",
            f"Rows in: {self.rows_in}, rows kept: {self.rows_out}",
            "",
            "| label | count |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v} |" for k, v in self.label_counts.items()]
        lines += [
            "",
            "| check | severity | count | message | first rows |",
            "|---|---|---|---|---|",
        ]
        for f in self.findings:
            rows = ", ".join(f.rows[:SHOW_ROWS])
            lines.append(f"| {f.check} | {f.severity} | {f.count} | {f.message} | {rows} |")
        if not self.findings:
            lines.append("| (none) | | | all checks passed | |")
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        js, md = folder / "validation.json", folder / "validation.md"
        js.write_text(json.dumps(self.to_dict(), indent=2))
        md.write_text(self.to_markdown())
        return js, md


def _where(df: pd.DataFrame, mask: pd.Series) -> list[str]:
    hit = df[mask]
    if SOURCE in hit.columns and ROW in hit.columns:
        return [f"{s}:{r}" for s, r in zip(hit[SOURCE], hit[ROW], strict=True)][:SHOW_ROWS]
    return [str(i) for i in hit.index[:SHOW_ROWS]]


def validate(
    df: pd.DataFrame,
    labels: tuple[str, ...] = LABELS,
    min_per_class: int = 10,
    drop_invalid: bool = False,
) -> tuple[pd.DataFrame, Report]:
    """Check and clean `df` (columns text, label). Returns the cleaned frame and the report."""
    findings: list[Finding] = []
    rows_in = len(df)
    missing = [c for c in (TEXT, LABEL) if c not in df.columns]
    if missing:
        findings.append(Finding("columns", "error", f"missing column(s) {missing}", len(missing)))
        return df, Report(False, rows_in, 0, {}, findings)
    clean = df[_check_rows(df, labels, drop_invalid, findings)]
    clean = _drop_duplicates(clean, findings)
    label_counts = _check_classes(clean, labels, min_per_class, findings)
    ok = not any(f.severity == "error" for f in findings)
    report = Report(ok, rows_in, len(clean), label_counts, findings)
    return clean.reset_index(drop=True), report


def _check_rows(
    df: pd.DataFrame, labels: tuple[str, ...], drop_invalid: bool, findings: list[Finding]
) -> pd.Series:
    """The rows that pass the row checks (empty text, invalid UTF-8, unknown label); a finding
    per failed check (an error, or with `drop_invalid` a warning: the rows are dropped)."""
    row_checks = [
        (
            "empty_text",
            df[TEXT].str.strip() == "",
            "empty or whitespace-only text",
            "remove these rows or fill in the text",
        ),
        (
            "non_utf8",
            df[TEXT].map(lambda t: bool(_SURROGATE.search(t))),
            "text is not valid UTF-8",
            "re-encode the file as UTF-8",
        ),
        (
            "unknown_label",
            ~df[LABEL].isin(labels),
            f"label outside {list(labels)}",
            "map your labels to negative/neutral/positive",
        ),
    ]
    keep = pd.Series(True, index=df.index)
    for name, mask, message, hint in row_checks:
        n = int(mask.sum())
        if n:
            extra = ""
            if name == "unknown_label":
                extra = f" (seen: {sorted(set(df.loc[mask, LABEL]))[:10]})"
            sev = "warning" if drop_invalid else "error"
            findings.append(
                Finding(
                    name,
                    sev,
                    f"{message}{extra}; {hint}" + ("; rows dropped" if drop_invalid else ""),
                    n,
                    _where(df, mask),
                )
            )
            keep &= ~mask
    return keep


def _drop_duplicates(clean: pd.DataFrame, findings: list[Finding]) -> pd.DataFrame:
    """Without exact duplicate (text, label) rows (the first stays) and without texts that
    carry different labels (every copy goes); a warning for each."""
    dup = clean.duplicated(subset=[TEXT, LABEL], keep="first")
    if int(dup.sum()):
        findings.append(
            Finding(
                "duplicates",
                "warning",
                "exact duplicate (text, label) rows dropped",
                int(dup.sum()),
                _where(clean, dup),
            )
        )
        clean = clean[~dup]
    conflict = clean.duplicated(subset=[TEXT], keep=False)
    if int(conflict.sum()):
        findings.append(
            Finding(
                "conflicting_labels",
                "warning",
                "the same text carries different labels; all copies dropped",
                int(conflict.sum()),
                _where(clean, conflict),
            )
        )
        clean = clean[~conflict]
    return clean


def _check_classes(
    clean: pd.DataFrame, labels: tuple[str, ...], min_per_class: int, findings: list[Finding]
) -> dict[str, int]:
    """The rows per label; errors for no rows, a class under `min_per_class`, one class."""
    counts = clean[LABEL].value_counts()
    label_counts = {lab: int(counts.get(lab, 0)) for lab in labels if counts.get(lab, 0)}
    if len(clean) == 0:
        findings.append(Finding("no_rows", "error", "no usable rows left", 0))
    else:
        small = {lab: n for lab, n in label_counts.items() if n < min_per_class}
        if small:
            findings.append(
                Finding(
                    "class_too_small",
                    "error",
                    f"fewer than {min_per_class} examples for {small}; add data, drop the class, "
                    "or lower --min-per-class",
                    len(small),
                )
            )
        if len(label_counts) < 2:
            findings.append(
                Finding(
                    "single_class",
                    "error",
                    f"need at least two labels, found {list(label_counts)}",
                    1,
                )
            )
    return label_counts


def normalize_text(text: str) -> str:
    """Lower-case, whitespace-collapsed text: what counts as 'the same text' across splits."""
    return " ".join(text.lower().split())


def check_overlap(splits: dict[str, pd.DataFrame]) -> Finding | None:
    """Texts (case/whitespace-normalised) that appear in more than one split."""
    seen: dict[str, set[str]] = {}
    for name, part in splits.items():
        for t in part[TEXT]:
            seen.setdefault(normalize_text(t), set()).add(name)
    shared = [t for t, names in seen.items() if len(names) > 1]
    if not shared:
        return None
    return Finding(
        "split_overlap",
        "warning",
        "near-identical texts appear in more than one split (case/whitespace only)",
        len(shared),
        [repr(t[:60]) for t in shared[:SHOW_ROWS]],
    )
