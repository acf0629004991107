"""The predictor's gRPC port under the rules of its REST port (serving.grpc_guard), against
real predictors on loopback and a real gRPC client (grpcio with KServe's v2 stubs, in this
process: Triton's stubs, which clash with them, are only loaded in clients' own processes):
the repository API is closed, reads need a token when closed, request ids follow REST's
rules across both protocols, a flood gets RESOURCE_EXHAUSTED while other clients are served."""

from __future__ import annotations

import concurrent.futures
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from sentiops.feedback.labels import read_labels
from sentiops.local.stack import Predictor

pytestmark = pytest.mark.integration
POS = "the service was great and wonderful"
NEG = "the coffee was awful and terrible"


def _pb() -> Any:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    return pb


def _stub(port: int, host: str = "127.0.0.1") -> tuple[grpc.Channel, Any]:
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    channel = grpc.insecure_channel(f"{host}:{port}")
    return channel, GRPCInferenceServiceStub(channel)


@pytest.fixture
def stub(server: Predictor) -> Iterator[Any]:
    channel, s = _stub(server.grpc_port)
    with channel:
        yield s


def _infer_request(texts: list[str], rid: str = "") -> Any:
    pb = _pb()
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[len(texts)],
        contents=pb.InferTensorContents(bytes_contents=[t.encode() for t in texts]),
    )
    return pb.ModelInferRequest(model_name="sentiment", id=rid, inputs=[tensor])


def _labels(response: Any) -> list[str]:
    """The `label` output's texts (raw BYTES: 4-byte little-endian length, then the bytes)."""
    names = [o.name for o in response.outputs]
    raw = response.raw_output_contents[names.index("label")]
    out, at = [], 0
    while at < len(raw):
        (n,) = struct.unpack_from("<I", raw, at)
        out.append(raw[at + 4 : at + 4 + n].decode())
        at += 4 + n
    return out


def _infer(stub: Any, text: str, rid: str = "", metadata: tuple = ()) -> tuple:
    """(response, the prediction id the predictor issued, the client id it kept or None)."""
    response, call = stub.ModelInfer.with_call(
        _infer_request([text], rid), metadata=metadata, timeout=30
    )
    sent = dict(call.initial_metadata())
    issued = sent["x-request-id"]
    assert response.parameters["prediction_id"].string_param == issued
    client = sent.get("x-client-request-id")
    assert response.id == (client or issued)  # the protocol echoes the client's id
    return response, issued, client


def _refusal(call: Any, *args: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call(*args, timeout=30, **kwargs)
    return refused.value


def test_the_model_repository_api_is_closed_over_grpc(server: Predictor, stub: Any) -> None:
    """Unauthenticated RepositoryModelUnload used to unload the model: now PERMISSION_DENIED
    with the reason, and the model still serves."""
    pb = _pb()
    for method, request in (
        (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="sentiment")),
        (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="sentiment")),
    ):
        err = _refusal(method, request)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
        assert "repository API (load/unload) is disabled" in err.details()
    ready = stub.ModelReady(pb.ModelReadyRequest(name="sentiment"), timeout=30)
    assert ready.ready
    response, _, _ = _infer(stub, POS)
    assert _labels(response) == ["positive"]
    assert httpx.get(f"{server.url}/v2/models/sentiment/ready").status_code == 200


