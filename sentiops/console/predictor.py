"""The console's calls to the predictor (`serving/`): one request each, whose failures become
`ApiError`s that say what happened (a refusal about the person's own request passes on as it
is, with the header that tells what to do)."""

from __future__ import annotations

from typing import Any

import httpx

from sentiops.console.deps import ApiError

#: Predictor answers about the person's own request (its token, its pace): passed on as they
#: are, with the header that tells what to do and a hint.
ABOUT_THE_CLIENT = {
    401: ("WWW-Authenticate", "type your token in the token field"),
    403: ("", "check the token in the token field"),
    429: ("Retry-After", "wait that many seconds before trying again"),
}


async def call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    passthrough: tuple[int, ...] = (),
    headers_out: dict[str, str] | None = None,
) -> Any:
    """One predictor call: its JSON answer, or an ApiError that says what happened (401, 403,
    429 and statuses in `passthrough` reach the client as they are, with the predictor's
    reason). `headers_out` gets the answer's headers (lower-case names)."""
    resp = await _send(client, method, url, body, headers)
    if headers_out is not None:
        headers_out.update((k.lower(), v) for k, v in resp.headers.items())
    if resp.status_code == 200:
        try:
            return resp.json()
        except ValueError as exc:
            raise ApiError(502, f"the predictor answered no JSON on {url}") from exc
    raise refusal(resp, url, passthrough)


async def _send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: Any,
    headers: dict[str, str] | None,
) -> httpx.Response:
    """The request sent; a timeout is a 504, a predictor that cannot be reached a 502."""
    try:
        return await client.request(method, url, json=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise ApiError(
            504,
            f"the predictor did not answer {url} in time ({type(exc).__name__})",
            "it may be overloaded; try again",
        ) from exc
    except httpx.HTTPError as exc:
        raise ApiError(
            502,
            f"the predictor is unreachable at {url} ({exc or type(exc).__name__})",
            "start it or pass the right --predictor-url",
        ) from exc


def refusal(resp: httpx.Response, url: str, passthrough: tuple[int, ...] = ()) -> ApiError:
    """The ApiError for a predictor's answer other than 200."""
    detail = _detail(resp)
    if resp.status_code in ABOUT_THE_CLIENT:
        name, hint = ABOUT_THE_CLIENT[resp.status_code]
        kept = {name: resp.headers[name]} if name in resp.headers else {}
        return ApiError(resp.status_code, f"the predictor refused it: {detail}", hint, kept)
    if resp.status_code in passthrough:
        return ApiError(resp.status_code, f"the predictor refused it: {detail}")
    if resp.status_code in (400, 413, 422):
        return ApiError(resp.status_code, f"the predictor refused the text: {detail}")
    if resp.status_code == 503:
        return ApiError(503, f"the predictor is not ready: {detail}", "wait for it to load")
    if resp.status_code == 404:
        return ApiError(
            502,
            f"the predictor has no {url.rsplit('/', 1)[-1]}: {detail}",
            "check --predictor-url and the model name",
        )
    return ApiError(502, f"the predictor failed ({resp.status_code}): {detail}")


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict):
            return str(body.get("error") or body.get("detail") or body)[:500]
    except ValueError:
        pass
    return resp.text[:500] or resp.reason_phrase
