"""Decision records on disk: the gate's and the rollout's records are JSON, written atomically
so that readers (the console, `sentiops status`) never see half a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(record: dict[str, Any], path: Path) -> Path:
    """A decision record as JSON (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(path)  # readers (the console) never see half a file
    return path
