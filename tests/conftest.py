"""Shared fixtures: an isolated SENTIOPS_HOME, small synthetic labelled tables, CLI runners."""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from sentiops.cli import gate, pipeline
from sentiops.cli.main import app
from sentiops.security.signing import create_key_pair

if TYPE_CHECKING:
    from tests.servers import Postgres

# every prediction in the random evaluation sample unless a test says otherwise, for servers
# that session- and package-scoped fixtures start too (tests of the sampling set their rate)
os.environ["SENTIOPS_EVAL_SAMPLE_RATE"] = "1"
# one evaluation-sample secret for the whole session (servers of session-scoped fixtures and
# the tests that ask which predictions are in the sample must agree on it)
_SECRETS = Path(tempfile.mkdtemp(prefix="sentiops-test-secrets-"))
(_SECRETS / "eval-sample.key").write_text(secrets.token_hex(32))
os.environ["SENTIOPS_SAMPLE_SECRET_FILE"] = str(_SECRETS / "eval-sample.key")
# one model signing key for the whole session (sentiops.security.signing): the models that
# session-scoped fixtures write and the tests and servers that load them agree on it (tests of
# a machine's own key pair unset SENTIOPS_MODEL_SIGNING_KEY_FILE); no verify key of the shell's
_SIGNING_KEY = Path(tempfile.mkdtemp(prefix="sentiops-test-signing-")) / "model-signing.key"
create_key_pair(_SIGNING_KEY)
os.environ["SENTIOPS_MODEL_SIGNING_KEY_FILE"] = str(_SIGNING_KEY)
for _var in ("SENTIOPS_MODEL_VERIFY_KEY_FILE", "SENTIOPS_REQUIRE_SIGNED_MODELS"):
    os.environ.pop(_var, None)

POS = ["love", "great", "excellent", "amazing", "wonderful", "happy", "fantastic", "good"]
NEG = ["hate", "awful", "terrible", "horrible", "bad", "sad", "angry", "worst"]
NEU = ["okay", "average", "fine", "normal", "usual", "standard", "plain", "so-so"]
THINGS = ["phone", "service", "movie", "flight", "app", "coffee", "update", "store", "team"]


def make_frame(n_per_class: int = 40, seed: int = 0) -> pd.DataFrame:
    """Synthetic but learnable sentiment data: each class has its own cue words."""
    rng = random.Random(seed)
    rows = []
    for label, words in (("positive", POS), ("negative", NEG), ("neutral", NEU)):
        for i in range(n_per_class):
            w1, w2 = rng.sample(words, 2)
            thing = rng.choice(THINGS)
            rows.append((f"the {thing} was {w1} and {w2} #{seed}-{label}-{i}", label))
    rng.shuffle(rows)
    return pd.DataFrame(rows, columns=["text", "label"])


def gate_and_pipeline_app() -> typer.Typer:
    """`sentiops gate` and `sentiops pipeline ...` on an app of their own (the CLI tests of the
    gate and the pipeline invoke it)."""
    cli = typer.Typer()
    gate.register_commands(cli)
    pipeline.register_commands(cli)
    return cli


@pytest.fixture(autouse=True)
def sentiops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SENTIOPS_HOME", str(home))
    # mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI (for subprocesses): set, then
    # delete, so monkeypatch records "absent" and removes what a test's MLflow calls leave behind
    for var in (
        "MLFLOW_TRACKING_URI",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "SENTIOPS_S3_ENDPOINT",
    ):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    # every prediction in the random evaluation sample unless a test says otherwise (tests of
    # the sampling set their own rate; the labelling-queue tests set 0)
    monkeypatch.setenv("SENTIOPS_EVAL_SAMPLE_RATE", "1")
    return home


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throw-away PostgreSQL cluster for the whole session (Debian's binaries, loopback,
    password auth); tests take a database of their own with `postgres.create_database()`."""
    from tests.servers import postgres_server

    with postgres_server() as server:
        yield server


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A real S3 server (`rclone serve s3`, tests/servers.py) over `tmp_path / "s3root"`, with
    SENTIOPS_S3_ENDPOINT and the AWS keys set for this test (and the processes it starts);
    yields its endpoint, key, secret and root."""
    from tests.servers import s3_server

    with s3_server(tmp_path / "s3root") as srv:
        monkeypatch.setenv("SENTIOPS_S3_ENDPOINT", srv["endpoint"])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", srv["key"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", srv["secret"])
        yield srv


@pytest.fixture(scope="session")
def vader_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One download of the vaderSentiment sdist per test session (shared cache dir)."""
    return tmp_path_factory.mktemp("vader-cache")


@pytest.fixture
def csv_data(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    make_frame(40).to_csv(path, index=False)
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    """Run the CLI in-process; returns the click Result (exit_code, output)."""
    return runner.invoke(app, [str(a) for a in args])


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the real `sentiops` entry point in a subprocess (real exit code, real stderr)."""
    exe = Path(sys.executable).with_name("sentiops")
    return subprocess.run(
        [str(exe), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def train_transformer(
    folder: Path, base_model: str, n_per_class: int = 30, **fields: object
) -> Path:
    """A small transformer trained through the real training path (`sentiops.training.train.train`:
    fit, serving form, drift detector, scoring) on learnable synthetic data; `fields` are
    TrainConfig fields (epochs, max_length, ...). A distilled student learns from the training
    texts alone unless `transfer` is given (the built-in texts would add 6,000 texts of another
    domain and minutes: tests/training/test_transfer.py covers the transfer sources)."""
    from sentiops.training.train import TrainConfig, train

    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "d.csv"
    make_frame(n_per_class).to_csv(csv, index=False)
    cfg = TrainConfig.model_validate(
        {
            "data": [str(csv)],
            "output": folder / "m",
            "model_type": "transformer",
            "base_model": base_model,
            "min_per_class": 5,
            "track": False,
            "transfer": [],
            **fields,
        }
    )
    return train(cfg, progress=False).model_dir


def write_secret(folder: Path, data: dict[str, str]) -> Path:
    """`data` as the kubelet mounts (and updates) a Kubernetes Secret: the files in a new
    `..<timestamp>` directory, `..data` swapped to it atomically, a `<key> -> ..data/<key>`
    link per key (links of keys no longer there removed), the old directory removed."""
    import shutil
    import time

    folder.mkdir(parents=True, exist_ok=True)
    old = os.readlink(folder / "..data") if (folder / "..data").is_symlink() else None
    stamp = folder / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for key, value in data.items():
        (stamp / key).write_text(value + "\n")
    (folder / "..data_tmp").symlink_to(stamp.name)
    os.replace(folder / "..data_tmp", folder / "..data")
    for key in data:
        if not (folder / key).is_symlink():
            (folder / key).symlink_to(f"..data/{key}")
    for link in folder.iterdir():
        if link.is_symlink() and not link.name.startswith("..") and link.name not in data:
            link.unlink()
    if old:
        shutil.rmtree(folder / old)
    return folder
