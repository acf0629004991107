"""KServe inference-log CloudEvents -> predictions.

The KServe agent's logger (and the predictor's own `--logger_url` logger) posts each request and
its response as two binary-mode CloudEvents with the same `ce-id`: `ce-type`
`org.kubeflow.serving.inference.request` / `.response`, the body the raw v1 or v2 JSON. This
module parses one event (`parse`, cheap: it runs on the request path and rejects bad events
with a reason) and joins requests with responses (`Joiner`, off the request path).

Protocols: v1 `{"instances": ["text" | {"text": "..."}]}` -> `{"id", "predictions": [{"label",
"score", "probabilities": {label: p}}]}`; v2 `{"inputs": [{"name": "text", "datatype": "BYTES",
"shape": [N], "data": [...]}]}` -> `{"id", "model_version", "parameters": {"prediction_id"},
"outputs": [{"name": "label"}, {"name": "probabilities", "shape": [N, C]}]}`.

Ids: requests and responses are paired by `ce-id` (KServe's agent makes one per request; our
predictor refuses requests that bring their own), and a prediction is logged under the
prediction id the predictor issued and wrote into its answer (v1 `id`, v2
`parameters.prediction_id`), which is what labels name; the answer's `client_request_id` (v1) /
`parameters.client_request_id` (v2) is kept as the client's id. An event id that is long or
holds control characters is refused, and two events of one kind pending under one `ce-id` are
both dropped (`duplicate_id`): a pair is never guessed.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import monotonic
from typing import Any

from sentiops.security.limits import MAX_DEPTH, json_depth

#: What an event id may be: printable, no white space, bounded.
EVENT_ID = re.compile(r"[\x21-\x7e]{1,200}")
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
TEXT_INPUT = "text"


class BadEvent(Exception):
    """An event the sidecar cannot use; `reason` is the metric label, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class InferenceEvent:
    kind: str  # "request" | "response"
    id: str
    time: datetime
    model_version: str | None
    inference_service: str | None
    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    probabilities: list[Any] = field(default_factory=list)  # per row: dict label->p or list
    received: float = field(default_factory=monotonic)
    prediction_id: str = ""  # the id the predictor issued (its answer's `id`)
    client_id: str = ""


@dataclass
class LoggedPrediction:
    id: str
    request_id: str
    index: int
    time: datetime
    model_version: str | None
    text: str
    label: str
    probabilities: Any  # dict label->p (v1) or list in the model's label order (v2)
    client_id: str = ""


