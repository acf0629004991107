"""Limits on what a client can make a server do, shared by every HTTP endpoint of the platform
(the predictor, the drift sidecar, the console):

    json_body(raw)   JSON parsed only when it nests at most MAX_DEPTH levels: a deeply nested
                     body is a client's mistake (400), never a RecursionError (500)
    safe_log()       log records whose message has no control characters: a newline in a
                     client's value (an event id, a header) cannot forge a log line

Plain functions; no web framework here.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import numpy as np

from sentiops.errors import InvalidInput

#: Deepest nesting of arrays and objects a JSON body may have. The platform's bodies nest at
#: most 4 levels (a v2 request: object > inputs > input > data); 32 leaves room for clients'
#: own extras and is far below Python's recursion limit.
MAX_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in `raw` (brackets inside strings do not count)."""
    brackets = _STRING.sub(b"", raw).translate(None, delete=_NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def json_body(
    raw: bytes | bytearray | str, max_depth: int = MAX_DEPTH, what: str = "the body"
) -> Any:
    """`raw` parsed as JSON; InvalidInput (a 400 where it is served) when it is not JSON or
    nests deeper than `max_depth`, saying which and how to fix it."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    depth = json_depth(data)
    if depth > max_depth:
        raise InvalidInput(
            f"{what} nests {depth} levels deep; the limit is {max_depth}",
            "send flat JSON: texts as a list of strings",
        )
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{what} is not JSON: {exc}", "send a JSON object") from None


# ------------------------------------------------------------------------------ logs
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, 0x85]}
_CONTROL |= {0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_control(text: str) -> str:
    """`text` with every control character (newlines, carriage returns, escapes, Unicode line
    separators) written as an escape: one log record stays one line."""
    return text.translate(_CONTROL)


class _SafeRecord(logging.LogRecord):
    def getMessage(self) -> str:  # noqa: N802 - logging's name
        return escape_control(super().getMessage())


def safe_log() -> None:
    """Every log record created from now on in this process escapes control characters in its
    message (tracebacks, added by the formatter, keep their lines). Idempotent."""
    if logging.getLogRecordFactory() is not _SafeRecord:
        logging.setLogRecordFactory(_SafeRecord)
