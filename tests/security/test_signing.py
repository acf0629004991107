"""Model directories are signed and never unpickled: real key files (OpenSSL's among them),
real model directories, no mocks (a pickle guard only proves that nothing unpickles).

The session signs with one key (`SENTIOPS_MODEL_SIGNING_KEY_FILE`, tests/conftest.py), so every
model a test writes is signed by it and verified with its public half; the tests of a machine's
own key pair unset it (`own_machine`)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sentiops.errors import ConfigError, DriftError, ModelError
from sentiops.models import load_model, modeldir
from sentiops.models.tfidf import ARRAYS, STRUCTURE, TfidfModel
from sentiops.security import signing
from sentiops.store.checksum import sha256_file
from tests.conftest import invoke, make_frame

TEXTS = [*make_frame(15, seed=7).text, "never seen words zzz", "LOVE it!!", "é ñ 漢字 🙂", "a"]


# ------------------------------------------------------------------------------ helpers
def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def openssl_pair(folder: Path, name: str = "k") -> tuple[Path, Path]:
    """An Ed25519 key pair made by OpenSSL: (private PKCS#8 PEM, public SPKI PEM)."""
    folder.mkdir(parents=True, exist_ok=True)
    key, pub = folder / f"{name}.key", folder / f"{name}.pub"
    _openssl("genpkey", "-algorithm", "ed25519", "-out", str(key))
    _openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))
    return key, pub


def openssl_key_id(pub: Path) -> str:
    """sha256 of the raw public key: the last 32 bytes of the DER SubjectPublicKeyInfo."""
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return hashlib.sha256(der[-32:]).hexdigest()


def trained(
    folder: Path, labels: tuple[str, ...] = ("negative", "neutral", "positive"), **params: object
) -> tuple[Path, TfidfModel]:
    df = make_frame(20)
    df = df[df.label.isin(labels)]
    model = TfidfModel.fit(df.text, df.label, **params)
    info = {"model_type": "tfidf-logreg", "labels": model.labels}
    return modeldir.write(folder, model.save, info), model


def forge(folder: Path) -> None:
    """What anyone with write access to the store can do without the key: new weights, and
    the manifest's checksum of them rewritten to match."""
    npz = folder / ARRAYS
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["coef"] = -arrays["coef"]  # every prediction flips
    np.savez(npz, **arrays)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["files"][ARRAYS] = sha256_file(npz)
    (folder / "model.json").write_text(json.dumps(manifest, indent=2))


@pytest.fixture
def own_machine(monkeypatch: pytest.MonkeyPatch, sentiops_home: Path) -> Path:
    """No key named by the environment: this machine's own key pair under SENTIOPS_HOME.
    (Set, then deleted: monkeypatch restores the variables whatever a test sets itself.)"""
    for var in (signing.SIGNING_KEY_ENV, signing.VERIFY_KEY_ENV):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    return sentiops_home / "secrets"


def _unpickled(*args: object, **kwargs: object) -> None:
    raise AssertionError("something unpickled")


