"""Inference log: every request and its response posted as CloudEvents in the shape of
KServe's agent logger (binary mode; ce-type org.kubeflow.serving.inference.request /
.response; one ce-id for both; extensions inferenceservicename, namespace, component,
endpoint; a response is logged only when it was a 200).

On a cluster KServe's agent does this; locally the predictor does it itself, so the drift
detector receives exactly the same events. Only answered requests are logged (a 200: a refused
request is neither a prediction nor worth the memory). Events go through a queue bounded in
events and in bytes to a background sender: a slow or absent receiver never slows or fails a
prediction, nor grows the predictor's memory past `max_bytes` (what does not fit is dropped
and counted)."""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from typing import Any

from sentiops.metrics import INFERENCE_LOG_EVENTS as LOGGED

logger = logging.getLogger("sentiops.serving.logger")
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


#: Most bytes of event bodies waiting to be sent (with the default 2 MB request limit, at
#: least 16 of the largest requests and their answers).
MAX_QUEUED_BYTES = 64 * 1024 * 1024


class Sender(threading.Thread):
    def __init__(
        self,
        url: str,
        maxsize: int = 10_000,
        timeout: float = 5.0,
        token: str = "",
        max_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        super().__init__(daemon=True, name="sentiops-inference-log")
        self.url, self.timeout, self.max_bytes = url, timeout, max_bytes
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.queue: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue(maxsize)
        self.queued_bytes = 0
        self.lock = threading.Lock()

    def offer(self, headers: dict[str, str], body: bytes) -> bool:
        """Queue one event unless that would pass `maxsize` events or `max_bytes`."""
        with self.lock:
            if self.queued_bytes + len(body) > self.max_bytes:
                LOGGED.labels("dropped").inc()
                return False
            try:
                self.queue.put_nowait((headers, body))
            except queue.Full:
                LOGGED.labels("dropped").inc()
                return False
            self.queued_bytes += len(body)
        return True

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout) as client:
            while True:
                headers, body = self.queue.get()
                with self.lock:
                    self.queued_bytes -= len(body)
                try:
                    resp = client.post(self.url, headers={**headers, **self.auth}, content=body)
                    LOGGED.labels("sent" if resp.status_code < 300 else "failed").inc()
                    if resp.status_code >= 300:
                        logger.warning("inference log: %s answered %s", self.url, resp.status_code)
                except Exception as exc:  # noqa: BLE001 - logging never breaks serving
                    LOGGED.labels("failed").inc()
                    logger.warning("inference log: %s unreachable: %s", self.url, exc)


def event(kind: str, event_id: str, body: bytes, model: Any, endpoint: str) -> tuple[dict, bytes]:
    """Binary-mode CloudEvent headers + body (the cloudevents library builds them)."""
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    attrs = {
        "type": kind,
        "source": f"http://localhost/{model.name}",
        "id": event_id,
        "datacontenttype": "application/json",
        "inferenceservicename": model.name,
        "namespace": os.environ.get("POD_NAMESPACE", "default"),
        "component": "predictor",
        "endpoint": endpoint,
        "modelversion": model.version,
    }
    headers, data = to_binary(CloudEvent(attrs, body))
    return dict(headers), data if isinstance(data, bytes) else bytes(data or b"")


class LoggerMiddleware:
    """ASGI middleware: copies predict/infer request and response bodies into the sender."""

    PATHS = (":predict", "/infer")

    def __init__(self, app: Any, model: Any, sender: Sender, mode: str, endpoint: str) -> None:
        self.app, self.model, self.sender = app, model, sender
        self.mode, self.endpoint = mode, endpoint

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").endswith(self.PATHS):
            await self.app(scope, receive, send)
            return
        event_id = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode() or str(
            uuid.uuid4()
        )
        request_body, response_body = bytearray(), bytearray()
        status = 0

        async def tap_receive() -> dict:
            message = await receive()
            request_body.extend(message.get("body", b""))
            return dict(message)

        async def tap_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                response_body.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, tap_receive, tap_send)
        if status != 200:  # refused or failed: nothing was predicted
            return
        if self.mode in ("all", "request"):
            self.sender.offer(
                *event(REQUEST_TYPE, event_id, bytes(request_body), self.model, self.endpoint)
            )
        if self.mode in ("all", "response"):
            self.sender.offer(
                *event(RESPONSE_TYPE, event_id, bytes(response_body), self.model, self.endpoint)
            )


def install(
    app: Any, model: Any, url: str, mode: str = "all", endpoint: str = "", token: str = ""
) -> Sender:
    sender = Sender(url, token=token)
    sender.start()
    endpoint = endpoint or os.environ.get("SENTIOPS_ENDPOINT", "default")
    app.add_middleware(LoggerMiddleware, model=model, sender=sender, mode=mode, endpoint=endpoint)
    logger.info("inference log: %s events to %s", mode, url)
    return sender
