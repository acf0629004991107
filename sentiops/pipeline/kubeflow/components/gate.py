"""gate: challenger vs champion on the test split; returns approved (drives dsl.If)."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def gate(
    *,
    challenger: Input[Model],
    test_data: Input[Dataset],
    decision: Output[Artifact],
    report: Output[Markdown],
    gate_metrics: Output[Metrics],
    champion: str,
    gate: dict,
    registered_model: str,
    mlflow_tracking_uri: str = "",
    s3_endpoint: str = "",
) -> bool:
    """`champion`: "" = the registry alias `champion` (none on the first run), "none", or a
    model directory / s3:// prefix. `gate`: the thresholds (GateConfig fields; missing ones
    keep their defaults, unknown ones fail the step). Writes the decision record (JSON +
    Markdown + MLflow tags on the challenger's registered version)."""
    import tempfile
    from pathlib import Path

    from sentiops.gate.report import decision_markdown
    from sentiops.params import GateConfig, parse
    from sentiops.pipeline import stages

    settings = stages.endpoints(s3_endpoint, mlflow_tracking_uri)
    cfg = parse(GateConfig, gate, "gate thresholds")
    with tempfile.TemporaryDirectory() as work:
        result = stages.gate(
            Path(challenger.path),
            Path(test_data.path),
            cfg,
            champion,
            Path(work),
            test_data.metadata.get("dataset_version"),
            registered_model=registered_model,
            challenger_registry_version=challenger.metadata.get("registered_version"),
            settings=settings,
        )
    result.write_json(Path(decision.path))
    markdown = decision_markdown(result)
    Path(report.path).write_text(markdown)
    print(markdown)
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
