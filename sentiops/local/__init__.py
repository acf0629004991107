"""One machine, no cluster: the embedded default's servers and what runs on them.

    processes   child processes on loopback (own process group, log file, waited for)
    stack       the servers: predictors, the drift sidecar, Prometheus; the run's tokens
    traffic     the traffic split in front of the predictors, the replay of live traffic
    rollout     the canary on the embedded stack (`LocalStack`: the rollout's local executor)
    loop/       `make run`: the whole loop, told as a story
    up          `make up`: the stack until Ctrl-C
    quickstart  train and compare both models in-process, no pipeline

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
