"""Submit a compiled SentiOps pipeline to a Kubeflow Pipelines API (``make pipeline-submit``).

Usage::

    python scripts/cluster/submit_pipeline.py --host http://localhost:8888 \
        --package pipelines/compiled/sentiops.yaml [--param key=value ...]

The run's pods use KFP's runner account (kubeflow/pipeline-runner), which the kind overlay
binds to the ``sentiops-pipeline`` Role in the SentiOps namespace only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--param wants key=value, got {pair!r}")
        params[key] = value
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="http://localhost:8888", help="KFP API endpoint")
    parser.add_argument("--package", required=True, type=Path, help="compiled pipeline YAML")
    parser.add_argument("--experiment", default="sentiops")
    parser.add_argument("--run-name", default=None)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if not args.package.is_file():
        print(f"{args.package} not found: compile the pipeline first", file=sys.stderr)
        return 2

    import kfp  # imported late: --help works without the SDK

    client = kfp.Client(host=args.host)
    run = client.create_run_from_pipeline_package(
        str(args.package),
        arguments=parse_params(args.param),
        run_name=args.run_name,
        experiment_name=args.experiment,
    )
    print(f"submitted run {run.run_id}: {args.host}/#/runs/details/{run.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
