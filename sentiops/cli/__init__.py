"""The `sentiops` command line: a thin Typer adapter over the core library, one module per
command group.

    main        the Typer `app` (the `sentiops` entry point): every group registered, in order
    common      the consoles and the one error handler; imports nothing of the CLI back
    options     options made of TrainConfig / GateConfig fields (declared there once), and
                options more than one group takes
    tables      what more than one group prints (the gate's decision, a served round trip)
    data        data fetch, validate            model       train, evaluate, predict, tune,
    gate        gate                                        quickstart
    pipeline    pipeline run|demo|submit|compile
    serve       serve                           feedback    feedback
    local       loop, up                        rollout     rollout --local|status|rollback
    drift       drift fit|check                 status      status, console

Nothing is imported here, so no package-init circle can form: `sentiops.cli.main:app`.
"""
