"""The console's request guard: an ASGI middleware in front of every route.

The console has no login and passes labels on to the predictor, which (with the chart's
defaults) may take them without a token. So a web page elsewhere must not be able to make a
visitor's browser post to it (CSRF), nor reach it under a hostname of its own that resolves to
the console's address (DNS rebinding), and a large body must not fill its memory. In order,
before any handler runs:

1. **Host** (every request): the `Host` header must be one of the allowed hosts
   (`AllowedHosts`: by default the address the console binds to, `localhost`, `127.0.0.1` and
   `[::1]`, each with the console's port; `sentiops console --allowed-hosts`, env
   `SENTIOPS_CONSOLE_ALLOWED_HOSTS`; `*` only when given). Otherwise 400 "host not allowed".
2. **Where a state-changing request comes from** (POST, PUT, PATCH, DELETE): a browser's
   `Sec-Fetch-Site` other than `same-origin` (or `none`) is a 403, and so is an `Origin` that
   is not the console's own origin (the scheme it is served with and the allowed `Host`).
   Clients that send no `Origin` (curl, httpx, `sentiops`) are not browsers and pass.
3. **Content type** (state-changing requests): `Content-Type: application/json` or 415. A
   form or `text/plain` body is what a cross-site page can send without asking the browser
   (no CORS preflight); JSON needs a preflight, which the console never grants.
4. **Size** (every request with a body): a `Content-Length` over the limit is a 413 before
   anything is read; a body without one (chunked) is read up to the limit and refused with a
   413 as soon as it passes it — never buffered whole. A refusal of a request whose body was
   not read closes the connection, so the rest of it is not read either.

Every refusal is the console's JSON error (`{"error", "hint"}`), naming what was refused.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sentiops.errors import ConfigError

ALLOWED_HOSTS_ENV = "SENTIOPS_CONSOLE_ALLOWED_HOSTS"
#: Names every console answers to by default (with its port).
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"
#: `Sec-Fetch-Site` values of a request made by the console's own page (or typed by a person).
OWN_FETCH_SITES = ("same-origin", "none")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")

Scope = dict[str, Any]
Receive = Any
Send = Any


def split_host(value: str) -> tuple[str, int | None] | None:
    """`name[:port]` of a Host header (or an allowed-hosts entry) as (lower-case name, port);
    an IPv6 address keeps its brackets. None when it is not a host name or address."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
    else:
        name, sep, port_text = value.partition(":")
        rest = sep + port_text
        name = name.rstrip(".")  # `localhost.` is `localhost`
        if not _NAME.match(name):
            return None
    if not rest:
        return name, None
    port_text = rest[1:]
    if not rest.startswith(":") or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


def host_name(address: str) -> str:
    """How a bind address appears in a Host header: an IPv6 address in brackets."""
    address = address.strip().lower()
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


@dataclass(frozen=True)
class AllowedHosts:
    """The `Host` values the console answers: (name, port) pairs, a port of None matching any
    port; or any host at all (`*`)."""

    entries: tuple[tuple[str, int | None], ...]
    any_host: bool = False

    @classmethod
    def default(cls, bind: str = "127.0.0.1", port: int | None = None) -> AllowedHosts:
        """The bind address (unless it is every address: 0.0.0.0, ::) and the loopback names,
        each with `port` (None: any port)."""
        names = list(LOOPBACK)
        shown = host_name(bind)
        if shown not in names and shown not in ("", "0.0.0.0", "[::]"):  # noqa: S104
            names.insert(0, shown)
        return cls(tuple((name, port) for name in names))

    @classmethod
    def parse(cls, spec: str | Iterable[str], what: str = "--allowed-hosts") -> AllowedHosts:
        """`name`, `name:port`, `[v6]:port` or `*`, comma-separated; a malformed one is a
        ConfigError saying which."""
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        items = [item.strip() for item in items if item.strip()]
        if not items:
            raise ConfigError(
                f"{what} is empty", "name a host, e.g. localhost:8501,console.example.com"
            )
        entries: list[tuple[str, int | None]] = []
        any_host = False
        for item in items:
            if item == "*":
                any_host = True
                continue
            text = host_name(item) if item.count(":") > 1 else item  # a bare IPv6 address
            parsed = split_host(text)
            if parsed is None:
                raise ConfigError(
                    f"{what}: {item!r} is not a host name or address with an optional port",
                    "give e.g. localhost:8501, console.example.com, [::1]:8501 or * (any "
                    "host: no protection against DNS rebinding)",
                )
            entries.append(parsed)
        return cls(tuple(entries), any_host)

    def allows(self, host: str | None, scheme: str = "http") -> bool:
        if self.any_host:
            return True
        parsed = split_host(host) if host else None
        if parsed is None:
            return False
        name, port = parsed
        port = port if port is not None else DEFAULT_PORTS.get(scheme, 80)
        return any(n == name and p in (None, port) for n, p in self.entries)

    def spec(self) -> str:
        """As `--allowed-hosts` takes it."""
        shown = [f"{n}:{p}" if p is not None else n for n, p in self.entries]
        return ",".join(shown + (["*"] if self.any_host else []))

    def __str__(self) -> str:
        return self.spec().replace(",", ", ")


