"""The console's routers in process (no servers): `create_app` over a stand-in predictor (an
httpx mock transport in place of the app's client, `sentiops.console.deps.Console`), each
resource's answers and errors, and the dependencies a route takes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from sentiops.console.app import ConsoleConfig, create_app
from sentiops.console.deps import Console
from sentiops.console.routes import ROUTERS

Handler = Callable[[httpx.Request], httpx.Response]
PREDICTOR = "http://predictor.test"


def predictor(seen: list[httpx.Request], explain_status: int = 200) -> Handler:
    """A predictor answering :predict, :explain, v2 metadata and :feedback."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path.endswith(":predict"):
            prediction = {"label": "positive", "score": 0.9}
            prediction["probabilities"] = {"negative": 0.1, "positive": 0.9}
            return httpx.Response(
                200, json={"predictions": [prediction]}, headers={"x-request-id": "from-it"}
            )
        if path.endswith(":explain"):
            attributions = [
                {"token": "good", "attribution": 0.5},
                {"token": "nan", "attribution": "nan"},
            ]
            body = {"explanations": [{"method": "ablation", "attributions": attributions}]}
            return httpx.Response(explain_status, json=body if explain_status == 200 else {})
        if path.endswith(":feedback"):
            label = json.loads(request.content)["label"]
            if label == "unknown":
                return httpx.Response(409, json={"error": "labelled already"})
            return httpx.Response(200, json={"accepted": True, "by_version": {"3": 1}})
        if path == "/v2/models/sentiment":
            return httpx.Response(200, json={"parameters": {"model_version": "3"}})
        return httpx.Response(404, json={"error": "no such route"})

    return handle


@pytest.fixture
def seen() -> list[httpx.Request]:
    return []


def client_for(cfg: ConsoleConfig, handler: Handler) -> TestClient:
    app = create_app(cfg)
    console: Console = app.state.console
    console.client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return TestClient(app, base_url="http://localhost")


@pytest.fixture
def client(seen: list[httpx.Request]) -> Iterator[TestClient]:
    cfg = ConsoleConfig(predictor_url=PREDICTOR + "/", mlflow_url=None)
    with client_for(cfg, predictor(seen)) as c:
        yield c


def test_every_resource_has_its_router() -> None:
    paths = {route.path for router in ROUTERS for route in router.routes}  # type: ignore[attr-defined]
    assert paths == {
        "/",
        "/healthz",
        "/api/config",
        "/api/predict",
        "/api/feedback",
        "/api/status",
        "/api/labelling",
        "/api/series",
    }


def test_predict_joins_the_three_predictor_calls(
    client: TestClient, seen: list[httpx.Request]
) -> None:
    r = client.post("/api/predict", json={"text": "good"}, headers={"Authorization": "Bearer t0k"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == "positive" and body["probabilities"]["positive"] == 0.9
    assert body["request_id"] == "from-it"  # the id the predictor answered
    assert body["model_version"] == "3"
    assert body["attributions"] == [{"token": "good", "attribution": 0.5}]  # finite only
    assert body["method"] == "ablation" and body["explain_error"] is None
    assert {req.url.path for req in seen} == {
        "/v1/models/sentiment:predict",
        "/v1/models/sentiment:explain",
        "/v2/models/sentiment",
    }
    assert all(req.headers["authorization"] == "Bearer t0k" for req in seen)


def test_a_failed_explanation_leaves_the_prediction(seen: list[httpx.Request]) -> None:
    cfg = ConsoleConfig(predictor_url=PREDICTOR)
    with client_for(cfg, predictor(seen, explain_status=503)) as c:
        body = c.post("/api/predict", json={"text": "good"}).json()
    assert body["label"] == "positive" and body["attributions"] is None
    assert "not ready" in body["explain_error"]


@pytest.mark.parametrize(
    ("payload", "status", "says"),
    [
        ({}, 400, 'no "text"'),
        ({"text": 3}, 400, "must be a string"),
        ({"text": "  "}, 400, "empty"),
        ({"text": "x" * 5001}, 413, "at most 5000"),
    ],
)
def test_predict_refuses_a_bad_text(
    client: TestClient, payload: dict, status: int, says: str
) -> None:
    r = client.post("/api/predict", json=payload)
    assert r.status_code == status and says in r.json()["error"]


def test_feedback_passes_the_label_and_the_predictors_refusal(
    client: TestClient, seen: list[httpx.Request]
) -> None:
    r = client.post("/api/feedback", json={"id": " abc ", "label": "positive"})
    assert r.json() == {"id": "abc", "label": "positive", "accepted": True, "by_version": {"3": 1}}
    assert json.loads(seen[-1].content) == {"id": "abc", "label": "positive"}
    refused = client.post("/api/feedback", json={"id": "abc", "label": "unknown"})
    assert refused.status_code == 409 and "labelled already" in refused.json()["error"]
    assert client.post("/api/feedback", json={"label": "positive"}).status_code == 400


def test_without_sources_the_routes_say_how_to_give_them(seen: list[httpx.Request]) -> None:
    with client_for(ConsoleConfig(), predictor(seen)) as c:
        r = c.post("/api/predict", json={"text": "good"})
        assert r.status_code == 503 and "--predictor-url" in r.json()["hint"]
        r = c.get("/api/series", params={"kind": "drift"})
        assert r.status_code == 503 and "--prometheus-url" in r.json()["hint"]
        assert c.get("/api/series", params={"kind": "nope"}).status_code == 400
        assert c.get("/api/series", params={"kind": "drift", "minutes": "0"}).status_code == 400
    assert not seen


def test_page_health_and_config(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-cache"
    assert client.get("/static/index.html").status_code == 200
    assert client.get("/healthz").json()["ok"] is True
    config = client.get("/api/config").json()
    assert config["predictor_url"] == PREDICTOR  # the trailing slash gone
    assert set(config["series"]) >= {"drift", "accuracy", "traffic"}


def test_errors_are_json(client: TestClient) -> None:
    assert client.get("/nope").json() == {"error": "no such page or endpoint: /nope"}
    r = client.get("/api/predict")
    assert r.status_code == 405 and r.json()["error"] == "GET is not allowed on /api/predict"
    r = client.post("/api/predict", content=b"[1]", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "the body must be a JSON object"
