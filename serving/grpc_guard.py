"""The predictor's gRPC port (Open Inference Protocol v2) under the rules of its REST port.

KServe's gRPC server has no hook for them, so `GuardedModelServer` starts KServe's servicer
on a `grpc.aio` server whose first interceptor is `GrpcGuard`:

- `RepositoryModelLoad`/`Unload` are refused (PERMISSION_DENIED), as REST's repository API is:
  any client could unload the model;
- `ModelInfer` and `ModelMetadata` share REST's per-client token bucket (`--rate_limit`, keyed
  by the peer's address, so a client's budget is the same over both protocols): over it,
  RESOURCE_EXHAUSTED with a `retry-after` trailer (seconds);
- with `--auth_reads` they need `authorization: Bearer <token>` metadata: UNAUTHENTICATED
  when none is sent, PERMISSION_DENIED for a token that is not valid;
- `ModelInfer` gets a prediction id issued here, as over REST (`serving.feedback.RequestIds`,
  one for both protocols): it is the response's `id` and is sent back as initial metadata
  `x-request-id`; the client's own id (metadata `x-request-id`, else the request's `id`) is
  kept for correlation only (`x-client-request-id`), so a label can only join the text it
  was given for, whichever protocol made the prediction.

The probes (`ServerLive`, `ServerReady`, `ModelReady`) and `ServerMetadata` stay open and
unlimited, like REST's health endpoints. Messages are bounded like REST bodies
(`--grpc_max_receive_message_length`, default the REST body limit).
"""

from __future__ import annotations

import logging
from collections import namedtuple
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any
from urllib.parse import unquote

import grpc
from grpc import aio
from kserve import ModelServer

from sentiops.security.auth import AuthError
from serving.feedback import CLIENT_ID_HEADER, RequestIds, over_limit

logger = logging.getLogger("sentiops.serving.grpc")
SERVICE = "/inference.GRPCInferenceService/"
#: Methods about the model (REST: /v2/models/<name>/...): rate limited, closed by --auth_reads.
MODEL_METHODS = ("ModelInfer", "ModelMetadata")
Metadatum = namedtuple("Metadatum", ("key", "value"))


def peer_host(peer: str) -> str:
    """The client's address in a gRPC peer string (`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`,
    URL-encoded or not), the key REST uses for the same client; other peers as they are."""
    kind, _, rest = unquote(peer or "").partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return rest.rpartition(":")[0].strip("[]")
    return peer or "unknown"


class _WithRequestId:
    """The servicer's context, its invocation metadata carrying the id this predictor chose
    (KServe passes that metadata to the model as its headers)."""

    def __init__(self, context: Any, rid: str, client: str) -> None:
        self._context, self._rid, self._client = context, rid, client

    def invocation_metadata(self) -> tuple:
        ours = ("x-request-id", CLIENT_ID_HEADER)
        kept = [m for m in self._context.invocation_metadata() or () if m[0] not in ours]
        client = (Metadatum(CLIENT_ID_HEADER, self._client),) if self._client else ()
        return (*kept, Metadatum("x-request-id", self._rid), *client)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class GrpcGuard(aio.ServerInterceptor):
    """See the module's doc. `limiter` (`sentiops.security.ratelimit.RateLimiter`) or None; `tokens`
    (`sentiops.security.auth.Tokens`) checked on model methods when `auth_reads`."""

    def __init__(
        self,
        model: Any,
        ids: RequestIds,
        limiter: Any = None,
        tokens: Any = None,
        auth_reads: bool = False,
    ) -> None:
        self.model, self.ids, self.limiter = model, ids, limiter
        self.tokens = tokens if auth_reads else None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = str(details.method or "")
        if method.startswith(SERVICE + "RepositoryModel"):

            async def refused(request: Any, context: Any) -> None:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "the model repository API (load/unload) is disabled on "
                    "this server; roll out a new model instead",
                )

            return grpc.unary_unary_rpc_method_handler(refused)
        handler = await continuation(details)
        name = method.removeprefix(SERVICE)
        if handler is None or handler.unary_unary is None or name not in MODEL_METHODS:
            return handler
        inner = handler.unary_unary

        async def guarded(request: Any, context: Any) -> Any:
            await self._admit(context)
            if name == "ModelInfer":
                context = await self._with_id(request, context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _admit(self, context: Any) -> None:
        """Aborts the call when its client is over its rate or, with reads closed, has no
        valid token."""
        if self.limiter is not None:
            over = over_limit(self.limiter, self.model, peer_host(context.peer()))
            if over is not None:
                error, after = over
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, error, (("retry-after", after),)
                )
        if self.tokens is not None:
            metadata = dict(context.invocation_metadata() or ())
            try:
                self.tokens.check(metadata.get("authorization"))
            except AuthError as exc:
                code = (
                    grpc.StatusCode.UNAUTHENTICATED
                    if exc.status == 401
                    else grpc.StatusCode.PERMISSION_DENIED
                )
                hint = exc.hint.replace(
                    "`Authorization: Bearer ...`", "metadata `authorization: Bearer ...`"
                )
                await context.abort(code, f"{exc.message}; {hint}")

    async def _with_id(self, request: Any, context: Any) -> Any:
        """The request under a prediction id issued here; the id goes back as metadata."""
        asked = dict(context.invocation_metadata() or ()).get("x-request-id") or request.id
        rid, client = self.ids.assign(str(asked or ""))
        request.id = rid
        answer = [("x-request-id", rid)]
        if client:
            answer.append((CLIENT_ID_HEADER, client))
        await context.send_initial_metadata(tuple(answer))
        return _WithRequestId(context, rid, client)


