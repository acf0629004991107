"""Bearer tokens for the write paths (labels become training data and part of the gate's
test set, so only those who should may write them).

Tokens come from a file (a mounted Kubernetes Secret): either a directory with one file per
token (the file's name is the token's name, e.g. one per annotator team) or one file with a
line per token, `name:token` (or a bare `token`, named `default`); `#` starts a comment.
`SENTIOPS_AUTH_TOKEN_FILE` names the file for every server that reads it; servers hold it as a
`TokenFile`, which reads it again when it changes (a rotated Secret, without a restart).

A request is checked with `Tokens.check(authorization_header)`: the presented token is hashed
and compared with every configured token's hash in constant time (`hmac.compare_digest`, no
early exit), so neither the time nor the answer tells which token or how much of it matched.
The token's *name* is what is recorded (provenance of each label) and logged; a token itself
is never logged or printed in full (`redact`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiops.errors import SentiOpsError

logger = logging.getLogger("sentiops.auth")
TOKEN_FILE_ENV = "SENTIOPS_AUTH_TOKEN_FILE"
DEFAULT_NAME = "default"
#: Shortest token accepted (characters): a token is a secret, not a password.
MIN_LENGTH = 16


class AuthError(SentiOpsError):
    """A request without a valid token (401: none or malformed; 403: not a known token), or
    a token file that cannot be used."""

    exit_code = 14

    def __init__(self, message: str, hint: str = "", status: int = 401) -> None:
        super().__init__(message, hint)
        self.status = status


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def redact(token: str) -> str:
    """What may be shown of a token: its first four characters."""
    return f"{token[:4]}…({len(token)} chars)"


@dataclass(frozen=True)
class Tokens:
    """Named tokens, kept as sha256 digests only."""

    digests: tuple[tuple[str, bytes], ...]
    source: str = ""

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.digests]

    @classmethod
    def from_mapping(cls, tokens: dict[str, str], source: str = "") -> Tokens:
        bad = [name for name, tok in tokens.items() if len(tok) < MIN_LENGTH]
        if bad:
            raise AuthError(
                f"token(s) {bad} in {source or 'the configuration'} are shorter than "
                f"{MIN_LENGTH} characters",
                "make tokens with `openssl rand -hex 24` (48 characters)",
            )
        if not tokens:
            raise AuthError(
                f"no token in {source or 'the configuration'}",
                "put one `name:token` per line (or one file per token)",
            )
        digests = tuple((name, _digest(tok)) for name, tok in tokens.items())
        first: dict[bytes, str] = {}
        same = [f"{first[d]} = {name}" for name, d in digests if first.setdefault(d, name) != name]
        if same:  # a label records its token's name: one token must name one team
            raise AuthError(
                f"the same token under several names in "
                f"{source or 'the configuration'}: {', '.join(same)}",
                "give every name a token of its own",
            )
        return cls(digests, source)

    @classmethod
    def load(cls, path: str | Path) -> Tokens:
        """A directory (one file per token, named after it) or a `name:token` line file."""
        path = Path(path)
        tokens: dict[str, str] = {}
        if path.is_dir():
            for f in sorted(path.iterdir()):
                if f.is_file() and not f.name.startswith("."):  # a Secret's ..data links
                    tokens[f.name] = f.read_text().strip()
        elif path.is_file():
            for n, line in enumerate(path.read_text().splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                name, sep, token = line.rpartition(":")
                name, token = (name.strip(), token.strip()) if sep else (DEFAULT_NAME, line)
                if not name or not token or name in tokens:
                    raise AuthError(
                        f"{path}:{n}: expected `name:token` with a new name",
                        "one `name:token` per line",
                    )
                tokens[name] = token
        else:
            raise AuthError(
                f"token file {path} does not exist",
                f"mount the token Secret there or set {TOKEN_FILE_ENV}",
            )
        return cls.from_mapping(tokens, str(path))

    def check(self, authorization: str | None) -> str:
        """The name of the token presented as `Authorization: Bearer <token>`; AuthError 401
        (missing or malformed) or 403 (not one of these tokens)."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(
                "this endpoint needs a token: no `Authorization: Bearer <token>` header",
                "send the token your team was given (`Authorization: Bearer ...`)",
                401,
            )
        presented = _digest(token.strip())
        found = ""
        for name, digest in self.digests:  # every token compared: constant time
            if hmac.compare_digest(presented, digest):
                found = name
        if not found:
            raise AuthError(
                "the token is not valid here", "check the token (it may have been rotated)", 403
            )
        return found


