"""The batch scoring pipeline (it only wires components; the job lives in sentiops.batch):

    batch-plan -> dsl.ParallelFor(shard ids): batch-score -> batch-summary (dsl.Collected)

One pod per shard, at most `parallelism` at a time, all from the components image; the job's
state is in its output prefix (manifest, shards, done records), so rerunning the pipeline with
the same arguments resumes it: finished shards are skipped. Compiled to
`compiled/batch.yaml` (`pipelines/batch.yaml`); submit it with
`sentiops pipeline submit --package pipelines/batch.yaml --set model_uri=... --set
input_uri=... --set output_uri=...`.
"""

from pathlib import Path
from typing import Any

from kfp import dsl

from sentiops.batch.plan import BATCH_SIZE, KEEP_ALL, SHARD_ROWS
from sentiops.models import MAX_CHARS
from sentiops.pipeline.kubeflow import BATCH_COMPILED, components
from sentiops.pipeline.kubeflow.components.batch_plan import batch_plan
from sentiops.pipeline.kubeflow.components.batch_score import batch_score
from sentiops.pipeline.kubeflow.components.batch_summary import batch_summary
from sentiops.pipeline.kubeflow.training import CLUSTER_S3, _with_s3_secret

PIPELINE_NAME = "sentiops-batch"
#: Score pods at a time (a compile-time setting of dsl.ParallelFor).
PARALLELISM = 8
DEFAULT_KEEP = [KEEP_ALL]


def build(image: str | None = None, parallelism: int = PARALLELISM) -> Any:
    """The batch pipeline with every component running from `image`."""
    img = image or components.default_image()

    def make(fn: Any) -> Any:
        return dsl.component(fn, base_image=img, install_kfp_package=False)

    plan_op, score_op, summary_op = make(batch_plan), make(batch_score), make(batch_summary)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="SentiOps batch scoring: CSV / JSONL / Parquet files of any size scored "
        "with a model, one pod per shard, resumable.",
    )
    def batch(
        model_uri: str,
        input_uri: str,
        output_uri: str,
        text_column: str = "text",
        keep: list = DEFAULT_KEEP,
        input_format: str = "auto",
        shard_rows: int = SHARD_ROWS,
        batch_size: int = BATCH_SIZE,
        max_chars: int = MAX_CHARS,
        restart: bool = False,
        s3_endpoint: str = CLUSTER_S3,
    ) -> dict:
        plan = plan_op(
            model_uri=model_uri,
            input_uri=input_uri,
            output_uri=output_uri,
            text_column=text_column,
            keep=keep,
            input_format=input_format,
            shard_rows=shard_rows,
            max_chars=max_chars,
            restart=restart,
            s3_endpoint=s3_endpoint,
        ).set_display_name("plan")
        plan.set_caching_options(False)  # the output's state lives outside the run
        with dsl.ParallelFor(plan.output, parallelism=parallelism, name="shards") as shard:
            score = score_op(
                model_uri=model_uri,
                output_uri=output_uri,
                shard=shard,
                batch_size=batch_size,
                s3_endpoint=s3_endpoint,
            ).set_display_name("score shard")
            score.set_caching_options(False)
            score.set_cpu_request("1").set_memory_request("1Gi").set_memory_limit("3Gi")
            _with_s3_secret(score)
        summary = summary_op(
            output_uri=output_uri, shards=dsl.Collected(score.output), s3_endpoint=s3_endpoint
        ).set_display_name("summary")
        summary.set_caching_options(False)
        for task in (plan, summary):
            _with_s3_secret(task)
        return summary.outputs["Output"]

    return batch


def compile_pipeline(output: Path = BATCH_COMPILED, image: str | None = None) -> Path:
    """Compile to YAML (the packaged copy is `compiled/batch.yaml`)."""
    from kfp import compiler

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build(image), str(output))
    return output
