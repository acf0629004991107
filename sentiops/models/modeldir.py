"""The one model directory format every model type uses.

    <dir>/model.json        format version, model type, labels, params, dataset version, metrics
                            and the sha256 of every other file
    <dir>/signature.json    the Ed25519 signature of model.json's bytes (algorithm, key id,
                            signature): `sentiops.security.signing`
    <dir>/label_map.json    {"labels": [...], "label2id": {...}}
    <dir>/metrics.json      validation/test metrics at training time
    <dir>/...               the model type's own files (safetensors + tokenizer, ONNX, or the
                            TF-IDF model's JSON + npz): never a pickle

A directory is written into a temporary sibling and renamed into place, so a crash never
leaves a half-written model; every write (`write`, `extend`) signs the manifest with the
signing key (`signing.signing_key()`). Reading (`read_manifest`, so `load_model`) checks, before
anything is loaded: the signature against the verify key when one is configured
(`signing.verify_key()`), then every file against its sha256, and that the directory holds no
file the manifest does not list (a loader that looks for an optional file must not find one
slipped in beside the signed ones).
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
from sentiops.security import signing
from sentiops.store.checksum import sha256_file

FORMAT_VERSION = 1
MANIFEST = "model.json"
SIGNATURE = "signature.json"
#: What `storage.local_model` leaves in a downloaded copy (the digests it downloaded; the same
#: name as `storage.DOWNLOAD_RECORD`, not imported: the store client is not needed to read).
DOWNLOAD_RECORD = ".sentiops-download.json"
#: Files a model directory may hold besides those its manifest lists (none of them is loaded
#: as part of the model).
UNLISTED = (MANIFEST, SIGNATURE, DOWNLOAD_RECORD)


def write(
    out: Path, save_files: Callable[[Path], None], info: dict[str, Any], overwrite: bool = True
) -> Path:
    """Create `out` atomically: `save_files(tmp)` writes the weights, then the manifest and
    its signature."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ModelError(f"{out} already exists", "choose another --output or remove it")
    key = signing.signing_key()  # a missing or broken key fails before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return _finish(out, tmp, save_files, info, key)


def extend(
    folder: Path, add_files: Callable[[Path], None], updates: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Add files to an existing (verified) model directory and merge `updates` into its
    manifest, atomically: the copy is extended, re-checksummed (a new `version`) and renamed
    into place. Used for what is packaged with a model after training (its optimized serving
    form, its drift detector) so that it lives under the same checksums. The directory is
    verified first (signature included: a forged model is never re-signed) and signed again.
    Returns the new manifest."""
    folder = Path(folder)
    key = signing.signing_key()
    manifest = read_manifest(folder)
    info = {k: v for k, v in manifest.items() if k not in _COMPUTED} | (updates or {})
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    shutil.copytree(folder, tmp)
    for name in UNLISTED:
        (tmp / name).unlink(missing_ok=True)
    _finish(folder, tmp, add_files, info, key)
    return read_manifest(folder, verify=False, check_signature=False)


_COMPUTED = ("format_version", "version", "sentiops_version", "created_at", "files")


def _finish(
    out: Path,
    tmp: Path,
    save_files: Callable[[Path], None],
    info: dict[str, Any],
    key: signing.SigningKey,
) -> Path:
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
            if p.is_file() and p.relative_to(tmp).as_posix() not in UNLISTED
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
        data = json.dumps(manifest, indent=2, default=str).encode()
        (tmp / MANIFEST).write_bytes(data)
        _write_signature(tmp, signing.sign(data, key))
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


def _write_signature(folder: Path, record: dict[str, str]) -> None:
    tmp = folder / f".{SIGNATURE}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps({**record, "signed": MANIFEST}, indent=2) + "\n")
    tmp.replace(folder / SIGNATURE)


def read_signature(folder: Path) -> dict[str, Any] | None:
    """The signature record of a model directory (None when it has none)."""
    path = Path(folder) / SIGNATURE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read the signature {path}: {exc}",
            "re-download the model directory, or re-sign it (`sentiops model sign DIR`)",
        ) from exc
    if not isinstance(record, dict):
        raise ModelError(f"{path} is not a signature record", "re-sign or retrain the model")
    return record


def sign(folder: Path, key: signing.SigningKey | None = None) -> dict[str, Any]:
    """Sign an existing model directory's manifest (after checking every file against it;
    the signature it had, if any, is not checked: signing is the key holder's statement that
    this model is theirs). Returns the signature record."""
    folder = Path(folder)
    key = key or signing.signing_key()
    read_manifest(folder, verify=True, check_signature=False)
    record = signing.sign((folder / MANIFEST).read_bytes(), key)
    _write_signature(folder, record)
    return record


def read_manifest(
    folder: Path,
    verify: bool = True,
    check_signature: bool | None = None,
    key: signing.VerifyKey | None = None,
) -> dict[str, Any]:
    """The manifest of a model directory. `verify`: after checking the signature (when a
    verify key is configured, or `key` is given), every file against its sha256 and that no
    unlisted file is present. `check_signature` (default: `verify`) alone checks only the
    signature, for a reader of a partial copy that checks the files it uses itself."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ModelError(f"model directory not found: {folder}", "check --model / the storage URI")
    if not path.exists():
        raise ModelError(
            f"{folder} is not a SentiOps model directory (no {MANIFEST})",
            "point to a directory written by `sentiops train`",
        )
    data = path.read_bytes()
    if verify if check_signature is None else check_signature:
        signing.verify(data, read_signature(folder), f"the model {folder}", key)
    try:
        manifest = json.loads(data)
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
        listed = set(manifest.get("files", {})) | set(UNLISTED)
        extra = sorted(
            rel
            for rel in (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            if rel not in listed
        )
        if extra:
            bad += [f"{rel} (not in {MANIFEST})" for rel in extra]
        if bad:
            raise ModelError(
                f"corrupt model directory {folder}: {', '.join(bad[:5])}",
                "the files were altered, added or truncated; re-download or retrain",
            )
    return manifest
