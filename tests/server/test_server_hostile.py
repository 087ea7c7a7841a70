"""Hostile clients, against the real entry point (``python -m server.main``) on loopback and against the app.

Each test is bounded in time (a read timeout of 1.5 s stands in for the default 10 s). What a
test cannot bound — figures on the real model, memory over 60 reloads, p50 under long
questions — ``scripts/hostile.py`` measures against a running server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from server_test_support import (
    ADMIN_TOKEN,
    Q_CLONESET,
    Q_SIDECAR,
    assert_error,
    post_slack,
    slack_form,
    slack_headers,
    write_data,
)

from qa.question import as_asked
from server.main import limit_malloc_arenas, uvicorn_options
from server.observability import JsonFormatter, ObserveMiddleware, TextFormatter, escape_log, request_id
from server.ratelimit import MAX_COST, question_cost
from server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
READ_TIMEOUT = 1.5

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX sockets and resource limits")

LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
ASK = b'{"question": "' + Q_SIDECAR.encode() + b'"}'


# --------------------------------------------------------------------------- a real server


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _soft_nofile(n: int) -> Callable[[], None]:
    def set_limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (n, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    return set_limit


@contextlib.contextmanager
def running_server(root: Path, soft_nofile: int | None = None, **env: str) -> Iterator[Server]:
    """``python -m server.main`` on the tiny FAQ with the hash encoder (fast to start), stopped after."""
    port = _free_port()
    values = {"QA_MODEL": "hash", "QA_DATA_DIR": str(write_data(root / "data")), "QA_INDEX_DIR": str(root / "index"),
              "QA_STATE_DIR": str(root / "state"), "QA_RECORD": "false", "QA_HOST": "127.0.0.1", "QA_PORT": str(port),
              "QA_RATE_LIMIT": "off", "QA_LOG_LEVEL": "info", "QA_THRESHOLD": "0.3",
              "QA_READ_TIMEOUT": str(READ_TIMEOUT), **env}
    full = {k: v for k, v in __import__("os").environ.items() if not k.startswith("QA_")} | values
    log_path = root / f"server-{port}.log"
    with open(log_path, "wb") as out:  # a file, not a pipe: a flood of log lines must not block the server
        proc = subprocess.Popen([sys.executable, "-m", "server.main"], cwd=ROOT, env=full, stdout=out,
                                stderr=subprocess.STDOUT,
                                preexec_fn=_soft_nofile(soft_nofile) if soft_nofile else None)
    server = Server(proc, port, log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default guards (16 KiB of headers, 2,048 connections), a 1.5 s read timeout, no rate limit."""
    with running_server(tmp_path_factory.mktemp("hostile")) as s:
        yield s


def _connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _read_until_closed(sock: socket.socket, limit: float) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed); raises TimeoutError when the
    connection is still open after ``limit`` s."""
    sock.settimeout(limit)
    data = b""
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _status(raw: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", raw)
    return int(m.group(1)) if m else None


def _metrics(server: Server) -> dict[str, float]:
    out = {}
    for row in httpx.get(server.url + "/metrics", timeout=5).text.splitlines():
        if row and not row.startswith("#"):
            name, _, value = row.rpartition(" ")
            out[name] = float(value)
    return out


def _p50_of_asks(url: str, n: int) -> float:
    """p50 in seconds of ``n`` repeated questions on one kept-alive connection (answered from the cache)."""
    times = []
    with httpx.Client(base_url=url, timeout=10) as http:
        http.post("/api/ask", json={"question": Q_SIDECAR})
        for _ in range(n):
            start = time.perf_counter()
            assert http.post("/api/ask", json={"question": Q_SIDECAR}).status_code == 200
            times.append(time.perf_counter() - start)
    return statistics.median(times)


# --------------------------------------------------------------------------- header size


HOSTILE_HEADERS = textwrap.dedent("""\
    import json, socket, sys, time
    port, seconds, mib = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    chunk = b"a" * 2**20
    took, stop = [], time.monotonic() + seconds
    while time.monotonic() < stop:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        start = time.monotonic()
        try:
            s.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\nX-Big: ")
            for _ in range(mib):
                s.sendall(chunk)
            s.settimeout(5)
            while s.recv(65536):
                pass
        except OSError:
            pass
        took.append(time.monotonic() - start)
        s.close()
        time.sleep(0.05)  # twenty a second: the server's handling is measured, not this machine's two cores
    print(json.dumps(took))
