"""evaluate: metrics on the test split, confusion matrix for the KFP UI, HTML report."""

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def evaluate(
    model: Input[Model],
    test_data: Input[Dataset],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[HTML],
) -> None:
    """Accuracy, macro-F1, per-class F1/recall, ECE, throughput and behavioural tests."""
    from pathlib import Path

    from sentiops.evaluation.report import evaluation_html
    from sentiops.pipeline import stages

    result = stages.evaluate(Path(model.path), Path(test_data.path))
    for key in ("macro_f1", "accuracy", "ece", "texts_per_sec"):
        metrics.log_metric(key, float(result[key]))
    for label, m in result["per_class"].items():
        metrics.log_metric(f"f1_{label}", m["f1"])
        metrics.log_metric(f"recall_{label}", m["recall"])
    cm = result["confusion_matrix"]
    confusion.log_confusion_matrix(cm["labels"], cm["matrix"])
    title = f"{result['model_type']} {result['model_version']} on the test split"
    Path(report.path).write_text(evaluation_html(result, title))
