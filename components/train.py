"""train: fit a model on the train split; Model = a SentiOps model directory."""

from kfp.dsl import Dataset, Input, Model, Output


def train(
    train_data: Input[Dataset],
    validation_data: Input[Dataset],
    model: Output[Model],
    model_type: str = "tfidf-logreg",
    base_model: str = "offline",
    hyperparameters: dict = {},  # noqa: B006 - KFP parameters are JSON; never mutated
    seed: int = 42,
    track: bool = True,
    registered_model: str = "sentiops-sentiment",
    mlflow_tracking_uri: str = "",
    s3_endpoint: str = "",
) -> None:
    """`hyperparameters` takes TrainConfig fields (epochs, lr, batch_size, max_length, c, ...).
    With `track`, the run goes to MLflow and the model is registered as `challenger`."""
    from pathlib import Path

    from sentiops import stages

    stages.use_endpoints(s3_endpoint, mlflow_tracking_uri)
    out = Path(model.path)
    cfg = stages.train_config(model_type, base_model, hyperparameters, seed, out)
    info = stages.train(
        Path(train_data.path),
        Path(validation_data.path),
        out,
        cfg,
        train_data.metadata.get("dataset_version"),
        registered_model,
        track,
    )
    model.metadata.update(info | {"dataset_version": train_data.metadata.get("dataset_version")})
