"""The Prometheus HTTP API as `sentiops status` and the console read it: instant and range
queries with short timeouts, every failure an `Unavailable` that names the server and the
reason."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class Unavailable(Exception):
    """A source that cannot be read now; the message says why (shown to people as is)."""


class PrometheusClient:
    """The Prometheus HTTP API (instant and range queries) with short timeouts; every failure
    is an `Unavailable` that names the server and the reason."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        url = f"{self.url}{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:  # noqa: S310
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            detail = _error_of(exc)
            raise Unavailable(f"Prometheus at {self.url} answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unavailable(f"Prometheus at {self.url} is unreachable ({reason})") from exc
        except json.JSONDecodeError as exc:
            raise Unavailable(f"Prometheus at {self.url} answered no JSON ({exc})") from exc
        if body.get("status") != "success":
            raise Unavailable(f"Prometheus at {self.url} refused the query: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/query", {"query": promql})["result"])

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        return list(self._get("/api/v1/query_range", params)["result"])

    def instant(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of each series, non-finite values dropped."""
        out = []
        for series in self.query(promql):
            value = float(series["value"][1])
            if math.isfinite(value):
                out.append((dict(series["metric"]), value))
        return out


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error") or exc.reason)
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selector(model_name: str) -> str:
    return f"{{model_name={quote(model_name)}}}"
