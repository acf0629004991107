"""The console's request guard (sentiops/console/guard.py) over a socket: `sentiops console`
in front of a recording predictor (every request it gets is kept), so "nothing reached the
predictor" is what the predictor saw. A cross-site POST (a form's text/plain, a foreign Origin,
`Sec-Fetch-Site: cross-site`) is refused and reaches nothing, the page's own same-origin JSON
POST does; a foreign Host is refused on every route (DNS rebinding); a body over the limit is a
413 before it is read (a Content-Length) or as soon as it passes the limit (chunked), with the
console's memory bounded; `--allowed-hosts` / SENTIOPS_CONSOLE_ALLOWED_HOSTS names other
hosts. Against the real stack of tests/console/conftest.py: the page's own POST is answered
by the real predictor, a foreign one is not."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sentiops.console.guard import AllowedHosts, split_host
from sentiops.local.processes import Process, free_port, wait_http
from tests.conftest import run_cli
from tests.console.conftest import Stack, spawn_console

FOREIGN = "http://evil.example"
PREDICTION = {
    "label": "positive",
    "score": 0.9,
    "probabilities": {"positive": 0.9, "negative": 0.1},
}


@dataclass
class Recorder:
    """A stand-in predictor on loopback that keeps every request it gets (method, path,
    body) and answers :predict, :explain, metadata and :feedback as the real one does."""

    port: int = field(default_factory=free_port)
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)

    def start(self) -> Recorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                recorder.requests.append((self.command, self.path, body))
                if self.path.endswith(":feedback"):
                    out: Any = {"accepted": 1, "by_version": {}}
                elif self.path.endswith(":predict"):
                    out = {"predictions": [PREDICTION]}
                elif self.path.endswith(":explain"):
                    out = {"explanations": [{"method": "stand-in", "attributions": []}]}
                else:
                    out = {"versions": ["1"]}
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Console:
    url: str
    process: Process
    predictor: Recorder

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc  # 127.0.0.1:PORT

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 80)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """`sentiops console --predictor-url <the recorder>`."""
    work = tmp_path_factory.mktemp("guarded-console")
    recorder = Recorder().start()
    proc, url = spawn_console(work / "home", work, "--predictor-url", recorder.url)
    try:
        wait_http(url + "/healthz", proc, 60, "console ready")
        yield Console(url, proc, recorder)
    finally:
        proc.stop()
        recorder.stop()
    assert "Traceback" not in proc.tail(), proc.tail()


def _same_origin_label(console: Console, rid: str = "rid-1") -> httpx.Response:
    """The page's own request, as Chromium sends it."""
    return httpx.post(
        console.url + "/api/feedback",
        json={"id": rid, "label": "positive"},
        headers={"origin": console.url, "sec-fetch-site": "same-origin", "sec-fetch-mode": "cors"},
        timeout=30,
    )


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def _raw(console: Console, head: str) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", console.port), timeout=30)
    conn.sendall(head.replace("\n", "\r\n").encode())
    return conn


def _read_response(conn: socket.socket, first: bytes = b"") -> tuple[int, bytes]:
    data = first
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            break
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        more = conn.recv(65536)
        if not more:
            break
        body += more
    return int(head.split(b" ")[1]), body


@pytest.mark.integration
def test_a_cross_site_post_is_refused_and_reaches_nothing(console: Console) -> None:
    """What a page elsewhere can make a visitor's browser send — a form's text/plain body
    with the browser's Origin and Sec-Fetch-Site — is refused before the handler: the
    predictor gets no request. The console's own page's POST reaches it."""
    url = console.url + "/api/feedback"
    body = '{"id": "rid-1", "label": "negative"}'
    form = {"content-type": "text/plain"}
    console.predictor.requests.clear()
    # a form post from another site, as a current browser sends it
    r = httpx.post(
        url, content=body, headers={**form, "origin": FOREIGN, "sec-fetch-site": "cross-site"}
    )
    assert r.status_code == 403, r.text
    assert "from another site refused" in r.json()["error"] and FOREIGN in r.json()["error"]
    # a browser without Sec-Fetch-*: the Origin alone refuses it
    r = httpx.post(url, content=body, headers={**form, "origin": FOREIGN})
    assert r.status_code == 403 and f"origin '{FOREIGN}' refused" in r.json()["error"], r.text
    # JSON from a foreign origin (a page that got a preflight through somehow), and the
    # origins a browser sends for sandboxed frames, another port, another scheme
    for origin in (
        FOREIGN,
        "null",
        "http://127.0.0.1:1",
        console.url.replace("http:", "https:"),
        f"{console.url}/path",
    ):
        r = httpx.post(url, json={"id": "rid-1", "label": "negative"}, headers={"origin": origin})
        assert r.status_code == 403, (origin, r.text)
        assert f"origin '{origin}' refused" in r.json()["error"], r.text
        assert console.url in r.json()["error"]  # says which origin is the console's
    r = httpx.post(
        url, json={"id": "rid-1", "label": "negative"}, headers={"sec-fetch-site": "same-site"}
    )  # another port of this host
    assert r.status_code == 403, r.text
    # no Origin (curl, scripts): the content type still has to be JSON
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ):
        headers = {"content-type": content_type} if content_type else {}
        r = httpx.post(url, content=body, headers=headers)
        assert r.status_code == 415, (content_type, r.text)
        assert "needs Content-Type: application/json" in r.json()["error"]
        assert "hint" in r.json()
    r = httpx.post(console.url + "/api/predict", content='{"text": "hi"}', headers=form)
    assert r.status_code == 415, r.text
    assert console.predictor.requests == []  # nothing reached the predictor
    ok = _same_origin_label(console)
    assert ok.status_code == 200 and ok.json()["accepted"] == 1, ok.text
    assert [(m, p.rsplit(":", 1)[-1], json.loads(b)) for m, p, b in console.predictor.requests] == [
        ("POST", "feedback", {"id": "rid-1", "label": "positive"})
    ]


