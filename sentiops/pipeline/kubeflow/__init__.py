"""Kubeflow Pipelines adapter: the KFP v2 components (`components/`), the training pipeline
that wires them (`training.py`) and its compiled YAML (`compiled/sentiops.yaml`, package data);
the batch scoring pipeline (`batch.py`, `compiled/batch.yaml`).

Shipped in the wheel, so `sentiops pipeline compile|submit` work from an installed package (the
drift detector's image submits retraining runs this way). The repository's top-level
`components/` (the component image's Dockerfile) and `pipelines/` folders point here.
"""

from pathlib import Path

COMPILED = Path(__file__).resolve().parent / "compiled" / "sentiops.yaml"
BATCH_COMPILED = Path(__file__).resolve().parent / "compiled" / "batch.yaml"
