"""The canary rollout: the candidate serves beside the champion step by step, a statistical judge
compares them from their metrics, and the rollout promotes or rolls back by itself.

    judge       per-metric verdicts (Fisher, binned Mann-Whitney U, chi-square + Jensen-Shannon,
                Bonferroni) and the step's decision: continue, hold, promote, rollback
    record      the decision record (every step, every verdict): JSON and Markdown
    steps       the step loop over an `Executor` (moves traffic) and a `MetricSource`
    prometheus  the metric source: Prometheus, by model version
    kserve      the cluster's executor: the InferenceService's canaryTrafficPercent
    settle      the registry follows the outcome (promoted -> champion, else rejected)

The embedded stack's executor is `sentiops.local.rollout`. The package imports nothing itself:
import the module you need (docs/architecture.md).
"""
