"""Benchmark: the answer path's latency with recording on and off (``POST /api/ask``, real model).

Two servers run side by side (``python -m server.main``, the built index): one with
``QA_RECORD=false``, one recording into a fresh database (SQLite in a temporary folder by default;
``--postgres`` starts a throwaway PostgreSQL with tests/pg.py; ``--database-url`` uses yours).
One client alternates between them in blocks of 40 requests (the same questions to both, the
order swapped every block), so the VM's drift touches both alike while each server's background
work (the writer thread) falls on its own requests. Two paths: distinct questions with the cache
off (the encoder's work, what a new question costs) and one repeated question with the cache on
(a millisecond or two, where recording's share is largest). Prints p50, p90, p99 for each, the
on/off ratio of the p50s and the median of the per-block ratios (the steadiest figure on a busy
machine), then checks that the recording server stored every answer it gave.

Usage: python scripts/bench_records.py [--rounds N] [--repeats N] [--postgres | --database-url URL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.evaluate import read_examples  # noqa: E402

BLOCK = 40  # requests in a row to one server, then the same to the other (the order alternates)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(env_extra: dict[str, str], cache: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "QA_PORT": str(port), "QA_LOG_LEVEL": "warning", "QA_RATE_LIMIT": "off",
           "QA_CACHE_SIZE": str(cache), **env_extra}
    proc = subprocess.Popen([sys.executable, "-m", "server.main"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-800:] if proc.stderr else ''}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start")


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return (f"p50 {np.percentile(a, 50):7.3f} ms  p90 {np.percentile(a, 90):7.3f} ms  "
            f"p99 {np.percentile(a, 99):7.3f} ms  (n={len(ms)})")


def measure(label: str, cache: int, asks: list[str], rounds: int, record_env: dict[str, str]) -> int:
    """Returns how many answers the recording server gave."""
    off, base_off = start({"QA_RECORD": "false"}, cache)
    on, base_on = start({"QA_RECORD": "true", **record_env}, cache)
    given = 0
    try:
        times: dict[str, list[float]] = {"off": [], "on": []}
        with httpx.Client(base_url=base_off, timeout=30) as c_off, httpx.Client(base_url=base_on, timeout=30) as c_on:
            clients = {"off": c_off, "on": c_on}
            for q in asks[:10]:  # warm-up, both
                for c in clients.values():
                    c.post("/api/ask", json={"question": q})
            given += 10
            block_ratios = []
            for r in range(rounds):
                for b in range(0, len(asks), BLOCK):
                    block = asks[b:b + BLOCK]
                    order = ("off", "on") if (r + b // BLOCK) % 2 == 0 else ("on", "off")
                    medians = {}
                    for name in order:
                        spent = []
                        for q in block:
                            t = time.perf_counter()
                            resp = clients[name].post("/api/ask", json={"question": q})
                            spent.append((time.perf_counter() - t) * 1000)
                            assert resp.status_code == 200, resp.text
                        times[name] += spent
                        medians[name] = float(np.median(spent))
                    block_ratios.append(medians["on"] / medians["off"])
                given += len(asks)
        p50_off, p50_on = (float(np.percentile(times[k], 50)) for k in ("off", "on"))
        print(f"[{label}] recording off: {stats(times['off'])}")
        print(f"[{label}] recording on:  {stats(times['on'])}")
        print(f"[{label}] p50 on / off = {p50_on / p50_off:.3f} ({(p50_on / p50_off - 1) * 100:+.1f}%)")
        print(f"[{label}] median over {len(block_ratios)} block pairs of (block p50 on / block p50 off): "
              f"{np.median(block_ratios):.3f}")
    finally:
        for p in (off, on):
            p.terminate()
            p.wait(30)
    return given


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="passes over the distinct questions (cache off)")
    ap.add_argument("--repeats", type=int, default=2000, help="requests of the repeated question (cache on)")
    ap.add_argument("--database-url", help="record into this database (default: SQLite in a temporary folder)")
    ap.add_argument("--postgres", action="store_true", help="record into a throwaway PostgreSQL (tests/pg.py)")
    args = ap.parse_args()
    questions = list(dict.fromkeys(x.q for x in read_examples([ROOT / "data" / "eval"])))
    pg = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            sys.path.insert(0, str(ROOT / "tests"))
            from pg import PostgresServer

            pg = PostgresServer()
            pg.start()
            url = pg.create_database()
        else:
            url = args.database_url or f"sqlite:///{Path(tmp) / 'records.sqlite3'}"
        try:
            from qa.records import db

            print(f"records database: {db.describe(url)}")
            print(f"questions: {len(questions)} distinct, from data/eval\n")
            n1 = measure("no cache, distinct questions", 0, questions, args.rounds, {"QA_DATABASE_URL": url})
            n2 = measure("cache on, repeated question", 1024, [questions[0]] * args.repeats, 1,
                         {"QA_DATABASE_URL": url})
            from sqlalchemy import func, select

            from qa.records.schema import questions as table

            engine = db.make_engine(url)
            with engine.connect() as conn:
                stored = conn.execute(select(func.count()).select_from(table)).scalar()
            engine.dispose()
            print(f"\nanswers given by the recording servers: {n1 + n2}; records stored: {stored}")
        finally:
            if pg is not None:
                pg.cleanup()


if __name__ == "__main__":
    main()
