"""The training pipeline: the Kubeflow Pipelines adapter over the core.

    stages      one plain function per pipeline step (ingest, validate, split, train,
                evaluate, gate, register, rollout) over the core; tested without KFP
    kubeflow/   the KFP v2 components (one thin adapter per stage), the pipeline that wires
                them (`training.py`) and its compiled YAML (package data)
    run         compile, run locally (kfp.local), submit to a KFP backend

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
