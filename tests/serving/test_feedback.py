"""Label feedback against real servers: two replicas of one model version and a second
revision, all logging to the real drift sidecar, which writes the prediction log to the store;
labels given to any replica for predictions made by another, after a restart, and in bulk from
the CLI; live accuracy per version from the store. Nothing is lost, nothing is silently
dropped: unknown ids, unknown labels and duplicates are 4xx naming the items."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest

from sentiops.config import model_uri
from sentiops.feedback.labels import read_labels
from sentiops.local.stack import Predictor
from tests.conftest import run_cli
from tests.drift.conftest import start_sidecar
from tests.helpers import metric_value, wait_until
from tests.serving.conftest import tfidf_dir

pytestmark = pytest.mark.integration
POS = "the service was great and wonderful"
NEG = "the coffee was awful and terrible"


def _predict(p: Predictor, texts: list[str], client_id: str = "") -> tuple[str, list[str]]:
    """(the prediction id the predictor issued, the labels); the client's own id, if sent,
    comes back only as its correlation id."""
    client_id = client_id or uuid.uuid4().hex
    r = httpx.post(
        f"{p.url}/v1/models/sentiment:predict",
        json={"instances": texts},
        headers={"x-request-id": client_id},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]
    assert rid != client_id and r.headers["x-client-request-id"] == client_id
    assert r.json()["id"] == rid and r.json()["client_request_id"] == client_id
    return rid, [x["label"] for x in r.json()["predictions"]]


def _feedback(p: Predictor, body: object) -> httpx.Response:
    return httpx.post(f"{p.url}/v1/models/sentiment:feedback", json=body, timeout=30)


def _until_stored(p: Predictor, body: object, timeout: float = 30) -> httpx.Response:
    """Labels for another replica's predictions are accepted once the sidecar has flushed."""

    def found() -> httpx.Response:
        r = _feedback(p, body)
        assert r.status_code != 404, r.text
        return r

    what = "the predictions found (the sidecar's flush)"
    return wait_until(found, timeout=timeout, interval=0.5, what=what, ignore=(AssertionError,))


def _prediction_log(store: Path) -> pd.DataFrame:
    parts = [pd.read_parquet(f) for f in sorted(store.glob("predictions/**/*.parquet"))]
    return pd.concat(parts) if parts else pd.DataFrame(columns=["id"])


def _logged(store: Path, rid: str, timeout: float = 30) -> pd.DataFrame:
    """The prediction log once it holds `rid` (the sidecar flushes every half second)."""
    what = f"{rid} in the prediction log"
    wait_until(lambda: rid in set(_prediction_log(store).id), timeout=timeout, what=what)
    return _prediction_log(store)


def _sample(p: Predictor, name: str, version: str) -> float:
    text = httpx.get(f"{p.url}/metrics").text
    return metric_value(text, name, float("nan"), model_version=version)


@pytest.fixture
def stack(model_dir: Path, tmp_path: Path):  # noqa: ANN201
    store = tmp_path / "store"
    other = tfidf_dir(tmp_path / "v2-model")
    # the pipeline pushed both versions (the sidecar takes events of pushed models only)
    for version, folder in (("1", model_dir), ("2", other)):
        shutil.copytree(folder, Path(model_uri(str(store), version)))
    sidecar = start_sidecar(
        tmp_path / "sidecar", None, store, "--flush-seconds", "0.5", "--model-name", "sentiment"
    )
    args = [f"--logger_url={sidecar.url}/", f"--feedback_store={store}"]
    replicas = {
        "a": Predictor(model_dir, "1", tmp_path / "a", extra_args=args),
        "b": Predictor(model_dir, "1", tmp_path / "b", extra_args=args),
        "v2": Predictor(other, "2", tmp_path / "v2", extra_args=args),
    }
    for p in replicas.values():
        p.start()
    yield replicas, store, tmp_path
    for p in replicas.values():
        p.stop()
    sidecar.process.stop()