def test_grpc_reads_need_a_token_and_ids_cannot_join_another_protocols_text(
    model_dir: Path, tmp_path: Path
) -> None:
    """--auth_reads closes ModelInfer/ModelMetadata (UNAUTHENTICATED without a token,
    PERMISSION_DENIED with a wrong one; the probes stay open). Prediction ids are issued by
    the predictor over both protocols: a client's id (metadata or the request's) is only
    echoed, concurrent requests under one client id get distinct ids, and a label given for
    an issued id joins the text sent under it, whichever protocol sent it."""
    from sentiops.security.auth import generate

    tokens = generate(tmp_path / "tokens", ("team-a",))
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
    channel, stub = _stub(p.grpc_port)
    try:
        pb = _pb()
        token = (("authorization", f"Bearer {tokens['team-a']}"),)
        bearer = {"Authorization": f"Bearer {tokens['team-a']}"}

        err = _refusal(stub.ModelInfer, _infer_request([POS], "no-token"))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: Bearer" in err.details()
        err = _refusal(
            stub.ModelInfer,
            _infer_request([POS], "wrong"),
            metadata=(("authorization", "Bearer " + "z" * 32),),
        )
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "not valid" in err.details()
        err = _refusal(stub.ModelMetadata, pb.ModelMetadataRequest(name="sentiment"))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
        assert stub.ModelReady(pb.ModelReadyRequest(name="sentiment"), timeout=30).ready
        meta = stub.ModelMetadata(
            pb.ModelMetadataRequest(name="sentiment"), metadata=token, timeout=30
        )
        assert meta.name == "sentiment"

        # the client's id is echoed and kept, never the prediction's id, on either protocol
        response, grpc_1, client = _infer(stub, POS, "grpc-1", token)
        assert grpc_1 != "grpc-1" and client == "grpc-1" and _labels(response) == ["positive"]
        url = f"{p.url}/v1/models/sentiment"
        rest = httpx.post(
            f"{url}:predict",
            json={"instances": [NEG]},
            timeout=30,
            headers={"x-request-id": "grpc-1", **bearer},
        )
        assert rest.status_code == 200 and rest.headers["x-request-id"] not in ("grpc-1", grpc_1)
        rest = httpx.post(
            f"{url}:predict",
            json={"instances": [POS]},
            timeout=30,
            headers={"x-request-id": "rest-1", **bearer},
        )
        rest_1 = rest.headers["x-request-id"]
        _, again, _ = _infer(stub, NEG, "rest-1", token)
        assert again not in ("rest-1", rest_1)
        # metadata x-request-id wins over the request's id as the client's id
        _, meta_1, client = _infer(stub, NEG, "body-id", (*token, ("x-request-id", "meta-1")))
        assert client == "meta-1" and meta_1 != "meta-1"
        _, _, client = _infer(stub, NEG, "has spaces; and: colons", token)
        assert client is None  # malformed: not kept
        _, issued, client = _infer(stub, NEG, "", token)  # no id: a new one
        assert len(issued) == 32 and client is None

        # concurrent requests under one client id: distinct prediction ids
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: _infer(stub, NEG, "race-1", token)[1], range(8)))
        assert len(set(ids)) == 8 and "race-1" not in ids, ids

        # labels join the text sent under the issued id, whichever protocol sent it; a
        # client's id names nothing
        for rid, label in ((grpc_1, "positive"), (rest_1, "positive"), (meta_1, "negative")):
            ok = httpx.post(
                f"{url}:feedback", json={"id": rid, "label": label}, headers=bearer, timeout=30
            )
            assert ok.status_code == 200, ok.text
        assert (
            httpx.post(
                f"{url}:feedback",
                json={"id": "grpc-1", "label": "positive"},
                headers=bearer,
                timeout=30,
            ).status_code
            == 404
        )
        stored = read_labels(str(store)).set_index("id")
        assert stored.loc[grpc_1, "text"] == POS and stored.loc[grpc_1, "client_id"] == "grpc-1"
        assert stored.loc[rest_1, "text"] == POS
        assert stored.loc[meta_1, "text"] == NEG
        assert set(stored.labelled_by) == {"team-a"}
    finally:
        channel.close()
        p.stop()
    log = p.process.log.read_text() if p.process else ""
    assert tokens["team-a"] not in log and "Traceback" not in log


def test_a_grpc_flood_gets_resource_exhausted_while_other_clients_are_served(
    model_dir: Path, tmp_path: Path
) -> None:
    """REST's per-client token bucket applies to gRPC too (one budget per address over both
    protocols): a flood over gRPC gets RESOURCE_EXHAUSTED with a retry-after trailer, never
    an INTERNAL/UNKNOWN; clients from other addresses — over gRPC (IPv6 loopback) and REST —
    are still served; the probes are never limited."""
    # the image's default address (REST on 0.0.0.0, gRPC on [::]): the other client comes
    # from IPv6's loopback, [::1]
    p = Predictor(
        model_dir,
        "1",
        tmp_path / "p",
        extra_args=["--rate_limit=1", "--rate_burst=5", "--host=0.0.0.0"],
    )
    p.start()
    channel, stub = _stub(p.grpc_port)
    other_channel, other = _stub(p.grpc_port, "[::1]")
    try:
        pb = _pb()
        codes, limited = [], None
        for i in range(30):
            try:
                stub.ModelInfer(_infer_request([POS], f"flood-{i}"), timeout=30)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                codes.append(err.code())
                limited = err
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 15, codes
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert limited is not None and "the limit is 1/s (bursts of 5)" in limited.details()
        assert int(dict(limited.trailing_metadata())["retry-after"]) >= 1
        # the same address over REST shares the budget
        rest = httpx.post(f"{p.url}/v1/models/sentiment:predict", json={"instances": [POS]})
        assert rest.status_code == 429
        # other clients are served: IPv6 loopback over gRPC, 127.0.0.2 over REST
        served = [_labels(other.ModelInfer(_infer_request([NEG]), timeout=30)) for _ in range(3)]
        assert served == [["negative"]] * 3
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as c:
            r = c.post(f"{p.url}/v1/models/sentiment:predict", json={"instances": [NEG]})
        assert r.status_code == 200
        for _ in range(10):  # probes are never limited
            assert stub.ModelReady(pb.ModelReadyRequest(name="sentiment"), timeout=30).ready
            assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
        assert 'reason="rate_limited"' in httpx.get(f"{p.url}/metrics").text
    finally:
        channel.close()
        other_channel.close()
        p.stop()


def test_a_grpc_message_is_bounded_like_a_rest_body(stub: Any) -> None:
    """Over the REST body limit (2 MB) a gRPC message is refused by gRPC itself
    (RESOURCE_EXHAUSTED), never read; the next call is served."""
    err = _refusal(stub.ModelInfer, _infer_request(["x" * 3_000_000]))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    assert "larger than max" in err.details()
    response, _, _ = _infer(stub, NEG)
    assert _labels(response) == ["negative"]
