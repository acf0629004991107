"""Data preparation: load -> validate -> snapshot -> split (plus training-only extra data).

The data side of every stage that needs labelled data: training, evaluation and the gate call
`prepare()` (or `labelled_split()`), and none of them imports torch for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sentiops.config import Settings, get_settings
from sentiops.data import datasets as data_mod
from sentiops.data.datasets import LABELS, TEXT, Manifest
from sentiops.data.split import split
from sentiops.data.validate import Finding, Report, check_overlap, normalize_text, validate
from sentiops.errors import ConfigError, ValidationFailed
from sentiops.params import DataConfig

SPLITS = ("train", "validation", "test")


@dataclass
class Prepared:
    splits: dict[str, pd.DataFrame]
    manifest: Manifest
    report: Report
    report_paths: tuple[Path, Path] | None = None


def prepare(
    cfg: DataConfig, report_dir: Path | None = None, settings: Settings | None = None
) -> Prepared:
    """Load, validate (raising ValidationFailed on fatal problems), snapshot and split."""
    s = settings or get_settings()
    raw = data_mod.load(cfg.data, cfg.text_column, cfg.label_column, s)
    clean, report = validate(raw, LABELS, cfg.min_per_class, cfg.drop_invalid)
    paths = None
    if report.ok:
        manifest = data_mod.snapshot(clean, "dataset", list(cfg.data), s.datasets_dir)
        splits = split(clean, cfg.seed, cfg.val_frac, cfg.test_frac)
        overlap = check_overlap(splits)
        if overlap:
            report.findings.append(overlap)
        if cfg.train_extra:
            manifest = _add_train_extra(cfg, clean, splits, report, s) or manifest
    if report_dir is not None:
        paths = report.write(report_dir)
    if not report.ok:
        errs = "; ".join(
            f"{f.check}: {f.message} (e.g. rows {', '.join(f.rows[:5])})"
            if f.rows
            else f"{f.check}: {f.message}"
            for f in report.errors
        )
        where = f" Full report: {paths[1]}" if paths else ""
        raise ValidationFailed(
            f"data validation failed: {errs}.{where}",
            report.to_dict(),
            "fix the rows named above, or pass --drop-invalid to drop row-level problems",
        )
    return Prepared(splits, manifest, report, paths)


def _add_train_extra(
    cfg: DataConfig,
    clean: pd.DataFrame,
    splits: dict[str, pd.DataFrame],
    report: Report,
    settings: Settings,
) -> Manifest | None:
    """Validate `cfg.train_extra` and append it to the train split (in place), without leaks."""
    raw = data_mod.load(cfg.train_extra, cfg.text_column, cfg.label_column, settings)
    extra, extra_report = validate(raw, LABELS, 1, cfg.drop_invalid)
    for f in extra_report.findings:
        f.check = f"train_extra.{f.check}"
        report.findings.append(f)
    if not extra_report.ok:
        report.ok = False
        return None
    held_out = {normalize_text(t) for name in ("validation", "test") for t in splits[name][TEXT]}
    leak = extra[TEXT].map(normalize_text).isin(held_out)
    kept = extra[~leak]
    report.findings.append(
        Finding(
            "train_extra",
            "info",
            f"{len(kept)} training-only rows added from {cfg.train_extra}; "
            f"{int(leak.sum())} dropped because the same text is in validation/test",
            len(kept),
        )
    )
    splits["train"] = (
        pd.concat([splits["train"], kept], ignore_index=True)
        .sample(frac=1.0, random_state=cfg.seed)
        .reset_index(drop=True)
    )
    combined = pd.concat([clean, kept], ignore_index=True)
    sources = list(cfg.data) + [f"train-only:{x}" for x in cfg.train_extra]
    return data_mod.snapshot(combined, "dataset", sources, settings.datasets_dir)


def labelled_split(
    cfg: DataConfig, which: str = "all", settings: Settings | None = None
) -> tuple[pd.DataFrame, Manifest]:
    """One labelled table: `all` rows, or the `train`/`validation`/`test` split that `train`
    made from the same data and seed. A split needs at least 2 examples per class to be
    stratified, so `min_per_class` is raised to 2 for one."""
    if which != "all" and which not in SPLITS:
        raise ConfigError(f"unknown split {which!r}", f"use all, {', '.join(SPLITS)}")
    if which != "all" and cfg.min_per_class < 2:
        cfg = cfg.model_copy(update={"min_per_class": 2})
    prep = prepare(cfg, settings=settings)
    if which == "all":
        return pd.concat(prep.splits.values(), ignore_index=True), prep.manifest
    return prep.splits[which], prep.manifest
