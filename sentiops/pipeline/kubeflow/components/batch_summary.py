"""batch summary: every shard checked and added up into summary.json, as KFP metrics too."""

from kfp.dsl import Metrics, Output


def batch_summary(
    output_uri: str,
    shards: list,
    metrics: Output[Metrics],
    s3_endpoint: str = "",
) -> dict:
    """`shards`: the score steps' results (dsl.Collected); the done records in the output are
    what counts: a missing or incomplete shard fails the step with its name."""
    from sentiops.batch.job import summarize
    from sentiops.pipeline import stages

    summary = summarize(output_uri, stages.endpoints(s3_endpoint))
    metrics.log_metric("rows", float(summary["rows"]))
    metrics.log_metric("shards", float(summary["shards"]))
    metrics.log_metric("shards_scored_now", float(sum(not s["skipped"] for s in shards)))
    for status, n in summary["status"].items():
        metrics.log_metric(f"status_{status}", float(n))
    for label, n in summary["labels"].items():
        metrics.log_metric(f"label_{label}", float(n))
    metrics.log_metric("texts_per_sec_per_pod", float(summary["texts_per_sec_per_scorer"]))
    print(
        f"{summary['rows']} rows in {summary['shards']} shards: {summary['status']}; "
        f"data at {summary['data']}"
    )
    return {k: summary[k] for k in ("rows", "shards", "status", "labels", "data")}
