"""POST /api/feedback `{"id", "label"}`: a person's label for an earlier prediction (its
request id), sent to the predictor's feedback API (`:feedback`), which stores it and counts it
in live accuracy. The person's token (the page keeps it in its session only) goes to the
predictor, which checks it; the console stores none."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sentiops.console.deps import ApiError, ConsoleDep, JsonBody, PersonToken
from sentiops.console.predictor import call

router = APIRouter()
#: Predictor refusals of a label passed on as they are (bad label, unknown id, labelled twice).
PASSED_ON = (400, 404, 409)


@router.post("/api/feedback")
async def feedback(console: ConsoleDep, body: JsonBody, token: PersonToken) -> dict[str, Any]:
    """A person's label for an earlier prediction, sent to the predictor's feedback API."""
    rid, label = _label_of(body)
    base, name = console.predictor_url(), console.cfg.model_name
    result = await call(
        console.client,
        "POST",
        f"{base}/v1/models/{name}:feedback",
        {"id": rid, "label": label},
        headers=token,
        passthrough=PASSED_ON,
    )
    answer = result if isinstance(result, dict) else {}
    return {
        "id": rid,
        "label": label,
        "accepted": answer.get("accepted"),
        "by_version": answer.get("by_version"),
    }


def _label_of(body: dict[str, Any]) -> tuple[str, str]:
    """The prediction's request id (stripped) and the label, or a 400 naming what is wrong."""
    rid, label = body.get("id"), body.get("label")
    if not isinstance(rid, str) or not rid.strip() or len(rid) > 200:
        raise ApiError(
            400,
            '"id" must be the prediction\'s request id (a non-empty string '
            "of at most 200 characters)",
            "classify a text first",
        )
    if not isinstance(label, str) or not label.strip() or len(label) > 50:
        raise ApiError(400, '"label" must be a label name such as "positive"')
    return rid.strip(), label
