"""register (only on approval): push the model to the store; it becomes the registry's
`candidate` (the rollout, not this step, makes it `champion`)."""

from kfp.dsl import Artifact, Input, Model


def register(
    model: Input[Model],
    decision: Input[Artifact],
    store: str,
    model_name: str,
    registered_model: str,
    mlflow_tracking_uri: str = "",
    s3_endpoint: str = "",
) -> str:
    """Copies the model directory (with its sha256 manifest) to
    `<store>/models/<model_name>/<version>/` and returns that URI (KServe's storageUri)."""
    import json
    from pathlib import Path

    from sentiops.pipeline import stages

    settings = stages.endpoints(s3_endpoint, mlflow_tracking_uri)
    info = stages.register(
        Path(model.path),
        json.loads(Path(decision.path).read_text()),
        store,
        model_name,
        registered_model,
        model.metadata.get("registered_version"),
        settings,
    )
    print(f"registered {registered_model} v{info['version']} at {info['uri']}")
    return info["uri"]