def test_labels_join_across_replicas_revisions_and_restarts(stack) -> None:  # noqa: ANN001
    replicas, store, work = stack
    a, b, v2 = replicas["a"], replicas["b"], replicas["v2"]
    rid_pos, _ = _predict(a, [POS])  # replica a, version 1
    rid_batch, labels = _predict(a, [POS, NEG])  # a batch: ids <rid>:0 and <rid>:1
    assert labels == ["positive", "negative"]
    rid_v2, _ = _predict(v2, [NEG])  # the other revision

    # replica a knows its own prediction at once; the label is stored before the answer
    r = _feedback(a, {"id": rid_pos, "label": "positive"})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    # replica b finds a's batch and v2's prediction in the prediction log (the sidecar's)
    body = [
        {"id": f"{rid_batch}:0", "label": "positive"},
        {"id": f"{rid_batch}:1", "label": "positive"},
        {"id": rid_v2, "label": "negative"},
    ]
    r = _until_stored(b, body)
    assert r.status_code == 200, r.text
    assert r.json()["by_version"] == {
        "1": {"labels": 2, "correct": 1, "random": 2},
        "2": {"labels": 1, "correct": 1, "random": 1},
    }

    # refused requests name the items and store nothing
    stored = len(read_labels(str(store)))
    r = _feedback(b, [{"id": "no-such-prediction", "label": "positive"}])
    assert r.status_code == 404 and r.json()["problems"][0]["id"] == "no-such-prediction"
    r = _feedback(b, {"id": rid_pos, "label": "ecstatic"})
    assert r.status_code == 400 and "'ecstatic' is not one of" in r.json()["error"]
    r = _feedback(b, {"id": rid_pos, "label": "negative"})  # labelled on replica a already
    dup = [{"id": rid_pos, "error": "already labelled"}]
    assert r.status_code == 409 and r.json()["problems"] == dup
    r = httpx.post(f"{b.url}/v1/models/sentiment:feedback", content=b"{nope", timeout=10)
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    assert len(read_labels(str(store))) == stored == 4

    # a restart loses nothing: labels and duplicates are known from the store
    b.stop()
    b.start()
    assert _feedback(b, {"id": rid_v2, "label": "neutral"}).status_code == 409
    wait_until(  # live accuracy is exported from every stored label
        lambda: _sample(b, "sentiops_live_labels", "1") == 3,
        timeout=40,
        interval=1,
        what="3 live labels of version 1 exported",
    )
    assert _sample(b, "sentiops_live_accuracy", "1") == pytest.approx(2 / 3)
    assert _sample(b, "sentiops_live_accuracy", "2") == 1.0

    # late labels in bulk from a file, through the CLI
    rid_late, _ = _predict(v2, [POS])
    labels_csv = work / "labels.csv"
    pd.DataFrame({"id": [rid_late], "label": ["positive"]}).to_csv(labels_csv, index=False)

    def accepted() -> object:
        result = run_cli("feedback", "--file", labels_csv, "--url", a.url)
        assert result.returncode == 0, result.stderr
        return result

    wait_until(accepted, timeout=30, interval=0.5, what="the late labels", ignore=(AssertionError,))
    again = run_cli("feedback", "--file", labels_csv, "--url", a.url)
    assert again.returncode == 13 and "already have a label" in again.stderr
    df = read_labels(str(store))
    assert len(df) == 5 and set(df.model_version) == {"1", "2"}
    row = df.set_index("id").loc[rid_late]
    assert row.text == POS and row.predicted_label == "positive" and row.source == "api"


