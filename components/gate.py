"""gate: challenger vs champion on the test split; returns approved (drives dsl.If)."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def gate(
    challenger: Input[Model],
    test_data: Input[Dataset],
    decision: Output[Artifact],
    report: Output[Markdown],
    gate_metrics: Output[Metrics],
    champion: str = "",
    min_delta: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    max_class_recall_drop: float = 0.05,
    max_p95_latency_ms: float = 1000.0,
    max_model_size_mb: float = 2000.0,
    min_macro_f1: float = 0.5,
    registered_model: str = "sentiops-sentiment",
    mlflow_tracking_uri: str = "",
    s3_endpoint: str = "",
) -> bool:
    """`champion`: "" = the registry alias `champion` (none on the first run), "none", or a
    model directory / s3:// prefix. Writes the decision record (JSON + Markdown + MLflow tags
    on the challenger's registered version)."""
    import tempfile
    from pathlib import Path

    from sentiops import stages
    from sentiops.gate import GateConfig

    stages.use_endpoints(s3_endpoint, mlflow_tracking_uri)
    cfg = GateConfig(
        min_delta=min_delta,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        max_class_recall_drop=max_class_recall_drop,
        max_p95_latency_ms=max_p95_latency_ms,
        max_model_size_mb=max_model_size_mb,
        min_macro_f1=min_macro_f1,
    )
    with tempfile.TemporaryDirectory() as work:
        result = stages.gate(
            Path(challenger.path),
            Path(test_data.path),
            cfg,
            champion,
            Path(work),
            test_data.metadata.get("dataset_version"),
            registered_model,
            challenger.metadata.get("registered_version"),
        )
    result.write_json(Path(decision.path))
    Path(report.path).write_text(result.to_markdown())
    print(result.to_markdown())
    gate_metrics.log_metric("approved", float(result.approved))
    gate_metrics.log_metric("delta_macro_f1", result.delta_macro_f1)
    gate_metrics.log_metric("challenger_macro_f1", result.challenger.macro_f1)
    if result.bootstrap is not None:
        gate_metrics.log_metric("confidence", result.bootstrap.confidence)
    decision.metadata.update(
        {
            "approved": result.approved,
            "delta_macro_f1": result.delta_macro_f1,
            "reasons": result.reasons,
        }
    )
    return result.approved
