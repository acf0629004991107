"""The promotion gate: may the challenger replace the champion?

    significance  the paired bootstrap of the macro-F1 difference; group weights
                  (`sentiops.significance`)
    decision      the checks (improvement, confidence, class recall, group drop, latency,
                  size) and the decision record (`Decision`)
    report        the decision record as Markdown
    promotion     the one orchestration: resolve the champion, decide, record the decision in
                  the registry; push an approved model to the store as the `candidate`

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
