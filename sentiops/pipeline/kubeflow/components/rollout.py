"""rollout (only on approval, on a cluster): canary the candidate in the InferenceService,
judge it against the stable version from Prometheus, promote or roll back by itself."""

from kfp.dsl import Artifact, Input, Markdown, Metrics, Model, Output


def rollout(
    *,
    model: Input[Model],
    storage_uri: str,
    record: Output[Artifact],
    report: Output[Markdown],
    rollout_metrics: Output[Metrics],
    namespace: str,
    registered_model: str,
    prometheus_url: str,
    overrides: dict,
    run_id: str,
    mlflow_tracking_uri: str = "",
    mode: str = "",
) -> str:
    """Steps, interval, thresholds, approval and notifications come from the `sentiops-rollout`
    ConfigMap the chart renders, with `overrides` (ConfigMap keys) for this run;
    `prometheus_url` "" = the ConfigMap's; `mode` canary or shadow ("" = the ConfigMap's
    `rolloutMode`, default canary); `run_id` fills `{run_id}` in the record's link. Returns
    "promoted" or "rolled_back"; a rolled-back canary is a normal outcome (the step succeeds),
    a rollout that could not run fails the step after rolling back."""
    from pathlib import Path

    from sentiops.pipeline import stages

    settings = stages.endpoints("", mlflow_tracking_uri)
    result = stages.rollout(
        storage_uri,
        model.metadata.get("registered_version") or model.metadata.get("version"),
        namespace,
        prometheus_url,
        registered_model=registered_model,
        settings=settings,
        mode=mode,
        overrides=overrides,
        run_id=run_id,
    )
    result.write_json(Path(record.path))
    markdown = result.to_markdown()
    Path(report.path).write_text(markdown)
    print(markdown)
    rollout_metrics.log_metric("promoted", float(result.decision == "promoted"))
    rollout_metrics.log_metric("steps", float(len(result.steps)))
    rollout_metrics.log_metric("inconclusive", float(result.inconclusive is not None))
    if result.steps:
        rollout_metrics.log_metric("last_step_score", result.steps[-1].score)
    record.metadata.update(
        {"decision": result.decision, "reasons": result.reasons, "flags": result.flags}
    )
    return str(result.decision)