""")


def test_oversized_headers_are_refused_at_once_and_other_clients_keep_their_pace(server: Server) -> None:
    # the limit is the request line and headers together: 12 KiB passes, 20 KiB is refused with 431
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/healthz", headers={"X-Pad": "p" * 12_000}).status_code == 200
        r = http.get("/healthz", headers={"X-Pad": "p" * 20_000})
    assert r.status_code == 431 and r.json()["error"]["code"] == "header_too_large"

    normal = _p50_of_asks(server.url, 100)
    # another process sends 64 MiB headers, twenty a second, while the client asks again
    hostile = subprocess.Popen([sys.executable, "-c", HOSTILE_HEADERS, str(server.port), "4", "64"],
                               stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    during = _p50_of_asks(server.url, 100)
    took = json.loads(hostile.communicate(timeout=30)[0])
    assert took and max(took) < 1.0, took  # each refused (431 then closed) within a second
    assert during <= 2 * normal + 0.001, (normal, during)  # +1 ms: the clock's grain on a busy 2-core machine
    assert _metrics(server)['qa_http_connections_closed_total{reason="header_too_large"}'] >= len(took)


def test_the_header_limit_is_a_setting() -> None:
    settings = ServerSettings(max_header_bytes=4096)
    assert uvicorn_options(settings, 20_000)["h11_max_incomplete_event_size"] == 4096
    with pytest.raises(ValueError):
        ServerSettings(max_header_bytes=10)


# --------------------------------------------------------------------------- read timeout, half-open connections


PARTS = {
    "nothing": b"",
    "request line": b"POST /api/ask HT",
    "headers": b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
    "body": b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"qu",
}


@pytest.mark.parametrize("part", list(PARTS))
def test_an_incomplete_request_gets_408_after_the_read_timeout(server: Server, part: str) -> None:
    sock = _connect(server.port)
    start = time.monotonic()
    if PARTS[part]:
        sock.sendall(PARTS[part])
    reply = _read_until_closed(sock, READ_TIMEOUT + 5)
    took = time.monotonic() - start
    sock.close()
    assert READ_TIMEOUT - 0.1 <= took < READ_TIMEOUT + 1.5, took
    if part == "nothing":  # no request came: nothing to answer, the connection is just closed
        assert reply == b""
    else:
        assert _status(reply) == 408, reply
        assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"


def test_a_request_trickling_in_is_cut_at_the_deadline_not_kept_alive_by_each_byte(server: Server) -> None:
    sock = _connect(server.port)
    start = time.monotonic()
    sock.settimeout(0.3)
    closed = False
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(65536):
                closed = True
                break
        except TimeoutError:
            continue
        except OSError:
            closed = True
            break
    took = time.monotonic() - start
    sock.close()
    assert closed and took < READ_TIMEOUT + 1.5, took


def test_a_kept_alive_connection_gets_a_fresh_deadline_per_request(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for _ in range(3):  # idle longer than the read timeout between requests: the keep-alive timer's business
            assert http.get("/healthz").status_code == 200
            time.sleep(READ_TIMEOUT + 0.3)
        assert http.post("/api/ask", json={"question": Q_SIDECAR}).status_code == 200


def test_a_thousand_half_open_connections_do_not_stop_a_normal_client(tmp_path: Path) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"this process may open only {hard} files")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200 if hard == resource.RLIM_INFINITY else min(hard, 4096), hard))
    # started with the usual soft limit of 1,024: the server raises its own
    with running_server(tmp_path, soft_nofile=1024) as server:
        limits = Path(f"/proc/{server.proc.pid}/limits")
        if limits.exists():
            row = next(r for r in limits.read_text().splitlines() if r.startswith("Max open files"))
            assert int(row.split()[3]) > 1024, row
        kinds = list(PARTS.values())
        idle = []
        for i in range(1000):
            s = _connect(server.port)
            if kinds[i % 4]:
                s.sendall(kinds[i % 4])
            idle.append(s)
        opened = time.monotonic()
        start = time.perf_counter()
        r = httpx.post(server.url + "/api/ask", json={"question": Q_SIDECAR}, timeout=10)
        took = time.perf_counter() - start
        assert r.status_code == 200 and took < 2.0, (r.status_code, took)  # answered, not starved
        # then each of the thousand is closed by the read timeout
        time.sleep(max(0.0, READ_TIMEOUT + 1.0 - (time.monotonic() - opened)))
        statuses = [_status(_read_until_closed(s, 3)) for s in idle]  # TimeoutError if one is still open
        for s in idle:
            s.close()
        # 408 where part of a request came; closed without a word where nothing came
        assert statuses.count(408) == 750 and statuses.count(None) == 250, {x: statuses.count(x) for x in set(statuses)}
        assert _metrics(server)['qa_http_connections_closed_total{reason="read_timeout"}'] >= 1000


def test_past_the_connection_cap_the_oldest_waiting_connection_is_closed(tmp_path: Path) -> None:
    with running_server(tmp_path, QA_MAX_CONNECTIONS="16", QA_READ_TIMEOUT="60") as server:
        first = [_connect(server.port) for _ in range(16)]
        for s in first[::2]:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")  # half of them began a request
        time.sleep(0.3)
        later = [_connect(server.port) for _ in range(6)]  # six over the cap: the six oldest go
        evicted = [_status(_read_until_closed(s, 2)) for s in first[:6]]
        assert evicted == [408, None] * 3, evicted  # 408 where a request began, closed where none did
        for s in first[6:] + later:  # the others are still open
            s.settimeout(0.05)
            with pytest.raises(TimeoutError):
                s.recv(1)
        r = httpx.post(server.url + "/api/ask", json={"question": Q_SIDECAR}, timeout=10)
        assert r.status_code == 200
        for s in first + later:
            s.close()


# --------------------------------------------------------------------------- a client that hangs up


def test_a_client_that_hangs_up_is_never_a_500(server: Server) -> None:
    before = _metrics(server)
    for cut in (b"{\"", b"", b"{\"question\": \"sidecar"):
        for _ in range(5):
            s = _connect(server.port)
            s.sendall(b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n" + cut)
            time.sleep(0.05)
            s.close()
    s = _connect(server.port)  # and one that leaves after the whole request, before its answer
    s.sendall(b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(ASK)).encode() + b"\r\n\r\n" + ASK)
    s.close()
    time.sleep(0.5)
    after = _metrics(server)
    errors = {k: v for k, v in after.items() if k.startswith("qa_http_requests_total") and 'status="5' in k}
    assert not errors, errors
    gone = 'qa_http_requests_total{method="POST",route="/api/ask",status="499"}'
    assert after.get(gone, 0) - before.get(gone, 0) >= 15
    log = server.log()
    assert "Traceback" not in log and "ClientDisconnect" not in log, log[-3000:]


def test_a_disconnect_while_the_body_is_read_is_recorded_as_499(app: Any) -> None:
    """At the ASGI level, without a server: the receive channel reports the client gone."""
    messages: list[dict[str, Any]] = []
    inbox = [{"type": "http.request", "body": b'{"qu', "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/ask", "raw_path": b"/api/ask", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 80),
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")]}
    asyncio.run(app(scope, receive, send))
    assert not messages, messages  # nobody to answer
    text = TestClient(app).get("/metrics").text
    assert 'qa_http_requests_total{method="POST",route="/api/ask",status="499"} 1.0' in text
    assert 'status="500"' not in text


# --------------------------------------------------------------------------- proxy headers


def _statuses_with_forwarded_for(server: Server, values: list[str]) -> list[int]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        return [http.get("/api/faq", headers={"X-Forwarded-For": v}).status_code for v in values]


def test_a_spoofed_forwarded_for_changes_nothing(tmp_path: Path) -> None:
    with running_server(tmp_path, QA_RATE_LIMIT="3/minute") as server:
        statuses = _statuses_with_forwarded_for(server, [f"203.0.113.{i}" for i in range(6)] + ["x", "1.2.3.4, 5.6.7.8"])
    assert statuses == [200] * 3 + [429] * 5, statuses


def test_forwarded_for_is_believed_from_a_trusted_proxy_only(tmp_path: Path) -> None:
    with running_server(tmp_path, QA_RATE_LIMIT="3/minute", QA_TRUSTED_PROXIES="127.0.0.1") as server:
        assert _statuses_with_forwarded_for(server, [f"203.0.113.{i}" for i in range(6)]) == [200] * 6
        assert _statuses_with_forwarded_for(server, ["198.51.100.7"] * 4) == [200] * 3 + [429]


@pytest.mark.parametrize("value", ["10.0.0.0/8", "127.0.0.1,::1", "*", "", " 10.244.0.0/16 , 192.168.1.2 "])
def test_trusted_proxies_accepts_addresses_and_networks(value: str) -> None:
    options = uvicorn_options(ServerSettings(trusted_proxies=value), 20_000)
    assert options["proxy_headers"] is bool(value.strip())
    assert options["forwarded_allow_ips"] == ",".join(v.strip() for v in value.split(",") if v.strip())


@pytest.mark.parametrize("value", ["10.0.0.1/8", "localhost", "*,10.0.0.1", "1.2.3"])
def test_trusted_proxies_refuses_what_uvicorn_would_misread(value: str) -> None:
    with pytest.raises(ValueError):
        ServerSettings(trusted_proxies=value)


# --------------------------------------------------------------------------- request ids and logs


@pytest.mark.parametrize(("given", "kept"), [("abc-123_X", True), ("a" * 64, True), ("a" * 65, False),
                                             ("abc 200 GET /admin/reload", False), ("x\r\ny", False),
                                             ("", False), ("é", False), ("a.b", False)])
def test_a_request_id_is_kept_only_as_a_short_token(given: str, kept: bool) -> None:
    rid = request_id(given)
    assert (rid == given) is kept
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", rid)


def test_log_lines_cannot_be_forged_through_a_header_a_path_or_a_question(server: Server) -> None:
    forged = "2026-01-01 00:00:00,000 INFO server.access: FORGED"
    with httpx.Client(base_url=server.url, timeout=10) as http:
        r = http.get("/healthz", headers={"X-Request-ID": "abc 200 GET /admin/reload"})
        assert r.status_code == 200 and r.headers["x-request-id"] != "abc 200 GET /admin/reload"
        assert re.fullmatch(r"[0-9a-f]{16}", r.headers["x-request-id"])
        assert http.get("/healthz", headers={"X-Request-ID": "trace-42"}).headers["x-request-id"] == "trace-42"
        http.get("/x%0d%0a" + forged.replace(" ", "%20") + "%E2%80%AE")
        http.post("/api/ask", json={"question": "sidecar\n" + forged + "\r\n\u202e\x00"})
    time.sleep(0.3)
    log = server.log()
    for line in log.splitlines():
        assert LOG_LINE.match(line) or line.startswith("  "), line
    assert "FORGED" in log and not any(line.startswith(forged) for line in log.splitlines())
    assert "\\r\\n" + forged in log and "\u202e" not in log


def test_the_formatters_escape_control_and_bidirectional_characters() -> None:
    record = logging.LogRecord("server.access", logging.INFO, __file__, 1, "GET %s", ("/a\r\nb\u202ec\x00\x85",), None)
    text = TextFormatter("%(levelname)s %(message)s").format(record)
    assert text == "INFO GET /a\\r\\nb\\u202ec\\x00\\x85"
    as_json = JsonFormatter().format(record)
    assert "\n" not in as_json and "\u202e" not in as_json
    assert json.loads(as_json)["message"] == "GET /a\r\nb\\u202ec\x00\\x85"
    assert escape_log("plain 原地升级") == "plain 原地升级"
    try:
        raise ValueError("boom\n2026-01-01 00:00:00,000 INFO x: forged")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    lines = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record).splitlines()
    assert LOG_LINE.match(lines[0]) and all(line.startswith("  ") for line in lines[1:]), lines


# --------------------------------------------------------------------------- bidirectional overrides and NUL


BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\x00"]


@pytest.mark.parametrize("char", BIDI)
def test_bidi_overrides_and_nul_are_never_echoed_by_the_api(client: TestClient, char: str) -> None:
    question = f"{char}{Q_CLONESET}{char}exe.txt"
    r = client.post("/api/ask", json={"question": question})
    assert r.status_code == 200
    assert r.json()["question"] == Q_CLONESET + "exe.txt" == as_asked(question)
    assert char not in r.text and f"\\u{ord(char):04x}" not in r.text.lower()


@pytest.mark.parametrize("share", [True, False])
def test_bidi_overrides_and_nul_are_never_echoed_in_slack(client: TestClient, share: bool) -> None:
    r = post_slack(client, ("share " if share else "") + "\u202e" + Q_CLONESET + "\u2066\x00 gnp.exe")
    assert r.status_code == 200
    assert r.json()["response_type"] == ("in_channel" if share else "ephemeral")
    for char in BIDI:
        assert char not in r.text and f"\\u{ord(char):04x}" not in r.text.lower()


def test_the_echo_keeps_line_breaks_and_tabs() -> None:
    assert as_asked("a\tb\nc\r\nd\u202ee\x00f\x1bg") == "a\tb\nc\r\ndefg"


# --------------------------------------------------------------------------- HEAD


def _get_routes(client: TestClient) -> list[str]:
    """Every GET path: the documented ones (an entry's id filled in), the page, the docs, static files."""
    paths = ["/", "/docs", "/openapi.json", "/static/app.js"]
    for path, methods in client.get("/openapi.json").json()["paths"].items():
        if "get" in methods:
            paths.append(path.replace("{entry_id}", client.get("/api/faq").json()[0]["id"]))
    return paths


def test_head_works_wherever_get_does(make_client: Callable[..., TestClient]) -> None:
    client = make_client(admin_token=None)
    paths = _get_routes(client)
    assert {"/", "/healthz", "/readyz", "/metrics", "/api/faq", "/docs", "/openapi.json"} <= set(paths)
    for path in paths:
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code, path
        assert head.content == b"", path
        assert head.headers.get("content-type") == get.headers.get("content-type"), path
        if path not in {"/metrics", "/readyz"}:  # these change between two calls
            assert head.headers.get("content-length") == get.headers.get("content-length"), path
        assert head.headers["x-content-type-options"] == "nosniff"
    assert client.head("/api/ask").status_code == 405  # POST only: HEAD is no more allowed than GET
    assert client.head("/nowhere").status_code == 404


def test_head_on_the_real_server(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for path in ("/", "/healthz", "/readyz", "/api/faq"):
            r = http.head(path)
            assert r.status_code == 200 and r.content == b"", path


# --------------------------------------------------------------------------- failed authentications


def test_failed_admin_tokens_are_limited_per_client(make_client: Callable[..., TestClient]) -> None:
    attacker = make_client(auth_failure_limit="5/minute")
    wrong = {"Authorization": "Bearer guess"}
    statuses = [attacker.post("/admin/reload", headers=wrong).status_code for _ in range(40)]
    assert statuses == [401] * 5 + [429] * 35, statuses
    r = attacker.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert_error(r, 429, "rate_limited")  # no more tries for this client, not even a right one
    assert 1 <= int(r.headers["retry-after"]) <= 60
    # another client with the right token is not slowed
    other = TestClient(attacker.app, client=("198.51.100.9", 4000))
    start = time.perf_counter()
    assert other.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 202
    assert time.perf_counter() - start < 1.0


def test_forged_slack_signatures_are_limited_per_client(make_client: Callable[..., TestClient]) -> None:
    attacker = make_client(auth_failure_limit="5/minute")
    body = slack_form(Q_CLONESET)
    forged = slack_headers(body, secret="not-the-secret")
    statuses = [attacker.post("/slack/command", content=body, headers=forged).status_code for _ in range(20)]
    assert statuses == [401] * 5 + [429] * 15, statuses
    other = TestClient(attacker.app, client=("198.51.100.10", 4000))
    assert post_slack(other, Q_CLONESET).status_code == 200
    assert post_slack(other, Q_CLONESET).json()["response_type"] == "ephemeral"


def test_valid_authentications_spend_nothing(make_client: Callable[..., TestClient]) -> None:
    client = make_client(auth_failure_limit="2/minute")
    for _ in range(10):
        assert post_slack(client, Q_CLONESET).status_code == 200
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 202


# --------------------------------------------------------------------------- the cost of a question


LONG_TYPED = ("We run ~2000 replicas of a stateless API on Deployments. Rollouts take forever, we can't pick "
              "which pods get removed on scale-down, and we'd like a PVC per pod for a local cache. Is CloneSet "
              "the right pick, what changes in our manifests, and how do we roll back if it goes wrong? We also "
              "use HPA and Argo CD.")
PASTED = "\n".join(f"I0312 08:15:{i:02d}.000 event.go:{i}] pod web-x status Running, readiness gate failed"
                   for i in range(24)) + "\nwhy is my pod stuck?"


def test_a_question_costs_what_the_model_reads_of_it() -> None:
    assert question_cost(Q_SIDECAR) == 1
    assert question_cost(LONG_TYPED) == MAX_COST  # read whole: up to about 6 times a short one's encoding
    assert 1500 < len(PASTED) < 2000 and question_cost(PASTED) == 2  # cut to its matter before the model reads it


def test_a_long_question_costs_more_of_the_budget(make_client: Callable[..., TestClient]) -> None:
    client = make_client(rate_limit="8/minute")
    long_question = LONG_TYPED
    assert [client.post("/api/ask", json={"question": long_question}).status_code for _ in range(3)] == [200, 200, 429]
    r = client.post("/api/ask", json={"question": long_question})
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    short = make_client(rate_limit="8/minute")
    assert [short.post("/api/ask", json={"question": Q_SIDECAR}).status_code for _ in range(9)] == [200] * 8 + [429]


def test_a_long_slack_question_costs_more_of_the_users_budget(make_client: Callable[..., TestClient]) -> None:
    client = make_client(rate_limit="8/minute")
    long_question = ("CloneSet 原地升级以后一直卡在 PreparingUpdate，日志里报错 failed to patch pod，"
                     "我们已经检查了 readiness gate 和 lifecycle hook，也看了 kruise-manager 的日志，"
                     "还是不知道为什么，升级到 1.8 以后问题依旧，回滚也没有用，集群里其他工作负载都正常，"
                     "请问应该怎么排查？")
    assert question_cost(long_question) == MAX_COST
    replies = [post_slack(client, long_question).json()["blocks"][0]["text"]["text"] for _ in range(3)]
    assert "Too many questions" not in replies[1] and "Too many questions" in replies[2]


# --------------------------------------------------------------------------- memory


def test_the_process_caps_mallocs_arenas_before_any_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "3")
    assert limit_malloc_arenas() == "MALLOC_ARENA_MAX=3 (from the environment)"
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    done = limit_malloc_arenas()
    assert done.startswith(("malloc arenas capped at 2", "malloc arenas left alone")), done


def test_the_server_logs_its_process_limits(server: Server) -> None:
    head = server.log().split("Uvicorn running", 1)[0]
    assert "malloc arenas capped at 2" in head or "MALLOC_ARENA_MAX=" in head, head
    assert "open files limit" in head


def test_observe_middleware_is_the_outermost_layer(app: Any) -> None:
    """HEAD, request ids and the 499 rely on it seeing every request first."""
    assert app.user_middleware[0].cls is ObserveMiddleware