def guard_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, anything that unpickles fails the test: pickle's functions, the Python
    unpickler joblib builds on, joblib's and torch's loaders."""
    import joblib
    import torch

    for owner, name in (
        (pickle, "load"),
        (pickle, "loads"),
        (pickle._Unpickler, "load"),
        (joblib, "load"),
        (torch, "load"),
    ):
        monkeypatch.setattr(owner, name, _unpickled)


@pytest.fixture
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    guard_pickle(monkeypatch)


# ------------------------------------------------------------------------------ signatures
def test_a_trained_model_is_signed_and_openssl_agrees(tmp_path: Path) -> None:
    folder, _ = trained(tmp_path / "m")
    record = json.loads((folder / "signature.json").read_text())
    key = signing.signing_key()
    pub = tmp_path / "session.pub"
    pub.write_bytes(signing.public_pem(key.public))
    assert record["algorithm"] == "ed25519" and record["signed"] == "model.json"
    assert record["key_id"] == key.key_id == openssl_key_id(pub)
    assert "signature.json" not in json.loads((folder / "model.json").read_text())["files"]
    sig = tmp_path / "sig.bin"
    sig.write_bytes(base64.b64decode(record["signature"]))
    out = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(pub),
            "-rawin",
            "-in",
            str(folder / "model.json"),
            "-sigfile",
            str(sig),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "Signature Verified Successfully" in out.stdout
    assert load_model(folder).predict_labels(["the app was love and great"]) == ["positive"]


def test_a_rewritten_manifest_is_refused_and_never_re_signed(tmp_path: Path) -> None:
    folder, _ = trained(tmp_path / "m")
    signature = (folder / "signature.json").read_text()
    forge(folder)
    modeldir.read_manifest(folder, verify=True, check_signature=False)  # checksums do match
    kid = signing.short(signing.signing_key().key_id)
    with pytest.raises(ModelError, match=f"does not match its signature by key {kid}") as exc:
        load_model(folder)
    assert "changed after it was signed" in exc.value.message and "retrain" in exc.value.hint
    with pytest.raises(ModelError, match="does not match its signature"):
        modeldir.extend(folder, lambda _: None, {"metrics": {}})  # no laundering by packaging
    assert (folder / "signature.json").read_text() == signature


def test_a_model_signed_by_another_key_is_refused(tmp_path: Path, runner, monkeypatch) -> None:
    folder, _ = trained(tmp_path / "m")
    forger_key, forger_pub = openssl_pair(tmp_path / "forger")
    forge(folder)
    modeldir.sign(folder, signing.load_signing_key(forger_key))
    forger, trusted = signing.short(openssl_key_id(forger_pub)), signing.verify_key()
    assert trusted is not None
    with pytest.raises(ModelError) as exc:
        load_model(folder)
    expected = signing.short(trusted.key_id)
    assert f"is signed by key {forger}, not by key {expected}" in exc.value.message
    assert signing.SIGNING_KEY_ENV in exc.value.message  # which key it expected, from where
    assert signing.VERIFY_KEY_ENV in exc.value.hint
    result = invoke(runner, "model", "verify", folder)
    assert result.exit_code == 4 and f"signed by key {forger}" in result.output
    # trust is the verifier's configuration: the forger's key, or both while keys rotate
    both = tmp_path / "trusted.pub"
    both.write_bytes(signing.public_pem(trusted.keys[trusted.key_id]) + forger_pub.read_bytes())
    for pub in (forger_pub, both):
        monkeypatch.setenv(signing.VERIFY_KEY_ENV, str(pub))
        assert load_model(folder).manifest["files"][ARRAYS] == sha256_file(folder / ARRAYS)
    monkeypatch.setenv(signing.VERIFY_KEY_ENV, str(both))
    assert len(signing.verify_key().keys) == 2  # type: ignore[union-attr]


def test_unsigned_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_machine: Path
) -> None:  # noqa: E501
    folder, _ = trained(tmp_path / "m")  # signed by this machine's own key, made now
    (folder / "signature.json").unlink()
    with pytest.raises(ModelError, match="is not signed, and only models signed by key") as exc:
        load_model(folder)  # the machine has a key: it verifies its own models
    assert "this machine's own key" in exc.value.message and "sentiops model sign" in exc.value.hint
    # a machine with no key at all: verification is off ...
    monkeypatch.setenv("SENTIOPS_HOME", str(tmp_path / "fresh"))
    assert signing.verify_key() is None
    assert load_model(folder).version
    assert not (tmp_path / "fresh" / "secrets").exists()  # loading makes no key
    # ... unless signed models are required
    monkeypatch.setenv(signing.REQUIRE_ENV, "true")
    with pytest.raises(ModelError, match="SENTIOPS_REQUIRE_SIGNED_MODELS=true but no key") as exc:
        load_model(folder)
    assert signing.VERIFY_KEY_ENV in exc.value.hint
    monkeypatch.setenv(signing.REQUIRE_ENV, "maybe")
    with pytest.raises(ConfigError, match="is not true or false"):
        load_model(folder)
    # or a verify key is configured
    monkeypatch.setenv(signing.REQUIRE_ENV, "false")
    key, pub = openssl_pair(tmp_path / "keys")
    monkeypatch.setenv(signing.VERIFY_KEY_ENV, str(pub))
    with pytest.raises(ModelError, match=f"is not signed.*{signing.VERIFY_KEY_ENV}={pub}"):
        load_model(folder)
    modeldir.sign(folder, signing.load_signing_key(key))  # the key holder vouches for it
    assert load_model(folder).version


def test_openssl_keys_sign_and_verify(tmp_path: Path, monkeypatch, own_machine: Path) -> None:
    key, pub = openssl_pair(tmp_path / "keys")
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(key))
    monkeypatch.setenv(signing.VERIFY_KEY_ENV, str(pub))
    folder, _ = trained(tmp_path / "m")
    assert json.loads((folder / "signature.json").read_text())["key_id"] == openssl_key_id(pub)
    assert load_model(folder).version
    assert not own_machine.exists()  # a named key: no key of the machine's own is made
    # with only the signing key named, its public half verifies (the pipeline's train step)
    monkeypatch.delenv(signing.VERIFY_KEY_ENV)
    verifier = signing.verify_key()
    assert verifier is not None and verifier.key_id == openssl_key_id(pub)
    assert "public half of SENTIOPS_MODEL_SIGNING_KEY_FILE" in verifier.source


def test_this_machines_own_key_pair(tmp_path: Path, own_machine: Path) -> None:
    folder, _ = trained(tmp_path / "m")
    key, pub = own_machine / signing.SIGNING_KEY_NAME, own_machine / signing.VERIFY_KEY_NAME
    assert key.stat().st_mode & 0o777 == 0o600 and own_machine.stat().st_mode & 0o777 == 0o700
    # OpenSSL reads our PEM and derives the same public key
    derived = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout"], check=True, capture_output=True
    ).stdout
    assert derived == pub.read_bytes()
    assert json.loads((folder / "signature.json").read_text())["key_id"] == openssl_key_id(pub)
    assert load_model(folder).version


def test_concurrent_processes_make_one_key_pair(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != signing.SIGNING_KEY_ENV}
    code = (
        "from pathlib import Path; from sentiops.security.signing import signing_key; "
        f"print(signing_key(Path({str(tmp_path / 'home')!r})).key_id)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    ids = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(ids) == 1 and len(next(iter(ids))) == 64
    secrets_dir = tmp_path / "home" / "secrets"
    assert sorted(p.name for p in secrets_dir.iterdir()) == [
        "model-signing.key",
        "model-signing.pub",
    ]


def test_keys_are_cached_per_path_and_mtime(tmp_path: Path) -> None:
    key, _ = openssl_pair(tmp_path / "a")
    other, _ = openssl_pair(tmp_path / "b")
    first = signing.load_signing_key(key)
    assert signing.load_signing_key(key) is first  # not read again
    shutil.copyfile(other, key)
    os.utime(key, ns=(key.stat().st_mtime_ns + 10**9,) * 2)
    second = signing.load_signing_key(key)
    assert second.key_id == signing.load_signing_key(other).key_id != first.key_id
    assert "PRIVATE" not in repr(second) and second.key_id[:16] in repr(second)


def test_wrong_key_files_say_how_to_fix_them(tmp_path: Path, monkeypatch) -> None:
    keys = tmp_path / "keys"
    key, pub = openssl_pair(keys)
    ec = keys / "ec.key"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(ec))
    locked = keys / "locked.key"
    _openssl("genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:x", "-out", str(locked))
    junk = keys / "junk.pem"
    junk.write_text("hello")
    cases = [
        (lambda: signing.load_signing_key(ec), "not an Ed25519 key", "genpkey -algorithm ed25519"),
        (lambda: signing.load_signing_key(locked), "is encrypted", "unencrypted"),
        (lambda: signing.load_signing_key(junk), "not a PEM private key", "genpkey"),
        (lambda: signing.load_signing_key(pub), "not a PEM private key", "genpkey"),
        (lambda: signing.load_verify_key(key), "holds a private key", "-pubout"),
        (lambda: signing.load_verify_key(junk), "not a PEM public key", "-pubout"),
    ]
    for load, message, hint in cases:
        with pytest.raises(ConfigError) as exc:
            load()
        assert message in exc.value.message and hint in exc.value.hint
        assert "BEGIN" not in str(exc.value)  # never any key material
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match=f"{signing.SIGNING_KEY_ENV}=.* does not name a readable"):
        trained(tmp_path / "m")  # before anything is written
    assert not (tmp_path / "m").exists()
    monkeypatch.setenv(signing.VERIFY_KEY_ENV, str(tmp_path / "missing.pub"))
    with pytest.raises(ConfigError, match=f"{signing.VERIFY_KEY_ENV}=.* does not name a readable"):
        signing.verify_key()


def test_sign_verify_and_key_commands(tmp_path: Path, runner, monkeypatch, own_machine) -> None:
    folder, _ = trained(tmp_path / "m")
    result = invoke(runner, "model", "verify", folder)
    assert result.exit_code == 0 and "verified" in result.output, result.output
    forge(folder)
    result = invoke(runner, "model", "verify", folder)
    assert result.exit_code == 4 and "does not match its signature" in result.output
    key, pub = openssl_pair(tmp_path / "keys")
    result = invoke(runner, "model", "sign", folder, "--key", key)
    assert result.exit_code == 0, result.output
    assert f"by key {openssl_key_id(pub)[:16]}" in result.output
    assert "it was signed by" in result.output
    assert invoke(runner, "model", "verify", folder, "--key", pub).exit_code == 0
    assert invoke(runner, "model", "verify", folder).exit_code == 4  # not this machine's key
    result = invoke(runner, "model", "key")
    assert result.exit_code == 0 and signing.signing_key().key_id[:16] in result.output
    assert "PRIVATE" not in result.output and "sentiops-model-signing" in result.output
    result = invoke(runner, "model", "key", "--public")
    assert result.output.startswith("-----BEGIN PUBLIC KEY-----")
    monkeypatch.setenv("SENTIOPS_HOME", str(tmp_path / "fresh"))
    result = invoke(runner, "model", "verify", folder)
    assert result.exit_code == 2 and "no key to verify with" in result.output


def test_the_train_step_signs_with_the_mounted_secret(tmp_path, own_machine, monkeypatch) -> None:
    """The Secret sentiops-model-signing as the pipeline mounts it: signing.key + verify.pub."""
    from sentiops.pipeline import stages

    assert stages.use_mounted_signing_key(tmp_path / "nothing-mounted") is None
    mount = tmp_path / "mount"
    key, _ = openssl_pair(mount, "signing")
    pub = mount / "verify.pub"
    (mount / "signing.pub").rename(pub)
    assert stages.use_mounted_signing_key(mount) == key
    assert os.environ[signing.SIGNING_KEY_ENV] == str(key)
    assert os.environ[signing.VERIFY_KEY_ENV] == str(pub)
    folder, _ = trained(tmp_path / "m")
    assert json.loads((folder / "signature.json").read_text())["key_id"] == openssl_key_id(pub)
    assert stages.use_mounted_signing_key(mount) is None  # the environment's key stays
    # a Secret whose halves do not match fails the train step, not the predictor
    _, other = openssl_pair(tmp_path / "other")
    monkeypatch.setenv(signing.VERIFY_KEY_ENV, str(other))
    with pytest.raises(ModelError, match="not by key"):
        modeldir.extend(folder, lambda _: None, {"metrics": {}})


# ------------------------------------------------------------------------------ no pickle
@pytest.mark.parametrize(
    ("labels", "params"),
    [
        (("negative", "neutral", "positive"), {}),
        (("negative", "positive"), {}),
        (("negative", "neutral", "positive"), {"char_ngrams": False, "ngram_max": 3}),
    ],
)
def test_tfidf_loads_without_pickle_and_predicts_as_before(
    tmp_path, labels, params, monkeypatch
) -> None:  # noqa: E501
    import joblib

    folder, model = trained(tmp_path / "m", labels, **params)
    joblib.dump(model.pipeline, tmp_path / "pipeline.joblib")  # the format it replaces
    before = joblib.load(tmp_path / "pipeline.joblib").predict_proba(TEXTS)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["model.json", "signature.json", "label_map.json", "metrics.json", STRUCTURE, ARRAYS]
    )
    guard_pickle(monkeypatch)
    loaded = load_model(folder)
    after = loaded.predict_proba(TEXTS)
    np.testing.assert_array_equal(after, before)  # the very same floats
    assert loaded.labels == list(labels)
    with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
        assert all(arrays[k].dtype != object for k in arrays.files)


def test_a_pickled_tfidf_model_is_refused_unopened(tmp_path: Path, no_pickle) -> None:
    import joblib

    model = TfidfModel.fit(make_frame(20).text, make_frame(20).label)
    old = modeldir.write(
        tmp_path / "old",
        lambda d: joblib.dump(model.pipeline, d / "pipeline.joblib"),
        {"model_type": "tfidf-logreg", "labels": model.labels},
    )
    with pytest.raises(ModelError, match=r"as a pickle \(pipeline.joblib\)") as exc:
        load_model(old)
    assert "retrain" in exc.value.hint


def test_files_the_manifest_does_not_list_are_refused(tmp_path: Path) -> None:
    from sentiops.store import storage

    folder, _ = trained(tmp_path / "m")
    (folder / storage.DOWNLOAD_RECORD).write_text("{}")  # what a download leaves: allowed
    assert modeldir.DOWNLOAD_RECORD == storage.DOWNLOAD_RECORD
    assert load_model(folder).version
    (folder / "pytorch_model.bin").write_bytes(b"slipped in beside the signed files")
    with pytest.raises(ModelError, match=r"pytorch_model.bin \(not in model.json\)"):
        load_model(folder)


def test_tfidf_settings_that_reach_outside_the_text_are_refused(tmp_path: Path) -> None:
    """The loader's own allow-list, for when no verify key is configured."""
    folder, _ = trained(tmp_path / "m")
    manifest = modeldir.read_manifest(folder)
    for change, needle in (
        (lambda s: s["features"][0]["params"].update(input="filename"), "input='filename'"),
        (lambda s: s["features"][0]["params"].update(tokenizer="os.system"), "unknown vectorizer"),
        (lambda s: s["features"][0]["vocabulary"].pop(), "idf of shape"),
        (lambda s: s["classifier"]["classes"].append("joy"), "coef of shape"),
    ):
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(folder, copy)
        structure = json.loads((copy / STRUCTURE).read_text())
        change(structure)
        (copy / STRUCTURE).write_text(json.dumps(structure))
        with pytest.raises(ModelError, match="inconsistent") as exc:
            TfidfModel.load(copy, manifest)
        assert needle in exc.value.message


