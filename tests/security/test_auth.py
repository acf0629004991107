"""Bearer tokens (sentiops.auth) in the formats the servers read: a Kubernetes Secret mounted
as a directory (one file per name, behind the kubelet's `..data` links) and a `name:token`
line file; unusable files refused with what is wrong and how to fix it; 401 for no token,
403 for a wrong one; a `TokenFile` takes up a rotated Secret without a restart."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from sentiops.security.auth import MIN_LENGTH, AuthError, TokenFile, Tokens
from tests.conftest import write_secret

A, B, C = "a" * 24 + "-team-a", "b" * 24 + "-team-b", "c" * 24 + "-team-c"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_a_mounted_secret_directory_one_token_per_name(tmp_path: Path) -> None:
    secret = write_secret(tmp_path / "tokens", {"team-a": A, "team-b": B})
    assert (secret / "..data").is_symlink() and (secret / "team-a").is_symlink()
    tokens = Tokens.load(secret)
    assert tokens.names == ["team-a", "team-b"]  # not `..data` nor the timestamped directory
    assert tokens.check(bearer(A)) == "team-a" and tokens.check(bearer(B)) == "team-b"
    assert tokens.check(f"bearer  {B} ") == "team-b"  # scheme in any case, spaces around


def test_a_line_file_with_names_comments_and_a_bare_token(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(f"# annotator teams\n\nteam-a:{A}\n  team-b : {B}  # rotated in May\n{C}\n")
    tokens = Tokens.load(f)
    assert tokens.names == ["team-a", "team-b", "default"]
    assert [tokens.check(bearer(t)) for t in (A, B, C)] == ["team-a", "team-b", "default"]


@pytest.mark.parametrize(
    ("content", "says", "hint"),
    [
        (
            f"team-a:{A}\nteam-b:short\n",
            f"['team-b'] in {{f}} are shorter than {MIN_LENGTH}",
            "openssl rand",
        ),
        (
            f"team-a:{A}\nteam-a:{B}\n",
            "{f}:2: expected `name:token` with a new name",
            "one `name:token` per line",
        ),
        (
            f"team-a:{A}\nteam-b:{A}\n",
            "the same token under several names in {f}: team-a = team-b",
            "a token of its own",
        ),
        (f":{A}\n", "{f}:1: expected `name:token`", "per line"),
        ("# nothing yet\n\n", "no token in {f}", "one `name:token` per line"),
    ],
    ids=["too short", "name twice", "token twice", "no name", "empty"],
)
def test_unusable_line_files_are_refused_saying_why(
    tmp_path: Path, content: str, says: str, hint: str
) -> None:
    f = tmp_path / "tokens"
    f.write_text(content)
    with pytest.raises(AuthError) as refused:
        Tokens.load(f)
    assert says.format(f=f) in refused.value.message and hint in refused.value.hint
    assert A not in refused.value.message + refused.value.hint  # a token is never shown


def test_unusable_secret_directories_are_refused_saying_why(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match=r"\['team-b'\] .* shorter than"):
        Tokens.load(write_secret(tmp_path / "short", {"team-a": A, "team-b": "x" * 8}))
    with pytest.raises(AuthError, match="the same token under several names .*team-a = team-b"):
        Tokens.load(write_secret(tmp_path / "twice", {"team-a": A, "team-b": A}))
    with pytest.raises(AuthError, match="no token in"):
        Tokens.load(write_secret(tmp_path / "empty", {}))
    with pytest.raises(AuthError, match="does not exist") as missing:
        Tokens.load(tmp_path / "not-mounted")
    assert "SENTIOPS_AUTH_TOKEN_FILE" in missing.value.hint


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", f"Basic {A}", A, f"Token {A}"])
def test_no_token_is_a_401(tmp_path: Path, header: str | None) -> None:
    tokens = Tokens.from_mapping({"team-a": A})
    with pytest.raises(AuthError) as refused:
        tokens.check(header)
    assert refused.value.status == 401
    assert "Authorization: Bearer" in refused.value.message + refused.value.hint


@pytest.mark.parametrize("token", [B, A[:-1], A + "x", A.upper(), "z" * 64])
def test_a_wrong_token_is_a_403(token: str) -> None:
    tokens = Tokens.from_mapping({"team-a": A})
    with pytest.raises(AuthError) as refused:
        tokens.check(bearer(token))
    assert refused.value.status == 403 and "not valid" in refused.value.message
    assert token not in refused.value.message + refused.value.hint


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_rotated_secret_is_taken_up_without_a_restart(tmp_path: Path) -> None:
    """The kubelet's Secret update (a new `..data`): the new token works and the old is a 403
    once the file is looked at again (at most every `every` seconds), a new key is a new
    team; the names follow."""
    secret = write_secret(tmp_path / "tokens", {"team-a": A})
    clock = Clock()
    tokens = TokenFile(secret, every=1.0, clock=clock)
    assert tokens.check(bearer(A)) == "team-a"
    write_secret(secret, {"team-a": B, "team-c": C})  # team-a rotated, team-c added
    assert tokens.check(bearer(A)) == "team-a"  # not looked at yet: one stat a second at most
    clock.now = 1.0
    with pytest.raises(AuthError) as old:
        tokens.check(bearer(A))
    assert old.value.status == 403
    assert tokens.check(bearer(B)) == "team-a" and tokens.check(bearer(C)) == "team-c"
    assert tokens.names == ["team-a", "team-c"]


def test_a_rotated_line_file_is_taken_up(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(f"team-a:{A}\n")
    clock = Clock()
    tokens = TokenFile(f, every=0.5, clock=clock)
    new = tmp_path / "tokens.new"  # written aside, then moved over the old one
    new.write_text(f"team-a:{A}\nteam-b:{B}\n")
    os.replace(new, f)
    clock.now = 0.5
    assert tokens.check(bearer(B)) == "team-b" and tokens.check(bearer(A)) == "team-a"
    f.write_text(f"team-b:{B}\n")  # edited in place: team-a removed
    clock.now = 1.0
    with pytest.raises(AuthError):
        tokens.check(bearer(A))


def test_an_unusable_change_keeps_the_tokens_read_before_and_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = write_secret(tmp_path / "tokens", {"team-a": A})
    clock = Clock()
    tokens = TokenFile(secret, every=1.0, clock=clock)
    write_secret(secret, {"team-a": "too-short"})
    clock.now = 1.0
    with caplog.at_level(logging.ERROR, logger="sentiops.auth"):
        assert tokens.check(bearer(A)) == "team-a"
    (record,) = caplog.records
    assert "changed but cannot be used, the 1 read before stay" in record.getMessage()
    assert "shorter than" in record.getMessage() and "too-short" not in record.getMessage()
    write_secret(secret, {"team-a": B})  # fixed: read again
    clock.now = 2.0
    assert tokens.check(bearer(B)) == "team-a"
    with pytest.raises(AuthError):
        tokens.check(bearer(A))


def test_unusable_tokens_at_start_stop_the_server_from_starting(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="does not exist"):
        TokenFile(tmp_path / "nothing")
