"""The artifact store: a local directory or `s3://bucket/prefix`.

    storage     put / get files and directories (MinIO client, sha256 on every object)
    layout      where live traffic lives in the store: predictions, labelling queue, labels,
                retraining records
    checksum    the sha256 of a file (the store's object metadata, the model directory's
                manifest)

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
