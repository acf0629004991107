"""Batch scoring: files of any size scored with the served model, in bounded memory, resumable.

    inputs   the input files (a file, a directory or an s3:// prefix; CSV / TSV / JSONL /
             Parquet), their rows counted and streamed in chunks of at most a few batches
    plan     the job: model version, input files, shards (fixed row ranges of one file), the
             manifest that makes a rerun resume, and the job's defaults
    output   where the job writes (a local directory or an s3:// prefix): shards written
             atomically, a checksummed done record per finished shard
    score    one shard: every row's outcome, length-sorted batches through the model's
             `predict_proba` (the serving form), Parquet written as it goes
    job      the whole job (plan, resume, every shard, summary) and its progress events

Used by `sentiops batch` (sentiops/cli/batch.py) and the KFP batch pipeline
(sentiops/pipeline/kubeflow/batch.py). The package imports nothing itself: import the module
you need (docs/architecture.md).
"""
