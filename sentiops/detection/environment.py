"""The drift environment: Alibi Detect 0.11.4 needs pydantic<2, so the window tests run in their
own environment (`.venv-drift`, built by `make install`; the drift image). This finds its
interpreter, for the commands that hand work over to it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Environment variable naming the drift environment's python (set by mk/drift.mk).
DRIFT_PYTHON_ENV = "SENTIOPS_DRIFT_PYTHON"


def drift_python() -> Path | None:
    """The drift environment's interpreter: $SENTIOPS_DRIFT_PYTHON, else the repository's
    `.venv-drift` (an editable checkout), else None."""
    env = os.environ.get(DRIFT_PYTHON_ENV)
    if env:
        return Path(env) if Path(env).exists() else None
    venv = Path(__file__).resolve().parents[2] / ".venv-drift"
    candidate = venv / "bin" / "python"
    if candidate.exists() and Path(sys.prefix).resolve() != venv.resolve():
        return candidate
    return None
