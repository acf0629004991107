"""How good a model is on labelled data.

    evaluate    macro-F1, accuracy, per class, confusion, calibration (ECE), throughput, the
                behavioural suite; p95 latency and size (the gate's budgets)
    report      the self-contained HTML report people read

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
