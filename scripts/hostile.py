"""Hostile clients against a running server: what each one does to it, in times, statuses and memory.

Reproduces the behaviours of the hardening issue and prints what happened, for the figures the
tests cannot bound (real model, minutes of traffic, memory):

  headers    60/150/300 MiB headers: time to refusal, server memory, a normal client's p50 meanwhile
  slow       1,100 connections that never finish their request line, headers or body, then a
             normal request; when the server closes them
  long       p50 of short against 2,000-character questions (first-seen, so encoded); 4 clients
             sending long questions at the rate limit while another asks short ones
  hangup     Content-Length: 100 with 3 bytes, then hang-up: statuses in /metrics, tracebacks
  proxy      X-Forwarded-For with a new value per request from one host: rate-limit buckets
  ids        a forged X-Request-ID and a CR/LF in the path: what comes back, what the log says
  bidi       U+202E and NUL in a question: what the API and the Slack reply echo
  head       HEAD on / and /healthz
  auth       1,000 wrong admin tokens and 1,000 forged Slack signatures
  reloads    60 reloads under traffic: resident memory start → end

Usage:
  python scripts/hostile.py --start [--arenas N] [--only headers,slow,...]   # starts its own server
  python scripts/hostile.py --url http://127.0.0.1:8000 --pid PID --admin-token T --slack-secret S

``--start`` runs ``python -m server.main`` with the real model, the default limits, a throwaway
admin token and Slack secret, and its log in a temporary file. ``--arenas 16`` starts it with
``MALLOC_ARENA_MAX=16`` (glibc's default on 2 cores) to see the reloads without the cap.
Clients use other loopback addresses (127.0.0.2, …) where a scenario needs several clients.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import httpx
import psutil
from slack_sdk.signature import SignatureVerifier

ROOT = Path(__file__).resolve().parent.parent
SHORT = ["原地升级能改 CPU 吗？", "pod stuck in PreparingUpdate", "How do I uninstall Kruise?", "sidecar 注入失败",
         "CloneSet 和 Deployment 的区别", "kruise-manager OOM", "How to hot upgrade a sidecar?", "webhook 超时"]
LOG_LINE = ("2024-03-12T08:15:{s:02d}.118Z I0312 08:15:{s:02d}.118234 1 event.go:{n}] pod web-7d9f8b6c5-x7k2p "
            "in namespace default status Running on node 10.1.2.{n} resourceVersion={v}")


def long_question(n: int) -> str:
    """A 2,000-character pasted log around one error line, different for each ``n`` (never cached)."""
    lines = [LOG_LINE.format(s=i % 60, n=n + i, v=48213000 + n * 100 + i) for i in range(14)]
    lines.insert(7, f'E0312 08:15:07.118 reflector.go:138] failed to list *v1alpha1.SidecarSet in {word(n)}: '
                    'sidecarsets.apps.kruise.io is forbidden: User "system:serviceaccount:kruise-system:kruise-manager"'
                    ' cannot list')
    return ("\n".join(lines) + f"\nwhy is this happening on {word(n)}?")[-2000:]


def word(n: int) -> str:
    """A made-up word for ``n`` (numbers are dropped from long questions as noise; words are not)."""
    out = ""
    while True:
        n, r = divmod(n, 26)
        out += "bcdfghjklmnpqrstvwxz"[r % 20] + "aeiou"[r % 5]
        if not n:
            return out


def short_question(n: int) -> str:
    return f"{SHORT[n % len(SHORT)]} {word(n)}"


@dataclass
class Target:
    url: str
    pid: int | None
    admin_token: str | None
    slack_secret: str | None
    log_path: Path | None = None
    counter: list[int] = field(default_factory=lambda: [int(time.time() * 1000) % 10**9])

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 80

    def rss(self) -> float | None:
        if self.pid is None:
            return None
        try:
            return psutil.Process(self.pid).memory_info().rss / 2**20
        except psutil.Error:
            return None

    def next(self) -> int:
        self.counter[0] += 1
        return self.counter[0]


def mib(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f} MiB"


def ms(v: float) -> str:
    return f"{v * 1000:.1f} ms"


def client(t: Target, source: str | None = None, timeout: float = 30) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source) if source else None
    return httpx.AsyncClient(base_url=t.url, timeout=timeout, transport=transport)


async def timed(coro: Awaitable[Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = await coro
    return time.perf_counter() - start, result


async def p50_short(t: Target, n: int, source: str, pause: float = 0.0,
                    stop: Callable[[], bool] = lambda: False) -> list[float]:
    """Times of up to ``n`` first-seen short questions from one client (one connection), until ``stop()``."""
    times = []
    async with client(t, source) as http:
        for _ in range(n):
            if stop():
                break
            took, r = await timed(http.post("/api/ask", json={"question": short_question(t.next())}))
            if r.status_code == 200:
                times.append(took)
            await asyncio.sleep(pause)
    return times


# --------------------------------------------------------------------------- scenarios


def raw_send(t: Target, head: bytes, body_mib: int) -> tuple[float, str]:
    """Sends ``head`` then ``body_mib`` MiB of header value; the time until the server refuses or answers."""
    s = socket.create_connection((t.host, t.port), timeout=300)
    start = time.perf_counter()
    chunk = b"a" * 2**20
    outcome = "sent all"
    try:
        s.sendall(head)
        for _ in range(body_mib):
            s.sendall(chunk)
        s.sendall(b"\r\n\r\n")
    except OSError as exc:
        outcome = f"cut off ({exc.__class__.__name__})"
    try:
        s.settimeout(300)
        first = s.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
        outcome += f", got {first or 'EOF'}"
    except OSError as exc:
        outcome += f", {exc.__class__.__name__}"
    took = time.perf_counter() - start
    s.close()
    return took, outcome


async def scenario_headers(t: Target, sizes: list[int]) -> None:
    base = await p50_short(t, 20, "127.0.0.2")
    print(f"  normal client alone: p50 {ms(statistics.median(base))} over {len(base)} first-seen questions")
    for k, size in enumerate(sizes):
        rss0 = t.rss()
        done = asyncio.Event()
        task = asyncio.create_task(p50_short(t, 100, f"127.0.2.{k + 1}", pause=0.02, stop=done.is_set))
        took, outcome = await asyncio.to_thread(raw_send, t, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", size)
        await asyncio.sleep(max(0.0, 2.0 - took))  # the client keeps asking a little after
        done.set()
        during = await task
        print(f"  {size} MiB header: {outcome} after {took:.2f} s; server memory {mib(rss0)} → {mib(t.rss())}; "
              f"normal client meanwhile p50 {ms(statistics.median(during)) if during else '-'} ({len(during)} asked)")


PARTS = {"nothing": b"", "request line": b"POST /api/ask HT",
         "headers": b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
         "body": b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"}


async def scenario_slow(t: Target, n: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000) if hard > 0 else n + 1000, hard))
    kinds = list(PARTS)
    socks: list[tuple[str, socket.socket]] = []
    failed = 0
    start = time.perf_counter()
    for i in range(n):
        try:
            s = socket.create_connection((t.host, t.port), timeout=5)
            if PARTS[kinds[i % 4]]:
                s.sendall(PARTS[kinds[i % 4]])
            socks.append((kinds[i % 4], s))
        except OSError:
            failed += 1
    opened = time.perf_counter() - start
    print(f"  {len(socks)} half-open connections opened in {opened:.1f} s ({failed} refused); "
          f"server memory {mib(t.rss())}")
    async with client(t, "127.0.0.3") as http:
        try:
            took, r = await timed(http.post("/api/ask", json={"question": short_question(t.next())}))
            print(f"  a normal request meanwhile: {r.status_code} in {ms(took)}")
        except httpx.HTTPError as exc:
            print(f"  a normal request meanwhile: {exc.__class__.__name__}")
    closed: Counter[str] = Counter()
    when: list[float] = []
    for s in [s for _, s in socks]:
        s.setblocking(False)
    deadline = time.perf_counter() + 60
    pending = {s: k for k, s in socks}
    while pending and time.perf_counter() < deadline:
        for s in list(pending):
            try:
                data = s.recv(100)
            except BlockingIOError:
                continue
            except OSError:
                data = b"RESET"
            closed[data.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"] += 1
            when.append(time.perf_counter() - start)
            del pending[s]
            s.close()
        await asyncio.sleep(0.2)
    for s in pending:
        s.close()
    print(f"  closed by the server: {dict(closed)}, the last {max(when, default=0):.1f} s after the first was opened; "
          f"still open after 60 s: {len(pending)}")


async def scenario_long(t: Target, seconds: float) -> None:
    async with client(t, "127.0.0.4") as http:
        short, long = [], []
        for _ in range(12):
            took, _ = await timed(http.post("/api/ask", json={"question": short_question(t.next())}))
            short.append(took)
            took, r = await timed(http.post("/api/ask", json={"question": long_question(t.next())}))
            if r.status_code == 200:
                long.append(took)
    if long:
        print(f"  one client: short first-seen p50 {ms(statistics.median(short))}, 2,000-character p50 "
              f"{ms(statistics.median(long))} ({statistics.median(long) / statistics.median(short):.1f}×)")
    # each client below has a loopback address of its own, so a budget of its own
    normal = await p50_short(t, int(seconds / 0.6), "127.0.0.5", pause=0.6)
    sent: Counter[int] = Counter()
    stop = time.perf_counter() + seconds

    def over() -> bool:
        return time.perf_counter() > stop

    async def attacker(source: str) -> None:
        """Long questions as fast as the limit lets one client ask them (120 a minute, 2 each: one a second)."""
        async with client(t, source) as http:
            while time.perf_counter() < stop:
                start = time.perf_counter()
                r = await http.post("/api/ask", json={"question": long_question(t.next())})
                sent[r.status_code] += 1
                await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - start)))

    attackers = [asyncio.create_task(attacker(f"127.0.1.{i}")) for i in range(1, 5)]
    during = await p50_short(t, int(seconds / 0.6), "127.0.0.6", pause=0.6, stop=over)
    await asyncio.gather(*attackers)
    print(f"  another client asking short questions: p50 {ms(statistics.median(normal))} alone, "
          f"{ms(statistics.median(during))} while 4 clients sent 2,000-character questions at the limit "
          f"({statistics.median(during) / statistics.median(normal):.2f}×); their statuses {dict(sent)}")


async def scenario_hangup(t: Target, n: int) -> None:
    def metrics() -> dict[str, float]:
        out = {}
        for row in httpx.get(t.url + "/metrics", timeout=10).text.splitlines():
            if row.startswith("qa_http_requests_total{"):
                name, _, v = row.rpartition(" ")
                out[name] = float(v)
        return out

    before = metrics()
    for _ in range(n):
        s = socket.create_connection((t.host, t.port), timeout=5)
        s.sendall(b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"q")
        time.sleep(0.02)
        s.close()
    await asyncio.sleep(1)
    after = metrics()
    delta = {k.split("{", 1)[1].rstrip("}"): v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    tracebacks = t.log_path.read_text(errors="replace").count("Traceback") if t.log_path else "?"
    print(f"  {n} hang-ups → /metrics changes: {delta}; tracebacks in the log: {tracebacks}")


async def scenario_proxy(t: Target) -> None:
    statuses = []
    async with client(t, "127.0.0.7") as http:
        for i in range(160):
            r = await http.get("/api/faq", headers={"X-Forwarded-For": f"203.0.113.{i % 250}"})
            statuses.append(r.status_code)
    print(f"  160 requests from one host, each with a new X-Forwarded-For: {dict(Counter(statuses))} "
          "(one bucket: the limit applies after its 120)")


async def scenario_ids(t: Target) -> None:
    async with client(t) as http:
        r = await http.get("/healthz", headers={"X-Request-ID": "abc 200 GET /admin/reload"})
        r2 = await http.get("/healthz", headers={"X-Request-ID": "trace-42"})
        await http.get("/x%0d%0a2026-01-01%2000:00:00,000%20INFO%20server.access:%20FORGED")
    print(f"  X-Request-ID 'abc 200 GET /admin/reload' → {r.headers['x-request-id']!r}; 'trace-42' → "
          f"{r2.headers['x-request-id']!r}")
    if t.log_path:
        await asyncio.sleep(0.3)
        lines = [line for line in t.log_path.read_text(errors="replace").splitlines() if "FORGED" in line]
        print(f"  the log line of a path with CR/LF: {lines[-1] if lines else '?'}")


async def scenario_bidi(t: Target) -> None:
    q = "\u202eCloneSet 和 Deployment 有什么区别？\x00 gnp.exe"
    async with client(t) as http:
        r = await http.post("/api/ask", json={"question": q})
        echoed = r.json().get("question")
        print(f"  API: asked {q!r}, echoed {echoed!r}")
        if t.slack_secret:
            body = urlencode({"command": "/kruise-faq", "text": "share " + q, "team_id": "T1", "user_id": "U1",
                              "channel_id": "C1"})
            ts = str(int(time.time()))
            sig = SignatureVerifier(t.slack_secret).generate_signature(timestamp=ts, body=body) or ""
            s = await http.post("/slack/command", content=body, headers={
                "content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": ts,
                "x-slack-signature": sig})
            bad = [c for c in ("\u202e", "\x00") if c in s.text or f"\\u{ord(c):04x}" in s.text.lower()]
            print(f"  Slack (share): {s.status_code}, {s.json().get('response_type')}, "
                  f"override or NUL in the reply: {bad or 'none'}")


async def scenario_head(t: Target) -> None:
    async with client(t) as http:
        out = {p: (await http.head(p)).status_code for p in ("/", "/healthz", "/readyz", "/api/faq", "/docs")}
    print(f"  HEAD: {out}")


async def scenario_auth(t: Target, n: int) -> None:
    async def attempts(http: httpx.AsyncClient, send: Callable[[int], Awaitable[httpx.Response]]) -> str:
        statuses: Counter[int] = Counter()
        start = time.perf_counter()
        for i in range(n):
            statuses[(await send(i)).status_code] += 1
        return f"{dict(statuses)} in {time.perf_counter() - start:.1f} s"

    async with client(t, "127.0.0.8") as http:
        if t.admin_token:
            result = await attempts(http, lambda i: http.post("/admin/reload",
                                                              headers={"Authorization": f"Bearer wrong-{i}"}))
            print(f"  {n} wrong admin tokens, one after another: {result}")
    async with client(t, "127.0.0.12") as http:  # another client: a budget of its own
        if t.slack_secret:
            body = urlencode({"command": "/kruise-faq", "text": "x", "team_id": "T1", "user_id": "U1"})
            result = await attempts(http, lambda i: http.post("/slack/command", content=body, headers={
                "content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": str(int(time.time())),
                "x-slack-signature": f"v0={secrets.token_hex(32)}"}))
            print(f"  {n} forged Slack signatures: {result}")
    if t.admin_token:
        async with client(t, "127.0.0.9") as other:
            took, r = await timed(other.post("/admin/reload", headers={"Authorization": f"Bearer {t.admin_token}"}))
        print(f"  then the right token from another client: {r.status_code} in {ms(took)}")


async def scenario_reloads(t: Target, n: int) -> None:
    if not t.admin_token:
        print("  needs --admin-token")
        return
    samples: list[float] = []
    stop = False

    async def traffic() -> None:
        async with client(t, "127.0.0.10") as http:
            i = 0
            while not stop:
                q = short_question(t.next()) if i % 2 else SHORT[i % len(SHORT)]
                with contextlib.suppress(httpx.HTTPError):
                    await http.post("/api/ask", json={"question": q})
                i += 1
                await asyncio.sleep(0.02)

    start_rss = t.rss()
    tasks = [asyncio.create_task(traffic()) for _ in range(4)]
    async with client(t, "127.0.0.11", timeout=300) as http:
        for _ in range(n):
            r = await http.post("/admin/reload?wait=true", headers={"Authorization": f"Bearer {t.admin_token}"})
            if r.status_code != 200:
                print(f"  reload: {r.status_code} {r.text[:200]}")
            if (v := t.rss()) is not None:
                samples.append(v)
    stop = True
    await asyncio.gather(*tasks)
    end = t.rss()
    marks = [1, 2, 5, 10, 20, 30, 40, 50, 60]
    path = ", ".join(f"{i}: {samples[i - 1]:.0f}" for i in marks if i <= len(samples))
    print(f"  {n} reloads under traffic: resident {mib(start_rss)} → {mib(end)} "
          f"(peak {mib(max(samples) if samples else None)}; ×{(end or 0) / (start_rss or 1):.2f}); "
          f"after reload {path} MiB")


# --------------------------------------------------------------------------- the server


@contextlib.contextmanager
def own_server(arenas: int | None, extra_env: dict[str, str]) -> Iterator[Target]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token, secret = secrets.token_hex(16), secrets.token_hex(16)
    env = {**os.environ, "QA_PORT": str(port), "QA_HOST": "127.0.0.1", "QA_ADMIN_TOKEN": token,
           "QA_SLACK_SIGNING_SECRET": secret, "QA_RECORD": "false", **extra_env}
    if arenas:
        env["MALLOC_ARENA_MAX"] = str(arenas)
    log = Path(tempfile.mkstemp(prefix="qa-hostile-", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server.main"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None:
                raise SystemExit(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        print(f"server pid {proc.pid} on {url}, log {log}, resident {mib(rss)}")
        yield Target(url, proc.pid, token, secret, log)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        if proc.poll() is None:
            proc.kill()


SCENARIOS = ["head", "ids", "bidi", "hangup", "proxy", "auth", "headers", "slow", "long", "reloads"]


async def run(t: Target, only: list[str], args: argparse.Namespace) -> None:
    table: dict[str, Callable[[], Awaitable[None]]] = {
        "headers": lambda: scenario_headers(t, args.header_mib), "slow": lambda: scenario_slow(t, args.half_open),
        "long": lambda: scenario_long(t, args.seconds), "hangup": lambda: scenario_hangup(t, 50),
        "proxy": lambda: scenario_proxy(t), "ids": lambda: scenario_ids(t), "bidi": lambda: scenario_bidi(t),
        "head": lambda: scenario_head(t), "auth": lambda: scenario_auth(t, 1000),
        "reloads": lambda: scenario_reloads(t, args.reloads)}
    for name in only:
        print(f"[{name}]", flush=True)
        start = time.perf_counter()
        await table[name]()
        print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--pid", type=int, help="the server's process id (memory figures)")
    ap.add_argument("--admin-token")
    ap.add_argument("--slack-secret")
    ap.add_argument("--start", action="store_true", help="start a server of its own (real model)")
    ap.add_argument("--arenas", type=int, help="with --start: MALLOC_ARENA_MAX for the server")
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="with --start: more environment")
    ap.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated, of {','.join(SCENARIOS)}")
    ap.add_argument("--header-mib", type=lambda v: [int(x) for x in v.split(",")], default=[60, 150, 300])
    ap.add_argument("--half-open", type=int, default=1100)
    ap.add_argument("--seconds", type=float, default=30, help="length of the long-question run")
    ap.add_argument("--reloads", type=int, default=60)
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.start:
        extra = dict(kv.split("=", 1) for kv in args.env)
        with own_server(args.arenas, extra) as t:
            asyncio.run(run(t, only, args))
    else:
        asyncio.run(run(Target(args.url, args.pid, args.admin_token, args.slack_secret), only, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
