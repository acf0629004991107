"""Traffic on the embedded stack: the traffic split in front of the predictors (the local
stand-in for Knative's split and a gateway's mirror) and the replay of texts as live
traffic."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from sentiops.config import MODEL_NAME
from sentiops.errors import StackError
from sentiops.local.processes import free_port

# ------------------------------------------------------------------------------ traffic split
#: Requests a shadow gets a copy of: predictions (v1 and v2 REST), never labels or explanations.
MIRRORED = (":predict", "/infer")


class TrafficSplit:
    """A reverse proxy on loopback in front of the predictors — the local stand-in for
    Knative's split and for a gateway's mirror. Every path and method is forwarded as is.

    canary  `route(url, p)`: p % of requests go to the canary instead of stable (per request,
            at random).
    shadow  `mirror(url, p)`: every request goes to stable, which answers the client; for p %
            of the predictions a copy goes to the shadow afterwards, with the request id stable
            answered with (the id a label will name; `sentiops.feedback.shadow`). Copies are
            fire-and-forget: a bounded queue (`mirror_queue`) and a few senders with their own
            connections and timeout, so a slow or dead shadow never delays or fails a client's
            request; a full queue drops the copy. `mirrored` and the
            `sentiops_mirror_requests_total{outcome}` counter say how many were sent, dropped
            or failed."""

    def __init__(
        self,
        stable: str,
        port: int | None = None,
        seed: int = 0,
        mirror_queue: int = 256,
        mirror_senders: int = 4,
        mirror_timeout: float = 5.0,
    ) -> None:
        self.stable, self.canary = stable, ""
        self.canary_percent = 0
        self.shadow, self.mirror_percent = "", 0
        self.port = port or free_port()
        self.counts = {"stable": 0, "canary": 0}
        self.mirrored = {"sent": 0, "dropped": 0, "failed": 0}
        self.mirror_queue, self.mirror_senders = mirror_queue, mirror_senders
        self.mirror_timeout = mirror_timeout
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, canary: str, percent: int) -> None:
        with self._lock:
            self.canary, self.canary_percent = canary, percent

    def mirror(self, shadow: str, percent: int) -> None:
        """Copy `percent` % of the predictions to `shadow` ("" or 0: none)."""
        with self._lock:
            self.shadow, self.mirror_percent = shadow, percent

    def _pick(self) -> tuple[str, str]:
        with self._lock:
            if self.canary and self._rng.random() * 100 < self.canary_percent:
                self.counts["canary"] += 1
                return "canary", self.canary
            self.counts["stable"] += 1
            return "stable", self.stable

    def _mirror_to(self, path: str) -> str:
        with self._lock:
            if (
                self.shadow
                and path.endswith(MIRRORED)
                and self._rng.random() * 100 < self.mirror_percent
            ):
                return self.shadow
            return ""

    def _count_mirror(self, outcome: str) -> None:
        from sentiops import metrics  # lazy: pulls prometheus_client

        self.mirrored[outcome] += 1
        metrics.MIRROR_REQUESTS.labels(outcome).inc()

    def app(self) -> Any:
        """The split as an ASGI app: every request forwarded to the version `_pick` chooses, and
        a copy of `MIRRORED` ones to the shadow (`_Mirror`)."""
        import httpx
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        client = httpx.AsyncClient(timeout=30.0)
        mirror = _Mirror(self)

        async def forward(request: Request) -> Response:
            _, upstream = self._pick()
            body = await request.body()
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            try:
                resp = await client.request(
                    request.method,
                    upstream + request.url.path,
                    params=request.query_params,
                    content=body,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                return Response(
                    f'{{"error": "upstream {upstream}: {exc}"}}',
                    status_code=502,
                    media_type="application/json",
                )
            shadow = self._mirror_to(request.url.path)
            if shadow:
                # the prediction id the client got (stable issued it; the shadow keeps it as the
                # copy's client id)
                rid = resp.headers.get("x-request-id") or headers.get("x-request-id", "")
                copy_headers = {k: v for k, v in headers.items() if k.lower() != "x-request-id"}
                if rid:
                    copy_headers["x-request-id"] = rid
                url = shadow + request.url.path
                mirror.copy((url, request.method, request.query_params, body, copy_headers))
            drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
            headers = {k: v for k, v in resp.headers.items() if k.lower() not in drop}
            return Response(resp.content, status_code=resp.status_code, headers=headers)

        methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]
        return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])

    def start(self) -> TrafficSplit:
        import uvicorn

        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not getattr(self._server, "started", False):
            if time.monotonic() > deadline:
                raise StackError("traffic split did not start", "")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)


class _Mirror:
    """The shadow's copies of one split: a bounded queue and a few senders with their own
    connections and timeout, made in the server's event loop on the first copy; a full queue
    drops the copy. Each copy is counted sent, dropped or failed."""

    def __init__(self, split: TrafficSplit) -> None:
        self.split = split
        self.queue: asyncio.Queue[tuple[Any, ...]] | None = None
        self.client: Any = None
        self.senders: list[asyncio.Task[None]] = []

    def copy(self, item: tuple[Any, ...]) -> None:
        """Queue (url, method, params, body, headers) for the shadow; never waits."""
        if self.queue is None:
            import httpx

            limits = httpx.Limits(max_connections=self.split.mirror_senders)
            self.client = httpx.AsyncClient(timeout=self.split.mirror_timeout, limits=limits)
            self.queue = asyncio.Queue(maxsize=self.split.mirror_queue)
            loop = asyncio.get_running_loop()
            self.senders = [
                loop.create_task(self._send()) for _ in range(self.split.mirror_senders)
            ]
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.split._count_mirror("dropped")

    async def _send(self) -> None:
        import httpx

        assert self.queue is not None
        while True:
            url, method, params, body, headers = await self.queue.get()
            try:
                await self.client.request(method, url, params=params, content=body, headers=headers)
                self.split._count_mirror("sent")
            except httpx.HTTPError:
                self.split._count_mirror("failed")
            finally:
                self.queue.task_done()


# ------------------------------------------------------------------------------ replay
class Replay:
    """Replays texts as live traffic: one v1 request per text to `url` at `rate` a second
    (open loop: `concurrency` clients take the next send slot, so one slow answer does not
    slow the others down), in a loop until stopped. Counts answers by status (a 5xx is a
    served error, not a crash); `on_response(text, body, request_id)` sees every 200."""

    def __init__(
        self,
        url: str,
        texts: list[str],
        rate: float = 50.0,
        name: str = MODEL_NAME,
        on_response: Callable[[str, dict[str, Any], str], Any] | None = None,
        concurrency: int = 8,
    ) -> None:
        if not texts:
            raise StackError("no texts to replay", "pass a file with a text column")
        self.url = f"{url}/v1/models/{name}:predict"
        self.texts, self.rate = list(texts), rate
        self.on_response = on_response
        self.stop_event = threading.Event()
        self.status: dict[int, int] = {}
        self._lock = threading.Lock()
        self._sent = 0
        self._base = 0
        self._t0 = 0.0
        self._threads = [
            threading.Thread(target=self._client, daemon=True, name=f"replay-{i}")
            for i in range(max(1, concurrency))
        ]

    def start(self) -> Replay:
        self._t0 = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def set_texts(self, texts: list[str]) -> None:
        """Replay other texts from now on (a traffic shift)."""
        if not texts:
            raise StackError("no texts to replay", "pass a file with a text column")
        with self._lock:
            self.texts = list(texts)

    def set_rate(self, rate: float) -> None:
        """Requests per second from now on."""
        if rate <= 0:
            raise StackError(f"replay rate {rate} must be > 0", "use e.g. 20")
        with self._lock:
            self._t0, self._base, self.rate = time.monotonic(), self._sent, rate

    def _next(self) -> tuple[float, str]:
        with self._lock:
            k = self._sent
            self._sent += 1
            return self._t0 + (k - self._base) / self.rate, self.texts[k % len(self.texts)]

    def _client(self) -> None:
        import httpx

        with httpx.Client(timeout=30.0) as client:
            while not self.stop_event.is_set():
                at, text = self._next()
                if self.stop_event.wait(max(0.0, at - time.monotonic())):
                    return
                request_id = uuid.uuid4().hex
                try:
                    resp = client.post(
                        self.url, json={"instances": [text]}, headers={"x-request-id": request_id}
                    )
                    code = resp.status_code
                    if self.on_response is not None and code == 200:
                        # the prediction id the predictor issued (ours is its client id)
                        answered = resp.headers.get("x-request-id", request_id)
                        self.on_response(text, resp.json(), answered)
                except httpx.HTTPError:
                    code = 0
                with self._lock:
                    self.status[code] = self.status.get(code, 0) + 1

    def stop(self) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(10)
