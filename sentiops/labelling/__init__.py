"""Label Studio as the labelling workbench: the platform's labelling queue (the most uncertain
texts of drifting windows) and its random evaluation sample become Label Studio tasks, and the
annotations people make there come back as the platform's labels, with who made them
(docs/labelling.md).

    tasks        the label config, the two projects of a model, task building from the
                 labelling queue's parts and the prediction log's random sample
    annotations  an annotation's label, the majority of a task, Krippendorff's alpha per
                 project and per annotator, a task -> the feedback item that stores it
    studio       Label Studio's REST API over HTTP (retries with backoff), the server's
                 environment and settings on one machine
    sync         push (the store -> tasks) and pull (annotations -> the feedback intake,
                 idempotent: revised, withdrawn, unchanged), the sinks (the feedback API
                 with the receiver's token, or the store itself)
    receiver     the webhook receiver (Starlette): Label Studio's annotation webhooks,
                 checked against a shared secret, plus a periodic push and pull

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