class GuardedGRPCServer:
    """KServe's `GRPCServer` (kserve 0.20, `kserve.protocol.grpc.server`) with `interceptors`
    run before KServe's own (logging, exceptions to statuses)."""

    def __init__(
        self,
        port: int,
        data_plane: Any,
        repository: Any,
        kwargs: dict,
        interceptors: tuple,
        grace_period: int = 30,
        host: str = "[::]",
    ) -> None:
        self.port, self.data_plane, self.repository = port, data_plane, repository
        self.host = host
        self.kwargs, self.interceptors, self.grace_period = kwargs, interceptors, grace_period
        self._server: aio.Server | None = None

    async def start(self, max_workers: int) -> None:
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
        from kserve.protocol.grpc.interceptors import (
            ExceptionToStatusInterceptor,
            LoggingInterceptor,
        )
        from kserve.protocol.grpc.servicer import InferenceServicer

        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(*self.interceptors, LoggingInterceptor(), ExceptionToStatusInterceptor()),
            options=[
                ("grpc.max_send_message_length", self.kwargs["grpc_max_send_message_length"]),
                ("grpc.max_receive_message_length", self.kwargs["grpc_max_receive_message_length"]),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self.data_plane, self.repository), self._server
        )
        self._server.add_insecure_port(f"{self.host}:{self.port}")
        logger.info("gRPC server on port %d (with %d workers)", self.port, max_workers)
        await self._server.start()
        await self._server.wait_for_termination()

    async def stop(self, sig: int | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace=self.grace_period)


class GuardedModelServer(ModelServer):
    """`kserve.ModelServer` whose gRPC server (when `enable_grpc`) is a `GuardedGRPCServer`
    with `interceptors`, both servers listening on `args.host` (KServe's REST server binds
    0.0.0.0 in its code: its uvicorn config is given the host as it is made); `args` are the
    parsed flags (the host, the gRPC message limits)."""

    def __init__(
        self, interceptors: tuple, args: Any, enable_grpc: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(enable_grpc=False, **kwargs)
        self.guarded = (interceptors, vars(args)) if enable_grpc else None
        self.host = getattr(args, "host", "0.0.0.0")  # noqa: S104 - a pod's default

    def start(self, models: list) -> None:
        import kserve.model_server as ms

        host = self.host

        class BoundRESTServer(ms.RESTServer):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.config.host = host

        ms.RESTServer = BoundRESTServer
        if self.guarded is not None:  # started beside the REST server, in the same event loop
            interceptors, flags = self.guarded
            grpc_host = f"[{host}]" if ":" in host else host
            self._grpc_server = GuardedGRPCServer(
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                flags,
                interceptors,
                grace_period=self.grace_period,
                host="[::]" if host in ("0.0.0.0", "::") else grpc_host,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        super().start(models)
