"""`sentiops serve` takes the image's protections (serving/__main__.py): its flags reach
`python -m serving` under the names that parser takes, a flag that cannot work is a clear CLI
error before the model is read (no traceback), open labels are warned about, and a model
served with --auth-token-file refuses an unauthenticated :feedback over a real socket."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from sentiops.local.processes import free_port, start_process, wait_http
from sentiops.security.auth import generate
from tests.conftest import invoke, run_cli
from tests.serving.conftest import tfidf_dir

FLAGS = (
    "--auth-token-file",
    "--auth-reads",
    "--rate-limit",
    "--rate-burst",
    "--logger-token-file",
    "--feedback-store",
    "--sample-secret-file",
)


def test_help_lists_the_protections_in_whole_sentences() -> None:
    out = run_cli("serve", "--help", env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"})
    assert out.returncode == 0, out.stderr
    for flag in FLAGS:
        assert flag in out.stdout, flag
    for env in (
        "SENTIOPS_AUTH_TOKEN_FILE",
        "SENTIOPS_FEEDBACK_STORE",
        "SENTIOPS_SAMPLE_SECRET_FILE",
    ):
        assert env in out.stdout, env
    # each paragraph is one line on a wide terminal: no sentence broken where the source is
    lines = [re.sub(r"\s+", " ", line).strip() for line in out.stdout.splitlines()]
    assert (
        "The model is checked (and an s3:// model downloaded, checksums verified) before "
        "the server starts, so a broken model is an error here, not a server that never "
        "gets ready."
    ) in lines
    assert any(
        line.startswith("Labels posted to :feedback") and line.endswith("security.md.")
        for line in lines
    ), out.stdout


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tfidf_dir(tmp_path / "model")


class Exec(Exception):
    pass


def _captured(runner: Any, monkeypatch: pytest.MonkeyPatch, *args: object) -> tuple[Any, dict]:
    """`sentiops serve ARGS` in-process with the exec caught: (result, {argv, env})."""
    seen: dict[str, Any] = {}

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        seen.update(path=path, argv=argv, env=env)
        raise typer.Exit(0)

    monkeypatch.setattr(os, "execve", execve)
    return invoke(runner, "serve", *map(str, args)), seen


def test_every_flag_reaches_python_m_serving_under_its_name(
    runner: Any, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The argv `sentiops serve` execs is parsed by serving/__main__.py's own parser: every
    protection arrives with the value given; the sample secret goes as an environment
    variable."""
    from serving.__main__ import parser

    tokens = generate(tmp_path / "tokens", ("team-a",))
    generate(tmp_path / "logger-token", ("predictor",))
    secret = tmp_path / "sample.key"
    secret.write_text("ab" * 32 + "\n")
    monkeypatch.chdir(tmp_path)  # relative paths are made absolute for the child
    res, seen = _captured(
        runner,
        monkeypatch,
        "--model",
        model,
        "--http-port",
        18080,
        "--feedback-store",
        tmp_path / "store",
        "--auth-token-file",
        "tokens",
        "--auth-reads",
        "--rate-limit",
        2.5,
        "--rate-burst",
        4,
        "--logger-url",
        "http://127.0.0.1:9/",
        "--logger-token-file",
        "logger-token",
        "--sample-secret-file",
        "sample.key",
    )
    assert res.exit_code == 0, res.output
    assert seen["argv"][:3] == [sys.executable, "-m", "serving"]
    args = parser().parse_args(seen["argv"][3:])
    assert args.model_dir == str(model) and args.http_port == 18080
    assert args.auth_token_file == str(tmp_path / "tokens") and args.auth_reads is True
    assert args.rate_limit == 2.5 and args.rate_burst == 4.0
    assert args.feedback_store == str(tmp_path / "store")
    assert args.logger_token_file == str(tmp_path / "logger-token")
    assert args.logger_url == "http://127.0.0.1:9/"
    assert seen["env"]["SENTIOPS_SAMPLE_SECRET_FILE"] == str(secret)
    assert "labels need a token from tokens (team-a); reads too" in res.output
    assert tokens["team-a"] not in res.output  # a token is never printed

    # labels without tokens: served, with a warning; an explicit --rate-limit 0 wins over the
    # environment (the child would read SENTIOPS_RATE_LIMIT otherwise)
    monkeypatch.setenv("SENTIOPS_RATE_LIMIT", "7")
    res, seen = _captured(
        runner,
        monkeypatch,
        "--model",
        model,
        "--http-port",
        18081,
        "--feedback-store",
        tmp_path / "store",
        "--rate-limit",
        0,
    )
    assert res.exit_code == 0, res.output
    args = parser().parse_args(seen["argv"][3:])
    assert args.rate_limit == 0 and args.auth_token_file in ("", None) and not args.auth_reads
    said = " ".join(res.output.split())
    assert "warning: labels are open" in said
    assert "anyone who can reach port 18081 can write labels" in said
    assert "--auth-token-file" in said
    res, seen = _captured(runner, monkeypatch, "--model", model)  # the environment's rate
    assert parser().parse_args(seen["argv"][3:]).rate_limit == 7.0
    assert "labels" not in res.output  # no feedback store: no labels to warn about


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--auth-token-file", "{tmp}/missing"], "--auth-token-file: token file"),
        (["--auth-token-file", "{tmp}/short"], "shorter than 16 characters"),
        (["--auth-token-file", "{tmp}/empty"], "--auth-token-file: no token in"),
        (["--auth-reads"], "--auth-reads needs --auth-token-file"),
        (["--rate-limit", "-1"], "--rate-limit -1.0 is not a rate"),
        (["--rate-limit", "nan"], "--rate-limit nan is not a rate"),
        (["--rate-limit", "1", "--rate-burst", "0.5"], "--rate-burst 0.5 is not a burst"),
        (["--rate-burst", "3"], "--rate-burst needs --rate-limit"),
        (["--logger-token-file", "{tmp}/missing"], "--logger-token-file: cannot read"),
        (["--logger-token-file", "{tmp}/short"], "--logger-token-file: no token in"),
        (["--sample-secret-file", "{tmp}/missing"], "does not name a readable file"),
        (["--sample-secret-file", "{tmp}/short"], "shorter than 16 bytes"),
    ],
)
def test_a_flag_that_cannot_work_is_a_clear_error_before_the_model_is_read(
    runner: Any, tmp_path: Path, args: list[str], says: str
) -> None:
    (tmp_path / "short").write_text("team:abc\n")
    (tmp_path / "empty").write_text("# no token yet\n")
    args = [a.format(tmp=tmp_path) for a in args]
    res = invoke(runner, "serve", "--model", tmp_path / "no-such-model", *args)
    assert res.exit_code != 0, res.output
    said = " ".join(res.output.split())
    assert says in said and "hint:" in said, said
    assert "no-such-model" not in said  # refused before the model is looked at
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)


