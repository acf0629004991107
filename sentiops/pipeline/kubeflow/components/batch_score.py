"""batch score: one shard of the job (one pod), skipped when it is finished already."""


def batch_score(
    model_uri: str,
    output_uri: str,
    shard: int,
    batch_size: int,
    s3_endpoint: str = "",
) -> dict:
    """Scores shard `shard` of the job planned in `output_uri` with the model (checksums
    verified, its serving form; refused unless it is the plan's version); returns its done
    record's numbers."""
    from sentiops.batch.job import score_shards
    from sentiops.pipeline import stages

    settings = stages.endpoints(s3_endpoint)
    result = score_shards(model_uri, output_uri, [int(shard)], batch_size, settings)
    record = (result.scored or result.skipped)[0]
    print(
        f"{record['name']}: {record['rows']} rows, {record['status']} "
        f"({'finished before' if result.skipped else f'{result.texts_per_sec:.0f} texts/s'})"
    )
    return {
        "shard": record["shard"],
        "rows": record["rows"],
        "skipped": bool(result.skipped),
        "texts_per_sec": record["texts_per_sec"],
    }
