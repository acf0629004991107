"""The sha256 of a file, read in chunks: every object in the store carries it as metadata, and
a model directory's manifest lists it for every file (`sentiops.models.modeldir`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()