@pytest.mark.integration
def test_a_foreign_host_is_refused_on_every_route(console: Console) -> None:
    """DNS rebinding: a page at evil.example:PORT whose name now resolves to 127.0.0.1 is
    same-origin with itself, so only the Host header tells: refused with 400 before any
    handler, also the page and the health check; the console's own names are answered."""
    port, evil = console.port, f"evil.example:{console.port}"
    console.predictor.requests.clear()
    for method, path in (
        ("GET", "/"),
        ("GET", "/api/config"),
        ("GET", "/api/status"),
        ("GET", "/healthz"),
        ("GET", "/static/console.js"),
    ):
        r = httpx.request(method, console.url + path, headers={"host": evil}, timeout=30)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"] == f"host not allowed: '{evil}'"
        assert "--allowed-hosts" in r.json()["hint"]
        assert f"127.0.0.1:{port}" in r.json()["hint"]
    for path, payload in (
        ("/api/feedback", {"id": "rid-2", "label": "neutral"}),
        ("/api/predict", {"text": "hello"}),
    ):
        r = httpx.post(
            console.url + path,
            json=payload,
            headers={"host": evil, "origin": f"http://{evil}", "sec-fetch-site": "same-origin"},
        )
        assert r.status_code == 400 and "host not allowed" in r.json()["error"], r.text
    for host in (
        f"127.0.0.1:{port + 1 if port < 65535 else 1}",
        "127.0.0.1",
        "evil.example",
        f"localhost:{port}, evil.example",
        "bad host",
    ):
        r = httpx.get(console.url + "/healthz", headers={"host": host})
        assert r.status_code == 400, (host, r.text)
    conn = _raw(console, "GET /healthz HTTP/1.0\n\n")  # HTTP/1.0 without a Host
    with conn:
        status, body = _read_response(conn)
    assert status == 400 and b"no Host header" in body
    assert console.predictor.requests == []  # nothing reached the predictor
    for host in (f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", console.host):
        r = httpx.get(console.url + "/healthz", headers={"host": host})
        assert r.status_code == 200, (host, r.text)


@pytest.mark.integration
def test_a_body_over_the_limit_is_refused_before_it_is_read(console: Console) -> None:
    """A Content-Length over 64 kB: the 413 comes before any of the body is sent."""
    head = f"POST /api/feedback HTTP/1.1\nHost: {console.host}\nContent-Type: application/json\n"
    console.predictor.requests.clear()
    conn = _raw(console, head + "Content-Length: 1000000000\n\n")
    with conn:
        status, body = _read_response(conn)
    assert status == 413 and b"1000000000 bytes is over 65536" in body
    assert console.predictor.requests == []


@pytest.mark.integration
def test_a_chunked_body_is_cut_off_at_the_limit_with_memory_bounded(console: Console) -> None:
    """20 MB sent chunked (no Content-Length): the 413 arrives while the client is still
    sending, after a small part of it, and the console's resident memory grows by far less
    than the body (the old check buffered it whole first: 1 GB took 1.9 GB)."""
    total, chunk = 20 * 2**20, b"x" * 2**16
    pid = console.process.proc.pid  # `sentiops console` runs uvicorn in its own process
    httpx.get(console.url + "/healthz")  # settled
    console.predictor.requests.clear()
    before = _rss_kb(pid)
    head = f"POST /api/feedback HTTP/1.1\nHost: {console.host}\nContent-Type: application/json\n"
    conn = _raw(console, head + "Transfer-Encoding: chunked\n\n")
    sent, first = 0, b""
    with conn:
        try:
            while sent < total:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                readable, _, _ = select.select([conn], [], [], 0)
                if readable:
                    first = conn.recv(65536)
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass  # the console closed the connection after answering: read the answer
        deadline = time.monotonic() + 10
        while not first and time.monotonic() < deadline:
            readable, _, _ = select.select([conn], [], [], 0.5)
            if readable:
                first = conn.recv(65536)
        status, body = _read_response(conn, first)
    grown_kb = _rss_kb(pid) - before
    print(
        f"\n413 after {sent / 2**20:.1f} of {total / 2**20:.0f} MB sent; console RSS grew "
        f"{grown_kb} kB"
    )
    assert status == 413 and b"over 65536 bytes" in body, body
    assert sent < total / 2, f"the 413 came only after {sent} of {total} bytes"
    assert grown_kb < 5 * 1024, f"the console's RSS grew {grown_kb} kB for a refused body"
    assert console.predictor.requests == []
    assert httpx.get(console.url + "/healthz").status_code == 200  # still serving


@pytest.mark.integration
def test_the_pages_own_post_reaches_the_real_predictor(stack: Stack) -> None:
    """The real stack: a POST as the page sends it (its own origin) is answered by the real
    predictor; the same with a foreign Origin or Host is not."""
    url, text = stack.console_url + "/api/predict", {"text": "awful app, terrible update"}
    own = {"origin": stack.console_url, "sec-fetch-site": "same-origin"}
    r = httpx.post(url, json=text, headers=own, timeout=30)
    assert r.status_code == 200 and r.json()["label"] == "negative", r.text
    r = httpx.post(url, json=text, headers={"origin": FOREIGN}, timeout=30)
    assert r.status_code == 403, r.text
    port = urlsplit(stack.console_url).port
    r = httpx.post(url, json=text, headers={**own, "host": f"evil.example:{port}"}, timeout=30)
    assert r.status_code == 400, r.text


@pytest.mark.integration
def test_allowed_hosts_names_other_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SENTIOPS_CONSOLE_ALLOWED_HOSTS replaces the default list (a name without a port: any
    port); a malformed --allowed-hosts is a clear CLI error, no traceback."""
    monkeypatch.setenv("SENTIOPS_CONSOLE_ALLOWED_HOSTS", "console.example.com, 127.0.0.1")
    proc, url = spawn_console(tmp_path / "home", tmp_path)
    try:
        wait_http(url + "/healthz", proc, 60, "console ready")
        port = urlsplit(url).port
        named = {"host": f"console.example.com:{port}"}
        assert httpx.get(url + "/healthz", headers=named).status_code == 200
        r = httpx.get(url + "/healthz", headers={"host": f"localhost:{port}"})  # not listed
        assert r.status_code == 400 and "console.example.com, 127.0.0.1" in r.json()["hint"]
        # the page's POST under that name passes the guard (no predictor: the handler's 503)
        r = httpx.post(
            url + "/api/feedback",
            json={"id": "abc", "label": "positive"},
            headers={**named, "origin": f"http://console.example.com:{port}"},
        )
        assert r.status_code == 503 and "no predictor configured" in r.json()["error"], r.text
    finally:
        proc.stop()
    assert "answers to Host: console.example.com, 127.0.0.1" in proc.tail()
    assert "Traceback" not in proc.tail()
    monkeypatch.delenv("SENTIOPS_CONSOLE_ALLOWED_HOSTS")
    bad = run_cli("console", "--allowed-hosts", "console.example.com,bad host!")
    assert bad.returncode == 2, bad.stderr
    assert "'bad host!' is not a host name" in bad.stderr and "hint:" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_allowed_hosts_parsing() -> None:
    default = AllowedHosts.default("127.0.0.1", 8501)
    assert str(default) == "localhost:8501, 127.0.0.1:8501, [::1]:8501"
    assert default.allows("LOCALHOST:8501") and default.allows("localhost.:8501")
    assert not default.allows("localhost") and not default.allows("localhost:8502")
    assert not default.allows(None) and not default.allows("")
    assert AllowedHosts.default("::", 80).allows("[::1]") and AllowedHosts.default(
        "0.0.0.0", 1
    ).entries == (("localhost", 1), ("127.0.0.1", 1), ("[::1]", 1))
    assert AllowedHosts.default("10.0.0.5", 8501).allows("10.0.0.5:8501")
    assert AllowedHosts.default("fd00::5", 8501).allows("[fd00::5]:8501")
    named = AllowedHosts.parse("console.example.com, ::1, example.org:443")
    assert named.allows("console.example.com:1234") and named.allows("[::1]:9")
    assert named.allows("example.org", scheme="https") and not named.allows("example.org")
    assert AllowedHosts.parse("*").allows("anything.example:1")
    for bad in ("", " , ", "a b", "host:0", "host:99999", "host:x", "[zz]:1", "http://x"):
        with pytest.raises(Exception, match="allowed-hosts"):
            AllowedHosts.parse(bad)
    assert split_host("[::1]:8501") == ("[::1]", 8501)
    assert split_host("a..b") is None and split_host("-a") is None and split_host("[::1") is None
