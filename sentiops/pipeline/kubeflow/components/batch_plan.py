"""batch plan: find, check and count the input, cut it into shards, write the job's manifest
(or resume the one the output holds); returns the shard ids (the batch pipeline's ParallelFor)."""


def batch_plan(
    *,
    model_uri: str,
    input_uri: str,
    output_uri: str,
    text_column: str,
    keep: list,
    input_format: str,
    shard_rows: int,
    max_chars: int,
    restart: bool,
    s3_endpoint: str = "",
) -> list:
    """A bad input (no such file, no text column, unreadable file) fails this step, before any
    pod scores anything; an output holding a different job fails it too (`restart` clears
    it)."""
    from sentiops.batch.job import plan_job
    from sentiops.pipeline import stages

    settings = stages.endpoints(s3_endpoint)
    plan = plan_job(
        model_uri,
        input_uri,
        output_uri,
        text_column=text_column,
        keep=list(keep),
        fmt=input_format,
        shard_rows=shard_rows,
        max_chars=max_chars,
        restart=restart,
        settings=settings,
    )
    print(
        f"{plan.rows} rows of {len(plan.files)} file(s) in {len(plan.shards)} shard(s); "
        f"model {plan.version}; manifest at {output_uri}"
    )
    return [s.id for s in plan.shards]
