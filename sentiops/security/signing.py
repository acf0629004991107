"""Ed25519 signatures of model directories: who may publish a model.

A model directory's `model.json` holds the sha256 of every other file
(`sentiops.models.modeldir`); its signature (`signature.json` beside it) makes the manifest,
and so every file, the work of whoever holds the private key. Without it, anyone who can write
to the store can replace a model and its checksums together.

**Keys** are PEM files, as OpenSSL makes them:

    openssl genpkey -algorithm ed25519 -out model-signing.key       # private, PKCS#8
    openssl pkey -in model-signing.key -pubout -out model-signing.pub   # public, SPKI

A key's id is the sha256 (hex) of its 32 raw public-key bytes; signatures name it. A verify
key file may hold several public keys, PEM blocks one after another (`cat old.pub new.pub`):
a model signed by any of them loads — how a signing key is rotated without refusing the
models signed before.

**Signing** (`signing_key()`), whenever a model directory is written or extended: the key the
environment variable `SENTIOPS_MODEL_SIGNING_KEY_FILE` names (a mounted Kubernetes Secret's
key; it must exist), else this machine's own key, `$SENTIOPS_HOME/secrets/model-signing.key`
(mode 0600), made on first use together with its public half `model-signing.pub` beside it
(atomically: concurrent processes agree on one key).

**Verifying** (`verify()`), whenever a model directory is read, before anything in it is
loaded; the first of

1. the public key `SENTIOPS_MODEL_VERIFY_KEY_FILE` names (the predictor, the sidecar, batch
   scoring: they never hold the private key);
2. the public half of the private key `SENTIOPS_MODEL_SIGNING_KEY_FILE` names (a process that
   signs verifies what it reads with its own key);
3. this machine's `$SENTIOPS_HOME/secrets/model-signing.pub`, if it exists (a machine that
   has trained signs and verifies its own models);

else verification is off — unless `SENTIOPS_REQUIRE_SIGNED_MODELS=true`, which refuses every
model until a verify key is configured. With a key, a model with no signature, a signature by
another key or a signature that does not match `model.json` is a `ModelError` naming the key
it expected and how to fix it.

Loaded keys are cached per path and modification time; no key material is ever logged,
printed or put into an error (only key ids and paths).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sentiops.config import get_settings
from sentiops.errors import ConfigError, ModelError

#: The private key (PEM, PKCS#8) that signs model directories, e.g. a mounted Secret's key.
SIGNING_KEY_ENV = "SENTIOPS_MODEL_SIGNING_KEY_FILE"
#: The public key (PEM, SubjectPublicKeyInfo) that models must be signed by.
VERIFY_KEY_ENV = "SENTIOPS_MODEL_VERIFY_KEY_FILE"
#: `true`: refuse every model when no verify key is configured (instead of not verifying).
REQUIRE_ENV = "SENTIOPS_REQUIRE_SIGNED_MODELS"
#: This machine's own key pair under `$SENTIOPS_HOME/secrets/`.
SIGNING_KEY_NAME = "model-signing.key"
VERIFY_KEY_NAME = "model-signing.pub"
ALGORITHM = "ed25519"

_MAKE_PRIVATE = "openssl genpkey -algorithm ed25519 -out model-signing.key"
_MAKE_PUBLIC = "openssl pkey -in model-signing.key -pubout -out model-signing.pub"


def key_id(public: Ed25519PublicKey) -> str:
    """sha256 (hex) of the 32 raw public-key bytes: what a signature names its key by."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def short(kid: str) -> str:
    """A key id as messages show it (the first 16 hex digits)."""
    return str(kid)[:16]


@dataclass(frozen=True)
class SigningKey:
    """A private key and where it came from (its repr shows no key material)."""

    private: Ed25519PrivateKey = field(repr=False)
    path: Path
    key_id: str

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()


@dataclass(frozen=True)
class VerifyKey:
    """The trusted public keys by id (one, or several while a key is rotated), where they came
    from (`source`, for messages)."""

    keys: dict[str, Ed25519PublicKey] = field(repr=False)
    path: Path
    source: str

    @property
    def key_id(self) -> str:
        """The first key's id (the one a single-key file holds)."""
        return next(iter(self.keys))

    @property
    def ids(self) -> str:
        """The trusted keys' ids as messages show them."""
        return ", ".join(short(k) for k in self.keys)


# ------------------------------------------------------------------------------ key files
_cache: dict[tuple[str, str, int, int], Any] = {}
_lock = threading.Lock()


def _read_key_file(path: Path, env: str | None, private: bool) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        how = f"{env}={path} does not name a readable file" if env else f"cannot read {path}"
        make = _MAKE_PRIVATE if private else _MAKE_PUBLIC
        where = f"point {env} at" if env else "put"
        raise ConfigError(
            f"{how}: {exc.strerror or exc}",
            f"mount the Secret there, or {where} an Ed25519 "
            f"{'private' if private else 'public'} key in PEM (`{make}`)",
        ) from None