def test_a_client_id_reused_across_replicas_and_restarts_never_joins_a_label(stack) -> None:  # noqa: ANN001
    """The review's attack: the same client id sent to a second replica (one store) and to a
    replica after a restart was accepted, and a label for "order-42" joined the attacker's
    text. Now every prediction gets an id its predictor issues: the client's id is only
    echoed and stored as `client_id`, a label naming it matches nothing (404), and labels by
    the issued ids join exactly their own texts."""
    replicas, store, _ = stack
    a, b = replicas["a"], replicas["b"]
    honest, _ = _predict(a, [POS], client_id="order-42")
    attack_b, _ = _predict(b, ["terrible awful scam"], client_id="order-42")
    _logged(store, attack_b)  # in the prediction log before b goes down
    b.stop()
    b.start()
    attack_restart, _ = _predict(b, ["terrible awful scam"], client_id="order-42")
    assert len({honest, attack_b, attack_restart}) == 3
    r = _feedback(a, {"id": "order-42", "label": "positive"})
    assert r.status_code == 404 and r.json()["problems"][0]["id"] == "order-42"
    r = _until_stored(
        b, [{"id": honest, "label": "positive"}, {"id": attack_b, "label": "negative"}]
    )
    assert r.status_code == 200, r.text
    df = read_labels(str(store)).set_index("id")
    assert df.loc[honest].text == POS and df.loc[attack_b].text == "terrible awful scam"
    assert set(df.client_id) == {"order-42"}  # kept for correlation
    # the prediction log the sidecar writes carries the issued ids, the client's id, and the
    # sample decision made when the prediction was logged
    log = _logged(store, attack_restart)
    mine = log[log.client_id == "order-42"]
    assert set(mine.id) == {honest, attack_b, attack_restart}
    assert set(mine["sample"]) == {"random"}  # the suite's rate is 1


def test_requests_that_bring_their_own_event_id_are_refused(server: Predictor) -> None:
    """A `ce-id` names the inference log's event: KServe's agent pairs a request with its
    answer by it, so one chosen by a client could pair its text with another's answer."""
    r = httpx.post(
        f"{server.url}/v1/models/sentiment:predict",
        json={"instances": [POS]},
        headers={"ce-id": "order-42"},
        timeout=30,
    )
    assert r.status_code == 400 and "assigned by the server" in r.json()["error"]


def test_a_predictor_without_a_store_says_how_to_enable_feedback(server: Predictor) -> None:
    r = _feedback(server, {"id": "x", "label": "positive"})
    assert r.status_code == 404 and "--feedback_store" in r.json()["error"]