def _origin_of(scheme: str, host: str) -> tuple[str, str, int] | None:
    parsed = split_host(host)
    if parsed is None:
        return None
    name, port = parsed
    return scheme, name, port if port is not None else DEFAULT_PORTS.get(scheme, 80)


def _parse_origin(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin.strip())
        scheme = parts.scheme.lower()
        netloc = parts.netloc
        if scheme not in ("http", "https") or not netloc or "@" in netloc or parts.path:
            return None  # `null`, another scheme, or not an origin at all
        return _origin_of(scheme, netloc)
    except ValueError:
        return None


def _shown(value: str, n: int = 200) -> str:
    return repr(value if len(value) <= n else value[:n] + "…")


class RequestGuard:
    """The ASGI middleware (see the module doc): `app.add_middleware(RequestGuard,
    allowed_hosts=..., max_body_bytes=...)`."""

    def __init__(self, app: Any, allowed_hosts: AllowedHosts, max_body_bytes: int) -> None:
        self.app, self.allowed_hosts, self.max_body_bytes = app, allowed_hosts, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host", "")
        scheme = str(scope.get("scheme", "http"))
        if not self.allowed_hosts.allows(host, scheme):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            shown = _shown(host) if host else "(no Host header)"
            await self._refuse(
                scope,
                receive,
                send,
                headers,
                400,
                f"host not allowed: {shown}",
                f"this console answers to {self.allowed_hosts}; to reach it "
                "under another name, start it with that name allowed "
                f"(--allowed-hosts or env {ALLOWED_HOSTS_ENV}), e.g. "
                f"--allowed-hosts {self.allowed_hosts.spec()},"
                "console.example.com",
            )
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = str(scope["method"]).upper(), str(scope.get("path", ""))
        if method in STATE_CHANGING:
            refusal = self._cross_site(headers, scheme, host, method, path) or self._not_json(
                headers, method, path
            )
            if refusal:
                await self._refuse(scope, receive, send, headers, *refusal)
                return
        length = headers.get("content-length", "").strip()
        if length and not length.isdigit():
            await self._refuse(
                scope,
                receive,
                send,
                headers,
                400,
                f"Content-Length {_shown(length)} is not a number",
            )
            return
        if length and int(length) > self.max_body_bytes:
            await self._refuse(
                scope,
                receive,
                send,
                headers,
                413,
                f"request body of {length} bytes is over {self.max_body_bytes}",
                "send a smaller body (a text is at most a few kB)",
            )
            return
        if (length and int(length) > 0) or "transfer-encoding" in headers:
            await self._with_bounded_body(scope, receive, send, headers)
            return
        await self.app(scope, receive, send)

    def _cross_site(
        self, headers: dict[str, str], scheme: str, host: str, method: str, path: str
    ) -> tuple[int, str, str] | None:
        site = headers.get("sec-fetch-site", "").strip().lower()
        if site and site not in OWN_FETCH_SITES:
            sent = headers.get("origin", "")
            return (
                403,
                f"{method} {path} from another site refused (Sec-Fetch-Site: "
                f"{_shown(site)}{', Origin: ' + _shown(sent) if sent else ''})",
                "use the console's own page; it does not take requests a page elsewhere "
                "makes a browser send",
            )
        origin = headers.get("origin")
        if origin is None:
            return None
        own = _origin_of(scheme, host)
        if own is None or _parse_origin(origin) != own:
            mine = f"{scheme}://{host}"
            return (
                403,
                f"{method} {path} from origin {_shown(origin)} refused: only the "
                f"console's own origin ({mine}) may change anything",
                "use the console's own page (or a client that sends no Origin)",
            )
        return None

    @staticmethod
    def _not_json(headers: dict[str, str], method: str, path: str) -> tuple[int, str, str] | None:
        given = headers.get("content-type", "")
        if given.partition(";")[0].strip().lower() == JSON:
            return None
        return (
            415,
            f"{method} {path} needs Content-Type: {JSON}, not {_shown(given) if given else 'none'}",
            f"send the body as JSON with the header Content-Type: {JSON}",
        )

    async def _with_bounded_body(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        """Read the body up to the limit (at most `max_body_bytes` held), then run the app on
        it; past the limit, a 413 at once and the connection closed."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(
                    scope,
                    receive,
                    send,
                    headers,
                    413,
                    f"request body over {self.max_body_bytes} bytes (refused "
                    f"after reading {size} bytes of it)",
                    "send a smaller body (a text is at most a few kB)",
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, given = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        status: int,
        error: str,
        hint: str = "",
    ) -> None:
        payload = json.dumps({"error": error, **({"hint": hint} if hint else {})}).encode()
        out = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        length = headers.get("content-length", "").strip()
        if "transfer-encoding" in headers or (length and length != "0"):
            out.append((b"connection", b"close"))  # the unread body is not read after this
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload, "more_body": False})


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (latin-1, as HTTP has them). A header that is
    given twice keeps its first value, except the ones the guard decides on: their values are
    joined, which no check accepts (two Hosts or two Origins are refused, not picked from)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name in out and name in ("host", "origin", "content-type", "sec-fetch-site"):
            out[name] = out[name] + ", " + value  # two of them: malformed, refused as such
        else:
            out.setdefault(name, value)
    return out