def parse(headers: dict[str, str], body: bytes) -> InferenceEvent:
    """One binary (or structured) CloudEvent; raises BadEvent with a reason."""
    from cloudevents.http import from_http

    depth = json_depth(body)
    if depth > MAX_DEPTH:
        raise BadEvent(
            "too_deep", f"the event body nests {depth} levels deep; the limit is {MAX_DEPTH}"
        )
    try:
        ce = from_http(headers, body)
    except Exception as exc:  # noqa: BLE001 - any SDK error means "not a CloudEvent"
        raise BadEvent("not_cloudevent", f"not a CloudEvent: {type(exc).__name__}: {exc}") from None
    ce_type = ce["type"]
    if ce_type == REQUEST_TYPE:
        kind = "request"
    elif ce_type == RESPONSE_TYPE:
        kind = "response"
    else:
        raise BadEvent(
            "unknown_type",
            f"unknown ce-type {ce_type!r}; expected {REQUEST_TYPE} or {RESPONSE_TYPE}",
        )
    data = ce.data
    if isinstance(data, bytes | bytearray | str):
        try:
            data = json.loads(data)
        except ValueError:
            raise BadEvent("not_json", f"event {ce['id']}: the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadEvent("protocol", f"event {ce['id']}: the body is not a JSON object")
    if not EVENT_ID.fullmatch(str(ce["id"])):
        raise BadEvent(
            "bad_id",
            f"event id {str(ce['id'])[:40]!r}... is not 1-200 printable characters without spaces",
        )
    stamp = _time(ce.get("time"))
    version = ce.get("modelversion") or None
    event = InferenceEvent(kind, str(ce["id"]), stamp, version, ce.get("inferenceservicename"))
    if kind == "request":
        event.texts = request_texts(data, event.id)
    else:
        event.labels, event.probabilities, v2_version = response_predictions(data, event.id)
        event.model_version = event.model_version or v2_version
        event.prediction_id, event.client_id = response_ids(data, event.id)
    return event


def response_ids(body: dict[str, Any], event_id: str = "") -> tuple[str, str]:
    """(the prediction id the predictor issued, the client's own id) from an answer; ('', '')
    when the predictor wrote none (then the event id names the prediction)."""
    params = body.get("parameters")
    params = params if isinstance(params, dict) else {}
    if "outputs" in body:  # v2: `id` is the client's (echoed), the prediction's is a parameter
        ids = (params.get("prediction_id"), params.get("client_request_id"))
    else:
        ids = (body.get("id"), body.get("client_request_id"))
    found = []
    for value in ids:
        if value is None or value == "":
            found.append("")
        elif isinstance(value, str) and EVENT_ID.fullmatch(value) and ":" not in value:
            found.append(value)
        else:
            raise BadEvent(
                "bad_id",
                f"event {event_id}: the answer's ids are not 1-200 printable "
                "characters without spaces or ':'",
            )
    return found[0], found[1]


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    return [x for item in data for x in (item if isinstance(item, list) else [item])]


def request_texts(body: dict[str, Any], event_id: str = "") -> list[str]:
    if "instances" in body:
        items = body["instances"]
        if not isinstance(items, list):
            raise BadEvent("protocol", f"event {event_id}: v1 'instances' is not a list")
        texts = [i.get(TEXT_INPUT) if isinstance(i, dict) else i for i in items]
    elif "inputs" in body:
        inputs = body["inputs"]
        if not isinstance(inputs, list):
            raise BadEvent("protocol", f"event {event_id}: v2 'inputs' is not a list")
        named = [i for i in inputs if isinstance(i, dict) and i.get("name") == TEXT_INPUT]
        if not named:
            raise BadEvent("no_text", f"event {event_id}: no v2 input named {TEXT_INPUT!r}")
        if named[0].get("datatype") != "BYTES":
            raise BadEvent(
                "protocol", f"event {event_id}: input {TEXT_INPUT!r} is not BYTES (text)"
            )
        texts = _flat(named[0].get("data"))
    else:
        raise BadEvent(
            "protocol", f"event {event_id}: neither v1 'instances' nor v2 'inputs' in the body"
        )
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise BadEvent("no_text", f"event {event_id}: the request holds no (or empty) texts")
    return [str(t) for t in texts]


def response_predictions(
    body: dict[str, Any], event_id: str = ""
) -> tuple[list[str], list[Any], str | None]:
    """(labels, probabilities per row, model version if the body says it)."""
    if "predictions" in body:
        preds = body["predictions"]
        if not isinstance(preds, list) or not all(
            isinstance(p, dict) and "label" in p and isinstance(p.get("probabilities"), dict)
            for p in preds
        ):
            raise BadEvent(
                "protocol",
                f"event {event_id}: v1 predictions must be "
                '[{"label": ..., "probabilities": {label: p}}]',
            )
        return [str(p["label"]) for p in preds], [p["probabilities"] for p in preds], None
    if "outputs" in body:
        outs = {o.get("name"): o for o in body["outputs"] if isinstance(o, dict)}
        if "label" not in outs or "probabilities" not in outs:
            raise BadEvent(
                "protocol", f"event {event_id}: v2 outputs 'label' and 'probabilities' needed"
            )
        labels = [str(x) for x in _flat(outs["label"].get("data"))]
        flat = [float(x) for x in _flat(outs["probabilities"].get("data"))]
        shape = outs["probabilities"].get("shape") or [len(labels), 0]
        n_classes = int(shape[-1]) if len(shape) == 2 else 0
        if not labels or n_classes <= 0 or len(flat) != len(labels) * n_classes:
            raise BadEvent(
                "mismatch",
                f"event {event_id}: probabilities of shape {shape} do not match "
                f"{len(labels)} labels",
            )
        rows = [flat[i * n_classes : (i + 1) * n_classes] for i in range(len(labels))]
        version = body.get("model_version")
        return labels, rows, str(version) if version else None
    raise BadEvent(
        "protocol", f"event {event_id}: neither v1 'predictions' nor v2 'outputs' in the body"
    )


class Joiner:
    """Pairs requests and responses by id; partners that never come expire after `timeout`
    seconds (at most `capacity` pending, oldest evicted first)."""

    def __init__(self, timeout: float = 60.0, capacity: int = 20_000) -> None:
        self.timeout, self.capacity = timeout, capacity
        self.pending: OrderedDict[tuple[str, str], InferenceEvent] = OrderedDict()
        self.expired = 0

    def add(self, event: InferenceEvent) -> list[LoggedPrediction]:
        other = "response" if event.kind == "request" else "request"
        if (event.id, event.kind) in self.pending:  # two requests (or answers) under one id
            del self.pending[(event.id, event.kind)]
            self.pending.pop((event.id, other), None)
            raise BadEvent(
                "duplicate_id",
                f"event {event.id}: two {event.kind}s pending under "
                "one id; both dropped (a pair is never guessed)",
            )
        partner = self.pending.pop((event.id, other), None)
        if partner is None:
            self.pending[(event.id, event.kind)] = event
            while len(self.pending) > self.capacity:
                self.pending.popitem(last=False)
                self.expired += 1
            return []
        request, response = (event, partner) if event.kind == "request" else (partner, event)
        if len(request.texts) != len(response.labels):
            raise BadEvent(
                "mismatch",
                f"event {event.id}: {len(request.texts)} texts but {len(response.labels)} "
                "predictions",
            )
        version = response.model_version or request.model_version
        many = len(request.texts) > 1
        pid = response.prediction_id or event.id
        return [
            LoggedPrediction(
                f"{pid}:{i}" if many else pid,
                pid,
                i,
                request.time,
                version,
                text,
                label,
                proba,
                response.client_id,
            )
            for i, (text, label, proba) in enumerate(
                zip(request.texts, response.labels, response.probabilities, strict=True)
            )
        ]

    def expire(self, now: float | None = None) -> int:
        now = monotonic() if now is None else now
        n = 0
        while self.pending:
            key, oldest = next(iter(self.pending.items()))
            if now - oldest.received < self.timeout:
                break
            del self.pending[key]
            n += 1
        self.expired += n
        return n
