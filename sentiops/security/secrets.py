"""Secret files the servers share, and the random evaluation sample they decide with one.

A secret is a file (a mounted Kubernetes Secret's key, or on one machine a file under
`$SENTIOPS_HOME/secrets/`, mode 0600). `secret_path(env, name)` says where: the file the
environment variable names (it must exist), else the default under the home (created with
random bytes on first use when `create`, atomically, so concurrent processes of one
installation agree on one value). A secret is never logged or printed.

**The evaluation sample.** Whether a prediction is in the random evaluation sample — the only
labels that estimate live accuracy, feed the canary judge, the gate's live test share and the
poisoning guard — is `SampleKey.in_sample(prediction_id)`: HMAC-SHA256 of the *server-issued*
prediction id under the sample secret, read as a number in [0, 1), below the rate. A client
never chooses the id (the predictor issues it), and without the secret nobody — client or
annotator — can tell which predictions are in the sample, nor grind ids into it. The decision
is made once, when the prediction is made or logged, and stored with it (`sample` in the
prediction log); labels take the stored decision.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from sentiops.config import eval_sample_rate, get_settings
from sentiops.errors import ConfigError

#: The evaluation-sample secret (a mounted Secret's key, e.g. /var/run/sentiops/sample/key).
SAMPLE_SECRET_ENV = "SENTIOPS_SAMPLE_SECRET_FILE"
SAMPLE_SECRET_NAME = "eval-sample.key"
#: Shortest secret accepted (bytes after stripping white space).
MIN_SECRET_BYTES = 16


def secrets_dir(home: Path | None = None) -> Path:
    """Where one machine keeps its secrets: `$SENTIOPS_HOME/secrets`."""
    return (home or get_settings().home) / "secrets"


def secret_path(env: str, name: str, home: Path | None = None) -> tuple[Path, bool]:
    """(the file, whether it was named explicitly by `env`)."""
    named = os.environ.get(env, "").strip()
    if named:
        return Path(named).expanduser().resolve(), True
    return secrets_dir(home) / name, False


def create_secret(path: Path, nbytes: int = 32) -> bool:
    """Write a new random secret (hex) to `path` unless it exists; True if this call made it.
    Atomic (O_EXCL on a temporary file, then link): two processes never see two values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if path.exists():
        return False
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(nbytes) + "\n")
    try:
        os.link(tmp, path)  # fails if another process made it first: theirs wins
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def read_secret(env: str, name: str, home: Path | None = None, create: bool = True) -> bytes:
    """The secret's bytes (white space stripped); ConfigError saying what to set when the
    named file is missing, unreadable or too short."""
    path, named = secret_path(env, name, home)
    if not named and create:
        create_secret(path)
    return read_secret_file(path, f"{env}={path}" if named else str(path), env)


def read_secret_file(path: Path, what: str, env: str = "") -> bytes:
    """The secret in `path` (white space stripped); ConfigError naming `what` (the flag or
    variable that named it) when it is missing, unreadable or shorter than MIN_SECRET_BYTES."""
    make = (
        f"mount the Secret there or point {env} at a file holding e.g. `openssl rand -hex 32`"
        if env
        else f"make one with `openssl rand -hex 32 > {path}; chmod 600 {path}`"
    )
    try:
        value = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"{what} does not name a readable file: {exc.strerror or exc}", make
        ) from None
    if len(value) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the secret in {path} ({what}) is shorter than {MIN_SECRET_BYTES} bytes",
            "make one with `openssl rand -hex 32`",
        )
    return value


class SampleKey:
    """Membership of the random evaluation sample: HMAC of a server-issued prediction id
    under the sample secret, below `rate` (default SENTIOPS_EVAL_SAMPLE_RATE)."""

    def __init__(self, secret: bytes, rate: float | None = None) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"the evaluation-sample secret is shorter than {MIN_SECRET_BYTES} bytes",
                "make one with `openssl rand -hex 32`",
            )
        self._secret = secret
        self.rate = eval_sample_rate() if rate is None else rate

    @classmethod
    def from_env(
        cls, home: Path | None = None, create: bool = True, rate: float | None = None
    ) -> SampleKey:
        """The key of this installation: $SENTIOPS_SAMPLE_SECRET_FILE, else (created on first
        use) $SENTIOPS_HOME/secrets/eval-sample.key."""
        return cls(read_secret(SAMPLE_SECRET_ENV, SAMPLE_SECRET_NAME, home, create), rate)

    def score(self, prediction_id: str) -> float:
        """The id's place in [0, 1): uniform, and unknowable without the secret."""
        mac = hmac.new(self._secret, str(prediction_id).encode("utf-8"), hashlib.sha256)
        return int.from_bytes(mac.digest()[:8], "big") / 2**64

    def in_sample(self, prediction_id: str) -> bool:
        return self.score(prediction_id) < self.rate

    def __repr__(self) -> str:  # never the secret
        return f"SampleKey(rate={self.rate})"
