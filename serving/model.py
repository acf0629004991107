"""The SentiOps predictor: one `kserve.Model` over the core's model directory and prediction.

    load()     checksums verified (`sentiops.models.load_model`); a corrupt or tampered model
               never becomes ready, and the log says why
    predict()  v1 {"instances": ["text", ...]} -> {"id", "predictions": [{label, score,
               probabilities, read}]}
               v2 input `text` BYTES [N] -> outputs `label` BYTES [N], `probabilities` FP32
               [N, C], `read` FP32 [N] (the share of each text read: whole texts are read in
               windows up to the model's max_tokens)
               (REST and gRPC); `id` echoes the client's id (Open Inference Protocol), else
               is the prediction id; `parameters.prediction_id` is always the prediction id
               this server issued (what labels name, also `x-request-id`)
    explain()  per-token attributions for the predicted label (serving.explain), computed
               in a thread of its own, at most EXPLAIN_CONCURRENCY at once (more: 429 with
               Retry-After) and answered within EXPLAIN_TIMEOUT_S (else 503): explanations
               never hold up the event loop, predictions or health probes

Every client mistake is a `kserve.errors.InvalidInput` (HTTP 400 with {"error": ...}) that
names the problem and the limit; the core's checks (`sentiops.models.check_texts`) are the
one place the limits live.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from sentiops import metrics
from sentiops.errors import InvalidInput as CoreInvalidInput
from sentiops.errors import SentiOpsError
from sentiops.models import MAX_BATCH, MAX_CHARS, LoadedModel, check_texts, load_model
from sentiops.scoring import labels_from_proba
from sentiops.security.limits import json_body
from serving.batcher import Batcher
from serving.explain import explain
from serving.feedback import CLIENT_ID_HEADER, prediction_rows

logger = logging.getLogger("sentiops.serving")
VERSION_ENV = "SENTIOPS_MODEL_VERSION"
INPUT = "text"
#: Explanations computed at once (each costs up to ~16 forward and backward passes).
EXPLAIN_CONCURRENCY = 2
#: Longest an explanation request waits for its answer.
EXPLAIN_TIMEOUT_S = 30.0


class Busy(Exception):
    """The server cannot take this request now (`status`: 429 when a limit is reached, 503
    when it took too long); `retry_after` seconds is a good time to try again."""

    def __init__(self, message: str, status: int = 429, retry_after: int = 1) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


def _invalid(message: str, hint: str = "") -> InvalidInput:
    return InvalidInput(f"{message}{f'; {hint}' if hint else ''}")


class SentimentPredictor(Model):
    def __init__(
        self,
        name: str,
        model_dir: str | Path,
        max_batch_size: int = MAX_BATCH,
        max_chars: int = MAX_CHARS,
        batch_window_ms: float = 5.0,
        forward_batch: int = 64,
        version: str | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(name)
        self.model_dir = str(model_dir)
        self.max_batch_size = max_batch_size
        self.max_chars = max_chars
        self.batch_window_ms = batch_window_ms
        self.forward_batch = forward_batch
        self.workers = workers
        self.version = version or os.environ.get(VERSION_ENV) or ""
        self.model: LoadedModel | None = None
        self.batcher: Batcher | None = None
        self.not_ready_reason = "not loaded"
        self._explaining = threading.BoundedSemaphore(EXPLAIN_CONCURRENCY)
        self._explainers = ThreadPoolExecutor(EXPLAIN_CONCURRENCY, "sentiops-explain")
        # called with every answered request's rows (sentiops.feedback.predictions.PredictionIndex)
        self.on_predicted: Any = None
        # decides which predictions are in the random evaluation sample
        # (sentiops.security.secrets.SampleKey; set with feedback)
        self.sample_key: Any = None

    # -------------------------------------------------------------------------- lifecycle
    def load(self) -> bool:
        from sentiops.store.storage import local_model  # lazy: pulls minio

        try:  # an s3:// model is downloaded first, like KServe's storage-initializer
            self.model = load_model(local_model(self.model_dir))
        except SentiOpsError as exc:
            self.ready = False
            self.not_ready_reason = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
            logger.error("model %s is NOT ready: %s", self.name, self.not_ready_reason)
            return False
        self.version = self.version or self.model.version
        metrics.model_series(self.name, str(self.version), list(self.model.labels))
        self.batcher = Batcher(
            self.model.predict_proba,
            max_batch_size=max(self.forward_batch, 1),
            max_latency_ms=self.batch_window_ms,
            model_name=self.name,
            workers=self.workers,
            cost=self.cost,
        )
        self.ready = True
        logger.info(
            "model %s ready: %s %s (version %s, labels %s)",
            self.name,
            self.model.manifest.get("model_type"),
            self.model_dir,
            self.version,
            self.model.labels,
        )
        return True

    def cost(self, texts: Sequence[str]) -> int:
        """The windows `texts` will take (a transformer reads a long text in several,
        `sentiops.models.windows`), estimated from their length at ~4 characters a token
        without tokenizing: what the batcher counts."""
        net = self.model.model if self.model is not None else None
        size, stride = getattr(net, "max_length", 0), getattr(net, "stride", 0)
        if not size or not stride:
            return len(texts)
        first, step = 4 * (size - 2), 4 * stride
        return sum(1 + max(0, -(-(len(t) - first) // step)) for t in texts)

    def start(self) -> None:
        """KServe's default marks every model ready here; readiness is `load()`'s verdict."""

    @property
    def labels(self) -> list[str]:
        return self.model.labels if self.model is not None else []

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}]

    def metadata(self) -> dict[str, Any]:
        """Open Inference Protocol model metadata, plus the label order and model version."""
        return {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": f"sentiops-{(self.model.manifest if self.model else {}).get('model_type')}",
            "inputs": self.get_input_types(),
            "outputs": self.get_output_types(),
            "parameters": {
                "labels": self.labels,
                "model_version": self.version,
                # the probabilities served are calibrated (their mean top
                # probability estimates accuracy) or the model type's raw ones
                "probabilities": self.calibration,
            },
        }

    @property
    def calibration(self) -> str:
        """`calibrated (temperature)` etc., or `uncalibrated`: what the probabilities are."""
        cal = self.model.calibrator if self.model is not None else None
        return f"calibrated ({cal.method})" if cal is not None else "uncalibrated"

    def get_output_types(self) -> list[dict[str, Any]]:
        return [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(self.labels)]},
            # the share of each text the model read (1.0: all of it; less only past the
            # model's max_tokens, when its start and end were read)
            {"name": "read", "datatype": "FP32", "shape": [-1]},
        ]

    # -------------------------------------------------------------------------- decoding
    def texts_of(self, payload: Any) -> list[str]:
        """The texts of a v1 dict or a v2 request, checked against the limits."""
        if isinstance(payload, bytes | bytearray):  # a JSON body sent without its content type
            try:
                payload = json_body(payload)
            except CoreInvalidInput as exc:
                raise _invalid(
                    exc.message,
                    'send {"instances": ["text", ...]} with Content-Type: application/json',
                ) from None
        if isinstance(payload, InferRequest):
            texts = self._v2_texts(payload)
        elif isinstance(payload, dict):
            if "instances" not in payload:
                raise _invalid(
                    'missing "instances"',
                    'send {"instances": ["text", ...]} (v1) or POST /v2/models/'
                    f"{self.name}/infer with an input named {INPUT!r}",
                )
            texts = payload["instances"]
            # {"instances": [{"text": "..."}]} is accepted too (KServe's examples send objects)
            if isinstance(texts, list):
                texts = [t.get(INPUT) if isinstance(t, dict) else t for t in texts]
        else:
            raise _invalid(f"unsupported request body of type {type(payload).__name__}")
        try:
            return check_texts(texts, max_batch=self.max_batch_size, max_chars=self.max_chars)
        except CoreInvalidInput as exc:
            raise _invalid(exc.message, exc.hint) from None

    def _v2_texts(self, request: InferRequest) -> list[Any]:
        inputs = [i for i in request.inputs if i.name == INPUT]
        if len(request.inputs) != 1 or not inputs:
            names = [i.name for i in request.inputs]
            raise _invalid(
                f"expected exactly one input named {INPUT!r}, got {names}",
                'send {"inputs": [{"name": "text", "datatype": "BYTES", '
                '"shape": [N], "data": ["..."]}]}',
            )
        inp = inputs[0]
        if inp.datatype != "BYTES":
            raise _invalid(f"input {INPUT!r} has datatype {inp.datatype}", "use BYTES (UTF-8 text)")
        shape = list(inp.shape or [])
        if len(shape) != 1 and not (len(shape) == 2 and shape[1] == 1):
            raise _invalid(f"input {INPUT!r} has shape {shape}", "use [N] (one text per row)")
        # REST JSON data (possibly nested one level) is read as is; raw tensor bytes (gRPC,
        # or REST's binary extension) and typed gRPC contents go through KServe's decoder
        if isinstance(inp.data, list) and inp._raw_data is None:
            raw = [x for item in inp.data for x in (item if isinstance(item, list) else [item])]
        else:
            try:  # gRPC: raw tensor bytes or typed contents
                raw = inp.as_numpy().reshape(-1).tolist()
            except Exception as exc:  # noqa: BLE001 - a malformed tensor is the client's
                raise _invalid(f"input {INPUT!r} cannot be read as text: {exc}") from None
        if len(raw) != shape[0]:
            raise _invalid(
                f"shape {shape} says {shape[0]} texts but the data has {len(raw)}",
                "make the shape agree with the data",
            )
        texts = []
        for i, item in enumerate(raw):
            if isinstance(item, bytes):
                try:
                    item = item.decode("utf-8")
                except UnicodeDecodeError:
                    raise _invalid(f"item {i} is not UTF-8", "send UTF-8 text") from None
            texts.append(item)
        return texts

    # -------------------------------------------------------------------------- predict
    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        start = time.perf_counter()
        try:
            texts = self.texts_of(payload)
            assert self.batcher is not None and self.model is not None
            proba = np.asarray(await self.batcher.submit(texts), dtype=np.float64)
            read = self.model.read_fraction(texts)
        except InvalidInput:
            metrics.REQUEST_ERRORS.labels(self.name, self.version, "invalid_input").inc()
            metrics.REQUEST_LATENCY.labels(self.name, self.version).observe(
                time.perf_counter() - start
            )
            raise
        except Exception:
            metrics.REQUEST_ERRORS.labels(self.name, self.version, "inference_error").inc()
            metrics.REQUEST_LATENCY.labels(self.name, self.version).observe(
                time.perf_counter() - start
            )
            raise
        labels = labels_from_proba(proba, self.labels)
        self._observe(texts, labels, proba, time.perf_counter() - start)
        if self.on_predicted is not None:
            self._remember(payload, headers, texts, labels, proba)
        # the prediction id this server issued (serving.feedback.RequestIds), never the client's;
        # the client's own id rides along for correlation (the drift sidecar logs both)
        rid = (headers or {}).get("x-request-id") or None
        client = (headers or {}).get(CLIENT_ID_HEADER) or ""
        if isinstance(payload, InferRequest):
            return self._v2_response(payload, labels, proba, rid, client, read)
        return {
            **({"id": rid} if rid else {}),
            **({"client_request_id": client} if client else {}),
            "predictions": [
                {
                    "label": label,
                    "score": float(row.max()),
                    "probabilities": {k: float(p) for k, p in zip(self.labels, row, strict=True)},
                    "read": round(float(share), 4),
                }
                for label, row, share in zip(labels, proba, read, strict=True)
            ],
        }

    def _observe(self, texts: list[str], labels: list[str], proba: np.ndarray, secs: float) -> None:
        metrics.REQUEST_LATENCY.labels(self.name, self.version).observe(secs)
        confidence = metrics.PREDICTION_CONFIDENCE.labels(self.name, self.version)
        length = metrics.INPUT_LENGTH.labels(self.name)
        for text, label, row in zip(texts, labels, proba, strict=True):
            metrics.PREDICTIONS.labels(self.name, self.version, label).inc()
            confidence.observe(float(row.max()))
            length.observe(len(text))

    def _remember(
        self,
        payload: Any,
        headers: dict[str, str] | None,
        texts: list[str],
        labels: list[str],
        proba: np.ndarray,
    ) -> None:
        rid = (headers or {}).get("x-request-id")
        if rid:  # an id issued here (a request that bypassed RequestId has none: not labelled)
            conf = [float(row.max()) for row in proba]
            self.on_predicted(
                prediction_rows(
                    rid,
                    texts,
                    labels,
                    conf,
                    self.name,
                    self.version,
                    client_id=(headers or {}).get(CLIENT_ID_HEADER, ""),
                    sample_key=self.sample_key,
                )
            )

    def _v2_response(
        self,
        request: InferRequest,
        labels: list[str],
        proba: np.ndarray,
        rid: str | None,
        client: str,
        read: np.ndarray,
    ) -> InferResponse:
        # gRPC answers carry raw tensor bytes (what Triton's and KServe's gRPC clients read);
        # REST answers carry JSON data
        binary = bool(request.from_grpc)
        label_out = InferOutput("label", [len(labels)], "BYTES")
        label_out.set_data_from_numpy(
            np.array([x.encode() for x in labels] if binary else labels, dtype=np.object_),
            binary_data=binary,
        )
        prob_out = InferOutput("probabilities", list(proba.shape), "FP32")
        prob_out.set_data_from_numpy(proba.astype(np.float32), binary_data=binary)
        read_out = InferOutput("read", [len(labels)], "FP32")
        read_out.set_data_from_numpy(np.asarray(read, dtype=np.float32), binary_data=binary)
        pid = rid or uuid.uuid4().hex
        params = {"prediction_id": pid, **({"client_request_id": client} if client else {})}
        return InferResponse(
            response_id=client or pid,  # the Open Inference Protocol echoes the client's id
            model_name=self.name,
            model_version=self.version,
            infer_outputs=[label_out, prob_out, read_out],
            use_binary_outputs=binary,
            from_grpc=request.from_grpc,
            parameters=params,
        )

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        texts = self.texts_of(payload)
        if len(texts) > 8:
            raise _invalid(f"{len(texts)} texts to explain", "explain at most 8 texts a request")
        if not self._explaining.acquire(blocking=False):
            raise Busy(
                f"{EXPLAIN_CONCURRENCY} explanations are being computed already (the "
                "limit); retry after a second"
            )
        # the slot is given back when the thread is done, also after a timeout: the limit
        # holds for the work itself, not only for the waiting
        job = asyncio.get_running_loop().run_in_executor(self._explainers, self._explain, texts)
        try:
            return await asyncio.wait_for(asyncio.shield(job), EXPLAIN_TIMEOUT_S)
        except TimeoutError:
            raise Busy(
                f"the explanation took longer than {EXPLAIN_TIMEOUT_S:g} s; retry later "
                "or explain shorter texts",
                503,
                5,
            ) from None

    def _explain(self, texts: list[str]) -> dict[str, Any]:
        try:
            assert self.model is not None
            return {"explanations": [explain(self.model, t) for t in texts]}
        finally:
            self._explaining.release()
