"""POST /api/predict `{"text": ...}`: the predictor's label and probabilities (`:predict`),
its token attributions (`:explain`) and model version (v2 metadata), asked at once, and the
request id a label for this prediction joins (`POST /api/feedback`). A failed explanation
or metadata call leaves its fields empty (`explain_error` says why); a failed prediction is
the answer's error."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

from fastapi import APIRouter

from sentiops.console.deps import ApiError, ConsoleDep, JsonBody, PersonToken
from sentiops.console.predictor import call

router = APIRouter()


@router.post("/api/predict")
async def predict(console: ConsoleDep, body: JsonBody, token: PersonToken) -> dict[str, Any]:
    text = text_of(body, console.cfg.max_chars)
    base, name = console.predictor_url(), console.cfg.model_name
    request_id = uuid.uuid4().hex
    answered: dict[str, str] = {}  # the predictor's answer headers (its x-request-id)
    # the person's token goes along, for a predictor that closes reads too
    results: tuple[Any, ...] = await asyncio.gather(
        call(
            console.client,
            "POST",
            f"{base}/v1/models/{name}:predict",
            {"instances": [text]},
            headers={"x-request-id": request_id, **token},
            headers_out=answered,
        ),
        call(
            console.client,
            "POST",
            f"{base}/v1/models/{name}:explain",
            {"instances": [text]},
            headers=token,
        ),
        call(console.client, "GET", f"{base}/v2/models/{name}", None, headers=token),
        return_exceptions=True,
    )
    pred, expl, meta = results
    if isinstance(pred, BaseException):
        raise pred
    out = prediction_of(pred, text, base)
    # the id a label joins is the one the predictor used and answered (a predictor that
    # issues its own ids keeps ours only for correlation)
    out["request_id"] = answered.get("x-request-id") or request_id
    out["model_version"] = version_of(meta)
    out.update(explanation_of(expl))
    return out


def text_of(body: dict[str, Any], max_chars: int) -> str:
    """The body's text, or a 400 (none, not a string, empty) or 413 (over `max_chars`)."""
    text = body.get("text")
    if text is None:
        raise ApiError(400, 'no "text" in the body', 'send {"text": "..."}')
    if not isinstance(text, str):
        raise ApiError(400, f'"text" must be a string, not {type(text).__name__}')
    if not text.strip():
        raise ApiError(400, "the text is empty", "type a sentence to classify")
    if len(text) > max_chars:
        raise ApiError(
            413, f"the text has {len(text)} characters; at most {max_chars}", "shorten it"
        )
    return text


def prediction_of(pred: Any, text: str, base: str) -> dict[str, Any]:
    """The text, label, score and probabilities of the predictor's v1 answer, or a 502."""
    try:
        first = pred["predictions"][0]
        return {
            "text": text,
            "label": str(first["label"]),
            "score": float(first["score"]),
            "probabilities": {str(k): float(v) for k, v in first["probabilities"].items()},
        }
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ApiError(
            502,
            f"the predictor at {base} answered an unexpected body ({type(exc).__name__}: {exc})",
        ) from exc


def version_of(meta: Any) -> Any:
    """The model version of the predictor's v2 metadata (None when the call failed)."""
    if not isinstance(meta, dict):
        return None
    return (meta.get("parameters") or {}).get("model_version") or next(
        iter(meta.get("versions") or []), None
    )


def explanation_of(expl: Any) -> dict[str, Any]:
    """`attributions` (finite ones), `method` and `explain_error` of the `:explain` answer
    (or of its failure)."""
    out: dict[str, Any] = {"attributions": None, "method": None, "explain_error": None}
    if isinstance(expl, BaseException):
        out["explain_error"] = expl.error if isinstance(expl, ApiError) else str(expl)
        return out
    try:
        e = expl["explanations"][0]
        out["method"] = e.get("method")
        out["attributions"] = [
            {"token": str(a["token"]), "attribution": float(a["attribution"])}
            for a in e.get("attributions") or []
            if math.isfinite(float(a["attribution"]))
        ]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        out["explain_error"] = f"unexpected explanation body ({exc})"
    return out
