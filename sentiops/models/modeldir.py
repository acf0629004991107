"""The one model directory format every model type uses.

    <dir>/model.json        format version, model type, labels, params, dataset version, metrics
                            and the sha256 of every other file
    <dir>/label_map.json    {"labels": [...], "label2id": {...}}
    <dir>/metrics.json      validation/test metrics at training time
    <dir>/...               the model type's own files (safetensors + tokenizer, or sklearn)

A directory is written into a temporary sibling and renamed into place, so a crash never
leaves a half-written model; reading verifies every checksum before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentiops import __version__
from sentiops.errors import ModelError
from sentiops.store.checksum import sha256_file

FORMAT_VERSION = 1
MANIFEST = "model.json"


def write(
    out: Path, save_files: Callable[[Path], None], info: dict[str, Any], overwrite: bool = True
) -> Path:
    """Create `out` atomically: `save_files(tmp)` writes the weights, then the manifest."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ModelError(f"{out} already exists", "choose another --output or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return _finish(out, tmp, save_files, info)


def extend(
    folder: Path, add_files: Callable[[Path], None], updates: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Add files to an existing (verified) model directory and merge `updates` into its
    manifest, atomically: the copy is extended, re-checksummed (a new `version`) and renamed
    into place. Used for what is packaged with a model after training (its optimized serving
    form, its drift detector) so that it lives under the same checksums. Returns the new
    manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    info = {k: v for k, v in manifest.items() if k not in _COMPUTED} | (updates or {})
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    shutil.copytree(folder, tmp)
    (tmp / MANIFEST).unlink()
    _finish(folder, tmp, add_files, info)
    return read_manifest(folder, verify=False)


_COMPUTED = ("format_version", "version", "sentiops_version", "created_at", "files")


def _finish(out: Path, tmp: Path, save_files: Callable[[Path], None], info: dict[str, Any]) -> Path:
    try:
        save_files(tmp)
        labels = list(info["labels"])
        (tmp / "label_map.json").write_text(
            json.dumps(
                {"labels": labels, "label2id": {lab: i for i, lab in enumerate(labels)}}, indent=2
            )
        )
        (tmp / "metrics.json").write_text(json.dumps(info.get("metrics", {}), indent=2))
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        version = hashlib.sha256(
            "".join(f"{k}:{v}\n" for k, v in files.items()).encode()
        ).hexdigest()[:12]
        manifest = {
            "format_version": FORMAT_VERSION,
            "version": version,
            "sentiops_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **info,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_manifest(folder: Path, verify: bool = True) -> dict[str, Any]:
    """The manifest of a model directory, after checking every file against its sha256."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ModelError(f"model directory not found: {folder}", "check --model / the storage URI")
    if not path.exists():
        raise ModelError(
            f"{folder} is not a SentiOps model directory (no {MANIFEST})",
            "point to a directory written by `sentiops train`",
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{path} is not valid JSON: {exc}", "retrain or re-download the model"
        ) from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{folder}: unsupported model format {manifest.get('format_version')!r}",
            f"this SentiOps reads format {FORMAT_VERSION}; retrain the model",
        )
    if verify:
        bad = []
        for rel, digest in manifest.get("files", {}).items():
            f = folder / rel
            if not f.exists():
                bad.append(f"{rel} (missing)")
            elif sha256_file(f) != digest:
                bad.append(f"{rel} (checksum mismatch)")
        if bad:
            raise ModelError(
                f"corrupt model directory {folder}: {', '.join(bad[:5])}",
                "the files were altered or truncated; re-download or retrain",
            )
    return manifest