def test_writes_need_a_token_and_request_ids_cannot_be_hijacked(
    model_dir: Path, tmp_path: Path
) -> None:
    """A predictor with a token file (two annotator teams) and reads closed too: feedback
    without a token is 401, with a wrong one 403 — nothing stored, never a 5xx; a valid token
    stores the label with its team's name. Prediction ids are issued by the predictor, over
    REST v1 and v2 alike; a client's id (used twice here) never names a prediction."""
    from sentiops.security.auth import generate

    tokens = generate(tmp_path / "tokens", ("team-a", "team-b"))
    store = tmp_path / "store"
    p = Predictor(
        model_dir,
        "1",
        tmp_path / "p",
        extra_args=[
            f"--feedback_store={store}",
            f"--auth_token_file={tmp_path / 'tokens'}",
            "--auth_reads=true",
        ],
    )
    p.start()
    try:
        url = f"{p.url}/v1/models/sentiment"
        team_a = {"Authorization": f"Bearer {tokens['team-a']}"}

        def predict(text: str, rid: str, headers: dict | None = None) -> httpx.Response:
            return httpx.post(
                f"{url}:predict",
                json={"instances": [text]},
                timeout=30,
                headers={"x-request-id": rid, **(headers or {})},
            )

        assert predict(POS, "mine-1").status_code == 401  # reads closed: a token is needed
        assert httpx.get(f"{p.url}/metrics").status_code == 200  # Prometheus still scrapes
        assert httpx.get(f"{p.url}/v2/health/ready").status_code == 200
        first = predict(POS, "mine-1", team_a)
        assert first.status_code == 200 and first.headers["x-client-request-id"] == "mine-1"
        again = predict(NEG, "mine-1", team_a)  # the same client id for another text
        assert again.status_code == 200 and again.headers["x-client-request-id"] == "mine-1"
        assert first.headers["x-request-id"] != again.headers["x-request-id"] != "mine-1"
        bad = predict(NEG, "x" * 200, team_a)  # malformed: neither used nor kept
        assert bad.headers["x-request-id"] != "x" * 200
        assert "x-client-request-id" not in bad.headers
        text = {"name": "text", "datatype": "BYTES", "shape": [1], "data": [NEG]}
        v2 = httpx.post(
            f"{p.url}/v2/models/sentiment/infer",
            headers=team_a,
            timeout=30,
            json={"id": "mine-1", "inputs": [text]},
        )
        # the Open Inference Protocol echoes the client's id; the prediction's is a parameter
        assert v2.status_code == 200 and v2.json()["id"] == "mine-1"
        assert v2.json()["parameters"]["prediction_id"] == v2.headers["x-request-id"]
        assert v2.headers["x-request-id"] not in (first.headers["x-request-id"], "mine-1")
        assert (
            httpx.post(
                f"{url}:feedback",
                json={"id": "mine-1", "label": "positive"},
                headers=team_a,
                timeout=30,
            ).status_code
            == 404
        )

        body = {"id": first.headers["x-request-id"], "label": "positive"}
        none = httpx.post(f"{url}:feedback", json=body, timeout=30)
        assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in none.json()["error"]
        wrong = httpx.post(
            f"{url}:feedback",
            json=body,
            timeout=30,
            headers={"Authorization": "Bearer " + "z" * 32},
        )
        assert wrong.status_code == 403
        assert len(read_labels(str(store))) == 0  # nothing stored
        ok = httpx.post(f"{url}:feedback", json=body, headers=team_a, timeout=30)
        assert ok.status_code == 200, ok.text
        stored = read_labels(str(store))
        assert list(stored.text) == [POS]  # the first prediction's text, not the second's
        assert list(stored.labelled_by) == ["team-a"]
        # the CLI as an annotator team uses it: refused without the token, stored with it
        labels = tmp_path / "labels.csv"
        labels.write_text(f"id,label\n{again.headers['x-request-id']},negative\n")
        refused_cli = run_cli("feedback", "--file", labels, "--url", p.url)
        assert refused_cli.returncode == 13 and "needs a token" in refused_cli.stderr
        stored_cli = run_cli(
            "feedback", "--file", labels, "--url", p.url, "--token-file", tmp_path / "tokens"
        )
        assert stored_cli.returncode == 0, stored_cli.stderr
        assert len(read_labels(str(store))) == 2
        log = (tmp_path / "p").glob("*.log")
        assert not any(tokens["team-a"] in f.read_text() for f in log)  # never logged
    finally:
        p.stop()


def test_a_rotated_token_secret_is_taken_up_without_a_restart(
    model_dir: Path, tmp_path: Path
) -> None:
    """The token Secret mounted as the kubelet does (a directory behind `..data`): after it
    is updated — team-a's token rotated, team-b added — the old token is a 403 within
    seconds and the new ones store labels under their names, with no restart."""
    from tests.conftest import write_secret

    old, new, other = "o" * 32, "n" * 32, "t" * 32
    secret = write_secret(tmp_path / "tokens", {"team-a": old})
    store = tmp_path / "store"
    args = [f"--feedback_store={store}", f"--auth_token_file={secret}"]
    p = Predictor(model_dir, "1", tmp_path / "p", extra_args=args)
    p.start()
    try:
        (first, _), (second, _), (third, _) = (_predict(p, [t]) for t in (POS, NEG, POS))
        url = f"{p.url}/v1/models/sentiment:feedback"

        def label(rid: str, token: str) -> httpx.Response:
            return httpx.post(
                url,
                json={"id": rid, "label": "positive"},
                timeout=30,
                headers={"Authorization": f"Bearer {token}"},
            )

        assert label(first, old).status_code == 200
        write_secret(secret, {"team-a": new, "team-b": other})

        def old_token_refused() -> httpx.Response:
            r = label("no-such-id", old)  # the token is checked first: 404 while it is valid
            assert r.status_code != 404, r.text
            return r

        what = "the old token refused"
        r = wait_until(old_token_refused, timeout=15, what=what, ignore=(AssertionError,))
        assert r.status_code == 403, r.text
        assert label(second, new).status_code == 200
        assert label(third, other).status_code == 200
        stored = read_labels(str(store)).set_index("id").labelled_by
        assert stored[first] == stored[second] == "team-a" and stored[third] == "team-b"
    finally:
        p.stop()


