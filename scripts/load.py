"""Load test on loopback: N concurrent clients for S seconds against the API or the Slack command.

Starts its own server (rate limit off, a throwaway Slack secret), drives it with a bounded
asyncio client, samples the server's memory each second, and prints errors, latency
percentiles, throughput and memory growth. Exits non-zero when any request failed.

Usage: python scripts/load.py [--seconds 60] [--clients 50] [--target api|slack|both]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
import psutil
from slack_sdk.signature import SignatureVerifier

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.evaluate import read_examples  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(secret: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "QA_PORT": str(port), "QA_HOST": "127.0.0.1", "QA_RATE_LIMIT": "off",
           "QA_SLACK_SIGNING_SECRET": secret, "QA_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "server.main"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not become ready")


async def run(base: str, target: str, questions: list[str], clients: int, seconds: float,
              secret: str, pid: int) -> dict[str, object]:
    verifier = SignatureVerifier(secret)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    memory: list[float] = []
    stop = time.perf_counter() + seconds
    proc = psutil.Process(pid)

    async def sample() -> None:
        while time.perf_counter() < stop:
            memory.append(proc.memory_info().rss / 2**20)
            await asyncio.sleep(1)

    async def client(n: int, http: httpx.AsyncClient) -> None:
        i = n
        while time.perf_counter() < stop:
            q = questions[i % len(questions)]
            i += clients
            t = time.perf_counter()
            try:
                if target == "api":
                    r = await http.post("/api/ask", json={"question": q})
                else:
                    body = urlencode({"command": "/kruise-faq", "text": q, "team_id": f"T{n % 5}",
                                      "user_id": f"U{n}", "channel_id": "C1", "response_url": "http://127.0.0.1/x"})
                    ts = str(int(time.time()))
                    r = await http.post("/slack/command", content=body, headers={
                        "content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": ts,
                        "x-slack-signature": verifier.generate_signature(timestamp=ts, body=body)})
                ok = r.status_code == 200
                key = str(r.status_code)
            except httpx.HTTPError as exc:
                ok, key = False, exc.__class__.__name__
            latencies.append(time.perf_counter() - t)
            if not ok:
                errors[key] = errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as http:
        await asyncio.gather(sample(), *(client(n, http) for n in range(clients)))
    lat = np.asarray(latencies) * 1000
    third = max(1, len(memory) // 3)
    early, late = float(np.mean(memory[:third])), float(np.mean(memory[-third:]))
    return {"requests": len(lat), "errors": errors, "rps": len(lat) / seconds,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)), "max": float(lat.max()),
            "over_2s": int((lat > 2000).sum()), "mem_early": early, "mem_late": late,
            "mem_growth": (late - early) / early}


_seen: dict[str, tuple[float, float, float]] = {}


def server_side(base: str, target: str) -> dict[str, float]:
    """Latency as the server measured it (its Prometheus histogram), for this run only."""
    route = "/api/ask" if target == "api" else "/slack/command"
    text = httpx.get(base + "/metrics", timeout=10).text
    buckets: dict[str, float] = {}
    for row in text.splitlines():
        if row.startswith("qa_http_request_duration_seconds_bucket") and f'route="{route}"' in row:
            le = row.split('le="')[1].split('"')[0]
            buckets[le] = float(row.rsplit(" ", 1)[1])
    total, under_1, under_2_5 = buckets.get("+Inf", 0.0), buckets.get("1.0", 0.0), buckets.get("2.5", 0.0)
    t0, u0, v0 = _seen.get(route, (0.0, 0.0, 0.0))
    _seen[route] = (total, under_1, under_2_5)
    n = max(1.0, total - t0)
    return {"server_under_1s": (under_1 - u0) / n, "server_over_2_5s": int((total - t0) - (under_2_5 - v0))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--target", choices=["api", "slack", "both"], default="both")
    args = ap.parse_args()
    questions = list(dict.fromkeys(x.q for x in read_examples([ROOT / "data" / "eval"])))
    secret = secrets.token_hex(16)
    proc, base = start_server(secret)
    failed = False
    try:
        for target in (["api", "slack"] if args.target == "both" else [args.target]):
            r = asyncio.run(run(base, target, questions, args.clients, args.seconds, secret, proc.pid))
            failed |= bool(r["errors"])
            r.update(server_side(base, target))
            print(f"{target}: {args.clients} clients × {args.seconds:.0f} s: {r['requests']} requests, "
                  f"errors {r['errors'] or 0}, {r['rps']:.1f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                  f"max {r['max']:.1f} ms, over 2 s: {r['over_2s']}, server memory {r['mem_early']:.0f} → "
                  f"{r['mem_late']:.0f} MiB ({r['mem_growth']:+.1%}); inside the server: {r['server_under_1s']:.2%} "
                  f"answered within 1 s, {r['server_over_2_5s']} over 2.5 s")
    finally:
        proc.terminate()
        proc.wait(15)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