def _cached(path: Path, kind: str, load: Any) -> Any:
    try:
        st = path.stat()
    except OSError:
        return load()  # _read_key_file raises the error that says what to do
    key = (str(path), kind, st.st_mtime_ns, st.st_size)
    with _lock:
        if key in _cache:
            return _cache[key]
    value = load()
    with _lock:
        for old in [k for k in _cache if k[:2] == key[:2]]:
            del _cache[old]
        _cache[key] = value
    return value


def load_signing_key(path: Path, env: str | None = None) -> SigningKey:
    """An Ed25519 private key from a PEM file (PKCS#8, unencrypted); ConfigError saying how to
    make one when the file is missing, unreadable or holds something else. `env`: the variable
    that named the file (for the message)."""
    path = Path(path)

    def load() -> SigningKey:
        data = _read_key_file(path, env, private=True)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:  # encrypted: a server cannot type a passphrase
            raise ConfigError(
                f"the model signing key {path} is encrypted",
                "store it unencrypted (mode 0600, or in a Kubernetes Secret): "
                f"`openssl pkey -in {path.name} -out model-signing.key`",
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(
                f"{path} is not a PEM private key",
                f"make an Ed25519 signing key with `{_MAKE_PRIVATE}`",
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(
                f"{path} is a {type(key).__name__.removeprefix('_')} key, not an Ed25519 key",
                f"model signatures are Ed25519: `{_MAKE_PRIVATE}`",
            )
        return SigningKey(key, path, key_id(key.public_key()))

    result: SigningKey = _cached(path, "private", load)
    return result


_PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


def load_verify_key(path: Path, source: str = "", env: str | None = None) -> VerifyKey:
    """The Ed25519 public key(s) of a PEM file (SubjectPublicKeyInfo, what `openssl pkey
    -pubout` writes; several blocks one after another are several trusted keys); ConfigError
    when it is missing, unreadable, a private key or holds no Ed25519 key."""
    path = Path(path)

    def load() -> VerifyKey:
        data = _read_key_file(path, env, private=False)
        if b"PRIVATE KEY" in data:
            raise ConfigError(
                f"{path} holds a private key; a verifier needs only the public half",
                f"`openssl pkey -in {path.name} -pubout -out model-signing.pub` and point "
                f"{VERIFY_KEY_ENV} at that (keep the private key where models are signed)",
            )
        keys: dict[str, Ed25519PublicKey] = {}
        for block in _PEM_PUBLIC.findall(data) or [data]:
            try:
                key = serialization.load_pem_public_key(block)
            except (ValueError, UnsupportedAlgorithm):
                raise ConfigError(
                    f"{path} is not a PEM public key", f"make one with `{_MAKE_PUBLIC}`"
                ) from None
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigError(
                    f"{path} holds a {type(key).__name__.removeprefix('_')} key, not an "
                    "Ed25519 key",
                    f"model signatures are Ed25519: `{_MAKE_PRIVATE}`, then `{_MAKE_PUBLIC}`",
                )
            keys[key_id(key)] = key
        return VerifyKey(keys, path, source or str(path))

    result: VerifyKey = _cached(path, "public", load)
    return result


def _write_new(path: Path, data: bytes, mode: int) -> bool:
    """Write `data` to `path` unless it exists; True if this call made it. Atomic (O_EXCL on
    a temporary file, then link), like `secrets.create_secret`: the first process wins."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def create_key_pair(private_path: Path, public_path: Path | None = None) -> bool:
    """Make a new Ed25519 key pair unless `private_path` exists (mode 0600, in a 0700 folder)
    and write its public half to `public_path` (default: `.pub` beside it) if that is missing.
    True if this call made the private key."""
    private_path = Path(private_path)
    public_path = public_path or private_path.with_suffix(".pub")
    private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    made = False
    if not private_path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        made = _write_new(private_path, pem, 0o600)
    if not public_path.exists():  # the winner's public half (any process writes the same)
        _write_new(public_path, public_pem(load_signing_key(private_path).public), 0o644)
    return made


# ------------------------------------------------------------------------------ which keys
def secrets_dir(home: Path | None = None) -> Path:
    """Where one machine keeps its secrets, its key pair among them: `$SENTIOPS_HOME/secrets`
    (the folder of `sentiops.security.secrets`)."""
    return (home or get_settings().home) / "secrets"


def key_path(env: str, name: str, home: Path | None = None) -> tuple[Path, bool]:
    """(the key file, whether `env` named it): the file the variable names, else `name` in
    this machine's secrets folder (`secrets.secret_path`'s rule)."""
    named = os.environ.get(env, "").strip()
    if named:
        return Path(named).expanduser().resolve(), True
    return secrets_dir(home) / name, False


def signing_key(home: Path | None = None) -> SigningKey:
    """The key models are signed with: `SENTIOPS_MODEL_SIGNING_KEY_FILE` (must exist), else
    this machine's `$SENTIOPS_HOME/secrets/model-signing.key` (made on first use)."""
    path, named = key_path(SIGNING_KEY_ENV, SIGNING_KEY_NAME, home)
    if named:
        return load_signing_key(path, SIGNING_KEY_ENV)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # the machine's secrets folder (secrets.create_secret's too)
    create_key_pair(path, secrets_dir(home) / VERIFY_KEY_NAME)
    return load_signing_key(path)


def signed_required() -> bool:
    """`SENTIOPS_REQUIRE_SIGNED_MODELS`: true | false (default false)."""
    raw = os.environ.get(REQUIRE_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{REQUIRE_ENV}={raw!r} is not true or false", f"set {REQUIRE_ENV}=true")


def verify_key(home: Path | None = None) -> VerifyKey | None:
    """The key models must be signed by (module docstring: the explicitly named public key,
    else the named signing key's public half, else this machine's default public key), or
    None when none is configured."""
    named = os.environ.get(VERIFY_KEY_ENV, "").strip()
    if named:
        path = Path(named).expanduser().resolve()
        return load_verify_key(path, f"{VERIFY_KEY_ENV}={path}", VERIFY_KEY_ENV)
    signer, is_named = key_path(SIGNING_KEY_ENV, SIGNING_KEY_NAME, home)
    if is_named:
        key = load_signing_key(signer, SIGNING_KEY_ENV)
        return VerifyKey(
            {key.key_id: key.public}, signer, f"the public half of {SIGNING_KEY_ENV}={signer}"
        )
    default = secrets_dir(home) / VERIFY_KEY_NAME
    if default.exists():
        return load_verify_key(default, f"this machine's own key {default}")
    return None


# ------------------------------------------------------------------------------ sign, verify
def sign(data: bytes, key: SigningKey | None = None) -> dict[str, str]:
    """The signature record of `data` (e.g. the bytes of model.json): algorithm, key id and
    the base64 Ed25519 signature."""
    key = key or signing_key()
    signature = base64.b64encode(key.private.sign(data)).decode("ascii")
    return {"algorithm": ALGORITHM, "key_id": key.key_id, "signature": signature}


def verify(
    data: bytes, record: dict[str, Any] | None, what: str, key: VerifyKey | None = None
) -> VerifyKey | None:
    """Check that `record` (a `sign` record, None when there is none) signs `data` with
    `key` (default: `verify_key()`); `what` names the signed thing in messages. Returns the
    key that verified it, or None when verification is off (no key configured and signed
    models not required). Raises ModelError saying which key was expected and how to fix it."""
    if key is None:
        key = verify_key()
    if key is None:
        if signed_required():
            raise ModelError(
                f"{REQUIRE_ENV}=true but no key to verify {what} with is configured",
                f"set {VERIFY_KEY_ENV} to the public key (PEM) models are signed with "
                f"(`{_MAKE_PUBLIC}` makes it from the signing key)",
            )
        return None
    expected = f"key{'s' if len(key.keys) > 1 else ''} {key.ids} ({key.source})"
    if record is None:
        raise ModelError(
            f"{what} is not signed, and only models signed by {expected} are loaded here",
            "sign it where that private key is (`sentiops model sign DIR`, after checking the "
            f"model is yours) or retrain it with {SIGNING_KEY_ENV} pointing at that key",
        )
    if not isinstance(record, dict) or record.get("algorithm") != ALGORITHM:
        algorithm = record.get("algorithm") if isinstance(record, dict) else None
        raise ModelError(
            f"{what} has a signature of algorithm {algorithm!r}; SentiOps verifies {ALGORITHM}",
            "re-sign it with `sentiops model sign DIR` or retrain it",
        )
    signer = str(record.get("key_id") or "")
    public = key.keys.get(signer)
    if public is None:
        raise ModelError(
            f"{what} is signed by key {short(signer) or '(none named)'}, not by {expected}",
            "a model signed by another key is refused: retrain or re-sign it with the trusted "
            f"key, or point {VERIFY_KEY_ENV} at the public key that signed it if you trust it",
        )
    try:
        signature = base64.b64decode(str(record.get("signature", "")), validate=True)
        public.verify(signature, data)
    except (InvalidSignature, ValueError):
        raise ModelError(
            f"{what} does not match its signature by key {short(signer)} ({key.source}): it "
            "was changed after it was signed",
            "the model was tampered with or corrupted; re-download it or retrain it",
        ) from None
    return key