def test_a_pickled_drift_reference_is_never_unpickled(tmp_path: Path, no_pickle) -> None:
    from sentiops.detection import detector

    folder, _ = trained(tmp_path / "m")
    config = {
        "format_version": detector.FORMAT_VERSION,
        "labels": ["negative", "positive"],
        "alpha": 0.05,
    }

    def add(tmp: Path) -> None:
        (tmp / "drift").mkdir()
        (tmp / "drift" / "detector.json").write_text(json.dumps(config))
        np.save(tmp / "drift" / "reference.npy", np.array([{"a": 1}], dtype=object))  # a pickle
        np.save(tmp / "drift" / "predictions.npy", np.zeros((3, 2), dtype=np.float32))

    modeldir.extend(folder, add)
    with pytest.raises(DriftError, match="cannot read the drift detector"):
        detector.load(folder)


def test_a_transformer_loads_safetensors_only(tmp_path: Path, monkeypatch) -> None:
    import torch

    from sentiops.models.transformer import TINY, TransformerModel

    df = make_frame(8)
    model = TransformerModel.fit(
        df.text, df.label, base_model=TINY, epochs=1, batch_size=8, max_length=16, progress=False
    )
    folder = modeldir.write(
        tmp_path / "t",
        model.save,
        {"model_type": "transformer", "labels": model.labels, "params": {"max_length": 16}},
    )
    assert not [p for p in folder.rglob("*") if p.suffix in (".bin", ".pt", ".pkl", ".joblib")]
    with monkeypatch.context() as guarded:
        guard_pickle(guarded)
        assert load_model(folder).predict_proba(["great"]).shape == (1, 3)
    # the same weights as a pickle (pytorch_model.bin), listed and signed: still never read
    state = model.model.state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    manifest = json.loads((folder / "model.json").read_text())
    del manifest["files"]["model.safetensors"]
    manifest["files"]["pytorch_model.bin"] = sha256_file(folder / "pytorch_model.bin")
    (folder / "model.json").write_text(json.dumps(manifest, indent=2))
    modeldir.sign(folder)
    guard_pickle(monkeypatch)
    with pytest.raises(ModelError, match="cannot load transformer model"):
        load_model(folder)