def test_a_flood_from_one_client_gets_429s_while_another_is_served(
    model_dir: Path, tmp_path: Path
) -> None:
    """--rate_limit per client address: a client sending far over its rate gets 429 with
    Retry-After (never a 5xx) while a client from another address is still served; health and
    /metrics are never limited."""
    p = Predictor(model_dir, "1", tmp_path / "p", extra_args=["--rate_limit=1", "--rate_burst=3"])
    p.start()
    try:
        url = f"{p.url}/v1/models/sentiment:predict"
        started = time.monotonic()
        flood = [httpx.post(url, json={"instances": [POS]}, timeout=30) for _ in range(40)]
        elapsed = time.monotonic() - started
        codes = [r.status_code for r in flood]
        # the bucket lets through its burst plus 1/s of the flood's duration, however busy
        # the machine is (a slow machine stretches the flood and refills more), nothing else
        assert set(codes) <= {200, 429}, codes
        assert 3 <= codes.count(200) <= 3 + elapsed + 1, (codes, elapsed)
        limited = next(r for r in flood if r.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1
        assert "limit is 1/s" in limited.json()["error"]
        other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with other:
            served = [
                other.post(url, json={"instances": [NEG]}, timeout=30).status_code for _ in range(3)
            ]
        assert served == [200, 200, 200]
        assert httpx.get(f"{p.url}/v2/health/ready").status_code == 200
        assert httpx.get(f"{p.url}/metrics").status_code == 200
        assert 'reason="rate_limited"' in httpx.get(f"{p.url}/metrics").text
    finally:
        p.stop()


def test_ground_ids_land_in_the_sample_no_more_often_than_chance(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review ground 20 request ids whose hash fell in the (unkeyed) sample and got 20 of
    20 labelled requests into the "random" sample. Now membership is a keyed hash of the id
    the predictor issues: 200 ids ground the same way land in a 10 % sample as often as any
    others (a one-sided binomial test), and the labels say which sample they are in."""
    import hashlib

    from scipy.stats import binom

    monkeypatch.setenv("SENTIOPS_EVAL_SAMPLE_RATE", "0.1")

    def old_rule(rid: str) -> float:
        return int.from_bytes(hashlib.sha256(rid.encode()).digest()[:8], "big") / 2**64

    ground = [rid for rid in (f"grind-{n}" for n in range(4000)) if old_rule(rid) < 0.1][:200]
    assert len(ground) == 200
    store = tmp_path / "store"
    p = Predictor(model_dir, "1", tmp_path / "p", extra_args=[f"--feedback_store={store}"])
    p.start()
    try:
        issued = [_predict(p, [POS], client_id=rid)[0] for rid in ground]
        r = _feedback(p, [{"id": rid, "label": "positive"} for rid in issued])
        assert r.status_code == 200, r.text
        in_sample = r.json()["by_version"]["1"]["random"]
    finally:
        p.stop()
    # 20 expected; under the old rule all 200 would be; 1 in 10,000 chance of a false alarm
    assert in_sample <= binom.ppf(0.9999, 200, 0.1), in_sample
    stored = read_labels(str(store))
    assert (stored["sample"] == "random").sum() == in_sample
    assert set(stored.client_id) == set(ground)
