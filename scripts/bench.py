"""Benchmark: index build, start-up, in-process latency, HTTP latency and throughput, memory.

Prints the figures the README quotes. Not a test: nothing here passes or fails.

Usage: python scripts/bench.py [--rounds N] [--skip-http]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.encoders import load_encoder  # noqa: E402
from qa.evaluate import read_examples  # noqa: E402
from qa.search import Engine  # noqa: E402
from qa.settings import Settings  # noqa: E402


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def line(name: str, values_ms: list[float]) -> str:
    return (f"{name:<44} p50 {pct(values_ms, 50):7.2f} ms   p99 {pct(values_ms, 99):7.2f} ms   "
            f"mean {statistics.fmean(values_ms):7.2f} ms   (n={len(values_ms)})")


def machine() -> str:
    cpu = "?"
    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}")


def in_process(questions: list[str], rounds: int) -> None:
    s = Settings()
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t = time.perf_counter()
    encoder = load_encoder(s.model)
    load_model = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        fresh = s.model_copy(update={"index_dir": Path(tmp), "cache_size": 0})
        t = time.perf_counter()
        engine = Engine.from_settings(fresh, encoder=encoder)
        build = time.perf_counter() - t
        t = time.perf_counter()
        engine = Engine.from_settings(fresh, encoder=encoder)
        reload_ = time.perf_counter() - t
    print(f"model load                                   {load_model * 1000:8.1f} ms")
    print(f"index build ({len(engine.dense)} vectors, {len(engine.kb.entries)} entries)   {build * 1000:8.1f} ms "
          f"(parse + encode + FAISS + save)")
    print(f"engine open from a built index               {reload_ * 1000:8.1f} ms")
    for q in questions[:10]:  # warm-up
        engine.ask(q)
    enc, ask = [], []
    for _ in range(rounds):
        for q in questions:
            t = time.perf_counter()
            engine.encoder.encode([q], "query")
            enc.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            engine.ask(q)
            ask.append((time.perf_counter() - t) * 1000)
    print(line("bare query encoding (encoder only)", enc))
    print(line("engine.ask, no cache (encode + search)", ask))
    overhead = pct(ask, 50) - pct(enc, 50)
    print(f"engine's own work at p50: {overhead:.2f} ms = {overhead / pct(enc, 50):.1%} of one encoding")
    cached = Engine(engine.kb, engine.encoder, engine.dense, cache_size=1024)
    cached.ask(questions[0])
    hits = []
    for _ in range(1000):
        t = time.perf_counter()
        cached.ask(questions[0])
        hits.append((time.perf_counter() - t) * 1000)
    print(line("repeated question (cache hit)", hits))
    rss = proc.memory_info().rss
    print(f"resident memory: {rss / 2**20:.0f} MiB (+{(rss - rss0) / 2**20:.0f} MiB "
          f"for model, index and jieba)")
    try:
        from qa.encoders import SentenceTransformerEncoder

        st = SentenceTransformerEncoder("all-MiniLM-L6-v2")
        for q in questions[:10]:
            st.encode([q], "query")
        ref = []
        for q in questions:
            t = time.perf_counter()
            st.encode([q], "query")
            ref.append((time.perf_counter() - t) * 1000)
        print(line("reference: all-MiniLM-L6-v2 via sentence-transformers", ref))
    except Exception as exc:  # the reference is optional
        print(f"reference model unavailable: {exc}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def batched(questions: list[str]) -> None:
    """The server's path in-process: every encoding on one worker thread, concurrent ones batched.

    Runs in a fresh process: an OpenMP engine that has been called from several threads keeps a
    thread team per caller and slows down, which would spoil the other figures.
    """
    import concurrent.futures as futures

    from server.batching import BatchingEncoder

    s = Settings(cache_size=0)
    engine = Engine.from_settings(s, encoder=BatchingEncoder(load_encoder(s.model)))
    for q in questions[:10]:
        engine.ask(q)
    t = time.perf_counter()
    for q in questions:
        engine.ask(q)
    seq_rate = len(questions) / (time.perf_counter() - t)
    t = time.perf_counter()
    with futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(engine.ask, questions))
    par_rate = len(questions) / (time.perf_counter() - t)
    print(f"engine.ask via the batching encoder, distinct questions: 1 thread {seq_rate:.1f}/s, "
          f"8 threads {par_rate:.1f}/s ({par_rate / seq_rate:.2f}x)")


def http(questions: list[str]) -> None:
    port = free_port()
    env = {**os.environ, "QA_PORT": str(port), "QA_LOG_LEVEL": "warning", "QA_RATE_LIMIT": "off",
           "QA_STATE_DIR": tempfile.mkdtemp(prefix="qa-bench-state-")}  # records on, out of the repository
    for cache, label in ((0, "no cache"), (1024, "cache on")):
        env["QA_CACHE_SIZE"] = str(cache)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "server.main"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=10) as c:
                while True:
                    try:
                        if c.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if proc.poll() is not None:
                        raise SystemExit(f"server exited: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
                    time.sleep(0.05)
                ready = time.perf_counter() - t0
                print(f"[{label}] start-up to ready (process start → /readyz 200, built index): {ready:.2f} s")
                rss = psutil.Process(proc.pid).memory_info().rss / 2**20
                for q in questions[:10]:
                    c.post("/api/ask", json={"question": q})
                if cache == 0:
                    single = []
                    for q in questions:
                        t = time.perf_counter()
                        r = c.post("/api/ask", json={"question": q})
                        single.append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200, r.text
                    print(line("[no cache] POST /api/ask, 1 client", single))
                else:
                    rep = []
                    for _ in range(500):
                        t = time.perf_counter()
                        c.post("/api/ask", json={"question": questions[0]})
                        rep.append((time.perf_counter() - t) * 1000)
                    print(line("[cache on] POST /api/ask, repeated question", rep))
            n = len(questions) * (2 if cache == 0 else 1)
            qs = (questions * 3)[:n]

            def worker(chunk: list[str], base: str = base) -> int:
                with httpx.Client(base_url=base, timeout=10) as cl:
                    return sum(cl.post("/api/ask", json={"question": q}).status_code == 200 for q in chunk)

            t = time.perf_counter()
            with cf.ThreadPoolExecutor(8) as pool:
                ok = sum(pool.map(worker, [qs[i::8] for i in range(8)]))
            elapsed = time.perf_counter() - t
            print(f"[{label}] 8 concurrent clients: {ok}/{n} ok, {n / elapsed:.1f} requests/s")
            print(f"[{label}] server resident memory after warm-up: {rss:.0f} MiB")
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3, help="passes over the question set in-process")
    ap.add_argument("--skip-http", action="store_true", help="in-process figures only")
    ap.add_argument("--batched-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    questions = list(dict.fromkeys(x.q for x in read_examples([ROOT / "data" / "eval"])))
    if args.batched_only:
        batched(questions)
        return
    print(f"machine: {machine()}")
    print(f"questions: {len(questions)} distinct, from data/eval\n")
    in_process(questions, args.rounds)
    sys.stdout.flush()
    subprocess.run([sys.executable, __file__, "--batched-only"], check=False, stderr=subprocess.DEVNULL)
    if not args.skip_http:
        print()
        http(questions)


if __name__ == "__main__":
    main()
