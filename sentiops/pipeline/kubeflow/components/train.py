"""train: fit a model on the train split; Model = a SentiOps model directory."""

from kfp.dsl import Dataset, Input, Model, Output


def train(
    *,
    train_data: Input[Dataset],
    validation_data: Input[Dataset],
    model: Output[Model],
    model_type: str,
    base_model: str,
    hyperparameters: dict,
    seed: int,
    registered_model: str,
    track: bool = True,
    mlflow_tracking_uri: str = "",
    s3_endpoint: str = "",
    store: str = "",
) -> None:
    """`hyperparameters`: the model type's hyperparameters (tfidf-logreg: c, ngram_max, ...;
    transformer: epochs, lr, batch_size, ...) plus max_length / max_train_examples; anything
    else fails the step naming what is allowed. With `track`, the run goes to MLflow and the
    model is registered as the `challenger`. `store`: the artifact store whose logged live
    texts a distilled student may learn from (`transfer`: live)."""
    from pathlib import Path

    from sentiops.pipeline import stages

    settings = stages.endpoints(s3_endpoint, mlflow_tracking_uri, store)
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
        settings,
    )
    model.metadata.update(info | {"dataset_version": train_data.metadata.get("dataset_version")})
