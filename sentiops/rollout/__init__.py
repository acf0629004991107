"""The canary rollout: the candidate serves beside the champion step by step, a statistical judge
compares them from their metrics, and the rollout promotes or rolls back by itself.

    sequential  always-valid statistics: a mixture test martingale of 2 x 2 count tables (a
                mixture SPRT) and confidence sequences for a proportion
    judge       per-metric verdicts over the whole rollout (harm shown by the statistics and an
                effect beyond its margin), evidence of non-inferiority, each look's decision
    record      the decision record (every look, every verdict, approvals, flags): JSON, Markdown
    steps       the step loop over an `Executor` (moves traffic) and a `MetricSource`; approval
                waits; notifications
    approval    a person in the loop: the plan's approval point and timeout, the local file gate
    notify      webhooks for holds, promotions, rollbacks and approval requests (generic, Slack,
                Alertmanager), never blocking
    simulate    simulated traffic as executor + metric source (property tests, bench-judge)
    prometheus  the metric source: Prometheus, by model version
    kserve      the cluster's executor: the InferenceService's canaryTrafficPercent; the
                annotation approval gate
    shadow      the cluster's shadow executor (a shadow InferenceService and a mirror route)
    settle      the registry follows the outcome (promoted -> champion, else rejected)

The embedded stack's executor is `sentiops.local.rollout`. The package imports nothing itself:
import the module you need (docs/architecture.md).
"""