def test_a_token_file_problem_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    out = run_cli("serve", "--model", tmp_path, "--auth-token-file", tmp_path / "missing")
    assert out.returncode == 14, out.stderr
    assert f"error: --auth-token-file: token file {tmp_path / 'missing'} does not exist" in (
        " ".join(out.stderr.split())
    )
    assert "hint:" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.integration
def test_served_with_a_token_file_labels_need_the_token(model: Path, tmp_path: Path) -> None:
    """`sentiops serve --auth-token-file --feedback-store --rate-limit` over a real socket:
    :feedback without a token 401, with a wrong one 403, with the team's token stored; the
    rate limit answers 429 with Retry-After."""
    tokens = generate(tmp_path / "tokens", ("team-a",))
    port = free_port()
    exe = str(Path(sys.executable).with_name("sentiops"))
    proc = start_process(
        "serve",
        [
            exe,
            "serve",
            "--model",
            str(model),
            "--http-port",
            str(port),
            "--grpc-port",
            str(free_port()),
            "--auth-token-file",
            str(tmp_path / "tokens"),
            "--feedback-store",
            str(tmp_path / "store"),
            "--rate-limit",
            "0.5",
            "--rate-burst",
            "8",
        ],
        tmp_path,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v2/models/sentiment/ready", proc, 120, "sentiops serve ready")
        pred = httpx.post(
            f"{url}/v1/models/sentiment:predict",
            timeout=30,
            json={"instances": ["the service was great and wonderful"]},
        )
        assert pred.status_code == 200, pred.text
        label = {"id": pred.headers["x-request-id"], "label": "positive"}
        feedback = f"{url}/v1/models/sentiment:feedback"
        none = httpx.post(feedback, json=label, timeout=30)
        assert none.status_code == 401, none.text
        assert none.headers["www-authenticate"].startswith("Bearer")
        wrong = httpx.post(
            feedback, json=label, timeout=30, headers={"Authorization": "Bearer " + "w" * 32}
        )
        assert wrong.status_code == 403, wrong.text
        ok = httpx.post(
            feedback,
            json=label,
            timeout=30,
            headers={"Authorization": f"Bearer {tokens['team-a']}"},
        )
        assert ok.status_code == 200 and ok.json()["accepted"] == 1, ok.text
        flood = [
            httpx.post(
                f"{url}/v1/models/sentiment:predict", timeout=30, json={"instances": ["fine"]}
            )
            for _ in range(8)
        ]
        codes = [r.status_code for r in flood]
        assert 429 in codes and set(codes) <= {200, 429}, codes
        assert int(next(r for r in flood if r.status_code == 429).headers["retry-after"]) >= 1
    finally:
        proc.stop()
    log = proc.tail(20000)
    assert "labels need a token from" in log and "team-a" in log
    assert tokens["team-a"] not in log and "Traceback" not in log
