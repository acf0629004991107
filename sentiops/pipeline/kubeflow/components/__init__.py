"""KFP v2 components: one thin adapter per pipeline stage over `sentiops.pipeline.stages`.

Each module holds one plain function (the component body). Its imports live inside the body,
because KFP ships the function's source into the container; for the same reason no parameter
default repeats a setting: the pipeline (`sentiops.pipeline.kubeflow.training`) passes every
value, and the defaults live in `sentiops.config` / `sentiops.params`. The component image
(`components/Dockerfile` at the repository root) has SentiOps and kfp installed, so nothing is
pip-installed at run time (`install_kfp_package=False`, no `packages_to_install`). The same
functions run under `kfp.local.SubprocessRunner(use_venv=False)` with the current interpreter.

The image is `$SENTIOPS_COMPONENT_IMAGE`, else `sentiops/components:<version>`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kfp import dsl

from sentiops import __version__
from sentiops.pipeline.kubeflow.components.evaluate import evaluate
from sentiops.pipeline.kubeflow.components.gate import gate
from sentiops.pipeline.kubeflow.components.ingest import ingest
from sentiops.pipeline.kubeflow.components.register import register
from sentiops.pipeline.kubeflow.components.rollout import rollout
from sentiops.pipeline.kubeflow.components.split import split
from sentiops.pipeline.kubeflow.components.train import train
from sentiops.pipeline.kubeflow.components.validate import validate

IMAGE_ENV = "SENTIOPS_COMPONENT_IMAGE"
DEFAULT_IMAGE = f"sentiops/components:{__version__}"


def default_image() -> str:
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


@dataclass(frozen=True)
class Components:
    ingest: Any
    validate: Any
    split: Any
    train: Any
    evaluate: Any
    gate: Any
    register: Any
    rollout: Any


def build(image: str | None = None) -> Components:
    """The eight components, all running from `image` (default: `default_image()`)."""
    img = image or default_image()

    def make(fn: Any) -> Any:
        return dsl.component(fn, base_image=img, install_kfp_package=False)

    return Components(
        ingest=make(ingest),
        validate=make(validate),
        split=make(split),
        train=make(train),
        evaluate=make(evaluate),
        gate=make(gate),
        register=make(register),
        rollout=make(rollout),
    )
