"""The training pipeline (it only wires components; the stages live in sentiops.pipeline.stages).
Defaults come from sentiops.config / sentiops.params; the pipeline passes every value on.

    ingest -> validate -> split -> train -> evaluate
                                       \\-> gate -> dsl.If(approved) -> register

On the cluster the S3 credentials come from the Kubernetes Secret `sentiops-s3` (keys
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) through kfp-kubernetes; under kfp.local that platform
config is ignored and the components read the same variables from the environment. The model
signing key comes from the Secret `sentiops-model-signing` (keys signing.key and verify.pub),
mounted as a volume into the train step only, the one step that writes a model: it signs with
signing.key and checks what it wrote with verify.pub (`stages.use_mounted_signing_key`); the
pod does not start without the Secret.
"""

from typing import Any

from kfp import dsl, kubernetes

from sentiops.config import (
    BASE_MODEL_PIPELINE,
    DATASET,
    MODEL_NAME,
    REGISTERED_MODEL,
    SEED,
)
from sentiops.params import DataConfig, GateConfig
from sentiops.pipeline.kubeflow import components
from sentiops.pipeline.stages import SIGNING_KEY_DIR

PIPELINE_NAME = "sentiops-training"
S3_SECRET = "sentiops-s3"
SECRET_ENV = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}
# in-cluster endpoints of the Helm chart (helm/sentiops); override per run
CLUSTER_MLFLOW = "http://mlflow.sentiops.svc.cluster.local:5000"
CLUSTER_S3 = "http://minio.sentiops.svc.cluster.local:9000"
# KFP parameter defaults (JSON in the compiled YAML; never mutated)
DEFAULT_DATASETS = [DATASET]
# {} = the model type's own defaults (TrainConfig: transformer 3 epochs, lr 5e-5, batch 32,
# max length 64); a transformer-only value here would be an error for tfidf-logreg runs
DEFAULT_HYPERPARAMETERS: dict = {}
DEFAULT_GATE = GateConfig().model_dump()
# {} = the sentiops-rollout ConfigMap as the chart renders it; keys of it override it for one
# run, e.g. {"approveBefore": "100", "notify": "slack=https://hooks.slack.com/..."}
DEFAULT_ROLLOUT_SETTINGS: dict = {}
_DATA = DataConfig(data=DEFAULT_DATASETS)


#: The model signing keys (`signing.key`: Ed25519 private, PEM; `verify.pub`: its public half).
SIGNING_SECRET = "sentiops-model-signing"


def _with_s3_secret(task: Any) -> Any:
    return kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env=SECRET_ENV)


def _with_signing_key(task: Any) -> Any:
    return kubernetes.use_secret_as_volume(
        task, secret_name=SIGNING_SECRET, mount_path=str(SIGNING_KEY_DIR)
    )


def build(image: str | None = None) -> Any:
    """The pipeline with every component running from `image` (see components.default_image)."""
    c = components.build(image)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="SentiOps: train a sentiment model, gate it "
        "against the champion, register it on approval.",
    )
    def training(
        datasets: list[str] = DEFAULT_DATASETS,
        text_column: str = _DATA.text_column,
        label_column: str = _DATA.label_column,
        min_per_class: int = _DATA.min_per_class,
        drop_invalid: bool = _DATA.drop_invalid,
        seed: int = SEED,
        val_frac: float = _DATA.val_frac,
        test_frac: float = _DATA.test_frac,
        model_type: str = "transformer",
        base_model: str = BASE_MODEL_PIPELINE,  # all-MiniLM-L6-v2 in the image (air-gapped)
        hyperparameters: dict = DEFAULT_HYPERPARAMETERS,
        champion: str = "",
        gate: dict = DEFAULT_GATE,
        registered_model: str = REGISTERED_MODEL,
        model_name: str = MODEL_NAME,
        model_store: str = "s3://sentiops",
        rollout: str = "kserve",  # kserve: canary + judge in the cluster; none: stop at register
        rollout_mode: str = "",  # canary | shadow; "" = the sentiops-rollout ConfigMap's
        rollout_settings: dict = DEFAULT_ROLLOUT_SETTINGS,  # ConfigMap keys for this run
        namespace: str = "sentiops",
        prometheus_url: str = "",  # "" = the sentiops-rollout ConfigMap's prometheusUrl
        s3_endpoint: str = CLUSTER_S3,
        mlflow_tracking_uri: str = CLUSTER_MLFLOW,
    ) -> dsl.Artifact:
        endpoints = {"s3_endpoint": s3_endpoint, "mlflow_tracking_uri": mlflow_tracking_uri}
        ingest, split = _data_steps(
            c,
            datasets=datasets,
            text_column=text_column,
            label_column=label_column,
            min_per_class=min_per_class,
            drop_invalid=drop_invalid,
            seed=seed,
            val_frac=val_frac,
            test_frac=test_frac,
            s3_endpoint=s3_endpoint,
        )
        train, decide = _train_and_gate(
            c,
            split,
            model_type=model_type,
            base_model=base_model,
            hyperparameters=hyperparameters,
            seed=seed,
            champion=champion,
            gate=gate,
            registered_model=registered_model,
            endpoints=endpoints,
            store=model_store,
        )
        with dsl.If(decide.outputs["Output"] == True, name="approved"):  # noqa: E712
            _register_and_roll_out(
                c,
                train,
                decide,
                model_store=model_store,
                model_name=model_name,
                registered_model=registered_model,
                endpoints=endpoints,
                rollout=rollout,
                rollout_mode=rollout_mode,
                rollout_settings=rollout_settings,
                namespace=namespace,
                prometheus_url=prometheus_url,
            )
        for task in (ingest, train, decide):  # train: the store's live texts (transfer) too
            _with_s3_secret(task)
        return decide.outputs["decision"]

    return training


