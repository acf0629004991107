"""The whole loop on one machine (`make run`): train -> gate -> serve -> canary -> drift ->
labels -> retrain -> gate -> canary, on the embedded default with real servers on loopback.

    1 train     the KFP pipeline (kfp.local) twice: the TF-IDF baseline becomes the first
                champion; a transformer is trained, gated against it and becomes the candidate
    2 serve     the champion behind the traffic split, logging to the drift sidecar, scraped by
                Prometheus; tweets replayed as live traffic
    3 canary    the candidate rolled out step by step, judged from Prometheus, promoted (or
                rolled back) by the judge; the registry follows
    4 shift     the traffic turns to another domain (movie-review snippets); annotators (the
                demo plays them from the dataset's ground truth) label the random evaluation
                sample of live predictions — in Label Studio when it is installed (the
                labelling receiver stores their annotations with provenance), else through
                the feedback API: live accuracy shows the drop
    5 drift     the sidecar flags drift window after window and queues texts for labelling;
                the annotators label the queue
    6 retrain   with drift and new labels, the sidecar triggers a retraining run (the same
                pipeline, original data + the labels); its gate tests on a held-out share of
                the new labels too
    7 canary    the retrained candidate rolled out under the new traffic, judged with live
                accuracy from the labels; promoted, it serves
    8 report    live accuracy on the new domain before and after; every server stopped

The same code runs on a cluster with other adapters (KFP backend, KServe, the KServe agent's
logger); nothing here is mocked. `quick=True` is the short variant for tests (TF-IDF models,
smaller windows and steps).

    config      every knob of the loop (`LoopConfig`; `quick()` for tests), what it trains on
    annotators  people labelling predictions, played from the datasets' ground truth
                (in Label Studio, or through the feedback API)
    progress    what the loop says while it waits: training runs followed from their log
                (stage, step, rate, ETA), every wait with a heartbeat
    story       what the loop tells: its chapters, live accuracy by domain, the verdict
    run         one function per chapter over a `LoopState`, and `run_loop` calling them

`make up` (`sentiops.local.up`) keeps the same stack up without the story; both wire it with
`sentiops.local.wiring`. The package imports
nothing itself: import the module you need (docs/architecture.md).
"""