def from_env() -> Tokens | None:
    """The tokens named by SENTIOPS_AUTH_TOKEN_FILE, or None (no authentication)."""
    path = os.environ.get(TOKEN_FILE_ENV, "").strip()
    return Tokens.load(path) if path else None


def token_from_file(path: str | Path) -> str:
    """The token a client presents, from a file in the same format (the first one)."""
    lines = [ln.split("#", 1)[0].strip() for ln in Path(path).read_text().splitlines()]
    first = next((ln for ln in lines if ln), "")
    token = first.rpartition(":")[2].strip()
    if len(token) < MIN_LENGTH:
        raise AuthError(f"no token in {path}", "put `name:token` (or the token) on a line")
    return token


def generate(path: str | Path, names: tuple[str, ...] = (DEFAULT_NAME,)) -> dict[str, str]:
    """Write a new token per name to `path` (`name:token` lines, mode 0600); returns them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = {name: secrets.token_urlsafe(24) for name in names}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"{name}:{tok}\n" for name, tok in tokens.items()))
    return tokens


def _signature(path: Path) -> tuple | None:
    """What changes when the tokens at `path` may have: the file's (or each visible file's,
    links followed) inode, size and mtime, and the directory's own mtime (a Kubernetes Secret
    is updated by swapping its `..data` link); None when it cannot be read."""
    try:
        if not path.is_dir():
            st = path.stat()
            return (st.st_ino, st.st_size, st.st_mtime_ns)
        files = []
        for f in sorted(path.iterdir()):
            if not f.name.startswith("."):
                st = f.stat()
                files.append((f.name, st.st_ino, st.st_size, st.st_mtime_ns))
        return (path.stat().st_mtime_ns, *files)
    except OSError:
        return None


class TokenFile:
    """`Tokens` from a file or directory (`Tokens.load`), read again when it changes — a
    rotated Secret is taken up without a restart. Whether it changed is looked at (a few
    `stat`s) at most every `every` seconds, on a request. A changed file that cannot be used
    (no token, too short, the same token twice, unreadable) is not taken: the tokens read
    before stay and the log says why; fix the Secret and it is read again."""

    def __init__(self, path: str | Path, every: float = 1.0, clock: Any = time.monotonic) -> None:
        self.path, self.every, self.clock = Path(path), every, clock
        self.tokens = Tokens.load(self.path)  # a server does not start with unusable tokens
        self.seen = _signature(self.path)
        self.due = clock() + every
        self.lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return self.current().names

    def check(self, authorization: str | None) -> str:
        """`Tokens.check` against the tokens as they are now."""
        return self.current().check(authorization)

    def current(self) -> Tokens:
        now = self.clock()
        if now < self.due:
            return self.tokens
        with self.lock:
            self.due = now + self.every
            signature = _signature(self.path)
            if signature != self.seen:
                self.seen = signature
                try:
                    self.tokens = Tokens.load(self.path)
                    logger.info(
                        "tokens read again from %s: %s", self.path, ", ".join(self.tokens.names)
                    )
                except AuthError as exc:
                    logger.error(
                        "tokens in %s changed but cannot be used, the %d read before stay: %s; %s",
                        self.path,
                        len(self.tokens.names),
                        exc.message,
                        exc.hint,
                    )
        return self.tokens