def _data_steps(
    c: Any,
    *,
    datasets: Any,
    text_column: Any,
    label_column: Any,
    min_per_class: Any,
    drop_invalid: Any,
    seed: Any,
    val_frac: Any,
    test_frac: Any,
    s3_endpoint: Any,
) -> tuple[Any, Any]:
    """ingest -> validate -> split (pipeline parameters in); returns the ingest and split
    tasks."""
    ingest = c.ingest(
        datasets=datasets,
        text_column=text_column,
        label_column=label_column,
        s3_endpoint=s3_endpoint,
    ).set_display_name("ingest")
    ingest.set_caching_options(False)  # the sources may change under the same names
    validate = c.validate(
        raw=ingest.outputs["raw"], min_per_class=min_per_class, drop_invalid=drop_invalid
    )
    split = c.split(
        clean=validate.outputs["clean"], seed=seed, val_frac=val_frac, test_frac=test_frac
    )
    return ingest, split


def _train_and_gate(
    c: Any,
    split: Any,
    *,
    model_type: Any,
    base_model: Any,
    hyperparameters: Any,
    seed: Any,
    champion: Any,
    gate: Any,
    registered_model: Any,
    endpoints: dict[str, Any],
    store: Any,
) -> tuple[Any, Any]:
    """train -> evaluate, and the gate (after evaluate) on the split's test data; returns the
    train and gate tasks."""
    train = c.train(
        train_data=split.outputs["train_data"],
        validation_data=split.outputs["validation_data"],
        model_type=model_type,
        base_model=base_model,
        hyperparameters=hyperparameters,
        seed=seed,
        registered_model=registered_model,
        store=store,
        **endpoints,
    )
    train.set_caching_options(False)
    _with_signing_key(train)
    train.set_cpu_request("1").set_memory_request("2Gi").set_memory_limit("6Gi")
    evaluate = c.evaluate(model=train.outputs["model"], test_data=split.outputs["test_data"])
    evaluate.set_caching_options(False)
    decide = c.gate(
        challenger=train.outputs["model"],
        test_data=split.outputs["test_data"],
        champion=champion,
        gate=gate,
        registered_model=registered_model,
        **endpoints,
    )
    decide.set_display_name("gate")
    decide.set_caching_options(False)  # the champion lives outside the run
    decide.after(evaluate)
    return train, decide


def _register_and_roll_out(
    c: Any,
    train: Any,
    decide: Any,
    *,
    model_store: Any,
    model_name: Any,
    registered_model: Any,
    endpoints: dict[str, Any],
    rollout: Any,
    rollout_mode: Any,
    rollout_settings: Any,
    namespace: Any,
    prometheus_url: Any,
) -> None:
    """register, then (with rollout "kserve") the canary rollout: inside dsl.If(approved)."""
    register = c.register(
        model=train.outputs["model"],
        decision=decide.outputs["decision"],
        store=model_store,
        model_name=model_name,
        registered_model=registered_model,
        **endpoints,
    )
    register.set_caching_options(False)
    _with_s3_secret(register)
    with dsl.If(rollout == "kserve", name="canary"):
        canary = c.rollout(
            model=train.outputs["model"],
            storage_uri=register.output,
            namespace=namespace,
            registered_model=registered_model,
            prometheus_url=prometheus_url,
            mlflow_tracking_uri=endpoints["mlflow_tracking_uri"],
            mode=rollout_mode,
            overrides=rollout_settings,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )
        canary.set_caching_options(False)
