"""Several replicas sharing one Redis: real ``qa serve`` processes and a real ``redis-server``, on loopback.

Each replica is the real entry point with the fake encoder (``QA_MODEL=hash``) over the tiny FAQ
(server_test_support), its own index folder, and the shared settings of the ``ha`` overlay:
``QA_RATE_LIMIT_STORAGE`` (Redis db 0) and ``QA_CACHE_URL`` (db 1). The test client names itself
with ``X-Forwarded-For`` (the replicas trust 127.0.0.1 as a proxy), so each test counts against
rate limits of its own.

What is shown: a limit of N a minute holds across the replicas (N in all, not N per replica), cost
included; an answer computed by one replica is a shared-cache hit on another (``/metrics``:
``qa_answer_cache_lookups_total{result="shared_hit"}``); a reload on one replica reaches the others,
and data with warnings reaches none; with Redis killed or hung every replica keeps answering (local
cache and limits), says so on ``/readyz`` and ``/metrics``, and uses Redis again once it is back;
killing a replica loses no request that another can serve (the client retries a connection
error on the next replica, as a Service would). Also the pieces in process: the limit store's
choice, fallback and key spaces.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis_support import RedisServer, free_port
from server_test_support import (
    ADMIN_TOKEN,
    CLONESET_ANSWER_NEW,
    CLONESET_ANSWER_OLD,
    Q_CLONESET,
    Q_INPLACE,
    Q_SIDECAR,
    Q_UNINSTALL,
    Q_WEBHOOK,
    assert_answer_contract,
    faq_markdown,
    write_data,
)

from server.ratelimit import AuthGuard, LimitStore, RateLimiter, question_cost
from server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SYNC_INTERVAL = 0.3  # the replicas' monitor tick in these tests (the default is 2 s)
LIMIT = 12  # requests a minute per client in the shared cluster
LONG_QUESTION = (Q_CLONESET + " " + "I upgraded the controller and now every rollout waits forever, "
                 "what should I check first? " * 3)
UNCLOSED_FENCE = "\n#### **Q**：新问题：如何查看日志？\n\n**A**：运行：\n\n```sh\nkubectl logs -n kruise-system\n"


def qa_serve() -> list[str]:
    """The ``qa serve`` command of this virtualenv."""
    script = Path(sys.executable).parent / "qa"
    return [str(script), "serve"] if script.exists() else [sys.executable, "-m", "server.main"]


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Cluster:
    """N replicas of ``qa serve`` sharing one Redis and one data folder."""

    root: Path
    redis: RedisServer
    data_dir: Path
    env: dict[str, str]
    replicas: list[Replica] = field(default_factory=list)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def start(self, n: int, timeout: float = 60.0) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        for i in range(n):
            port = free_port()
            env = {**base, "QA_MODEL": "hash", "QA_DATA_DIR": str(self.data_dir),
                   "QA_INDEX_DIR": str(self.root / f"index-{i}"), "QA_STATE_DIR": str(self.root / f"state-{i}"),
                   "QA_HOST": "127.0.0.1", "QA_PORT": str(port), "QA_RECORD": "false", "QA_THRESHOLD": "0.3",
                   "QA_ADMIN_TOKEN": ADMIN_TOKEN, "QA_TRUSTED_PROXIES": "127.0.0.1", "QA_LOG_LEVEL": "info",
                   "QA_RATE_LIMIT_STORAGE": self.redis.url(0), "QA_CACHE_URL": self.redis.url(1),
                   "QA_SYNC_INTERVAL": str(SYNC_INTERVAL), **self.env}
            log = self.root / f"replica-{i}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(qa_serve(), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            self.replicas.append(Replica(f"r{i}", port, proc, log))
        deadline = time.monotonic() + timeout
        for r in self.replicas:
            while True:
                try:
                    if self.http.get(r.url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if not r.alive() or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"replica {r.name} did not start:\n{r.log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        for r in self.replicas:
            if r.alive():
                r.proc.send_signal(signal.SIGTERM)
        for r in self.replicas:
            try:
                r.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait(timeout=5)
        self.http.close()

    def logs(self) -> str:
        return "\n".join(f"--- {r.name}\n{r.log.read_text(errors='replace')}" for r in self.replicas)

    # -- requests -------------------------------------------------------------------------------

    def ask(self, r: Replica, question: str, client: str, top_k: int = 3) -> httpx.Response:
        return self.http.post(r.url + "/api/ask", json={"question": question, "top_k": top_k},
                              headers={"X-Forwarded-For": client})

    def ready(self, r: Replica) -> dict[str, Any]:
        response = self.http.get(r.url + "/readyz")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def metric(self, r: Replica, name: str, **labels: str) -> float:
        """One sample of the replica's /metrics (0 when it is absent)."""
        text = self.http.get(r.url + "/metrics").text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
        found = re.search(pattern, text, re.M)
        return float(found.group(1)) if found else 0.0

    def lookups(self, r: Replica) -> dict[str, float]:
        return {result: self.metric(r, "qa_answer_cache_lookups_total", result=result)
                for result in ("local_hit", "shared_hit", "miss")}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Polls ``check`` until it holds; returns the seconds it took (fails the test after ``timeout``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def assert_clean_logs(cluster: Cluster) -> None:
    logs = cluster.logs()
    assert "Traceback" not in logs and " 500 " not in logs, logs[-5000:]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Starts a Redis and N replicas of this test's own (stopped at the end)."""
    made: list[tuple[Cluster, RedisServer]] = []

    def make(n: int, **env: str) -> Cluster:
        redis = RedisServer()
        redis.start()
        cluster = Cluster(tmp_path, redis, write_data(tmp_path / "data"), env)
        made.append((cluster, redis))
        cluster.start(n)
        return cluster

    yield make
    for cluster, redis in made:
        cluster.stop()
        redis.cleanup()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three replicas and a Redis, shared by the tests that break nothing (each uses clients of its own)."""
    root = tmp_path_factory.mktemp("replicas")
    redis = RedisServer()
    redis.start()
    c = Cluster(root, redis, write_data(root / "data"), {"QA_RATE_LIMIT": f"{LIMIT}/minute"})
    try:
        c.start(3)
        yield c
        assert_clean_logs(c)
    finally:
        c.stop()
        redis.cleanup()


# -- limits, cache and reloads across the replicas --------------------------------------------------

def test_a_rate_limit_holds_across_replicas_not_per_replica(cluster: Cluster) -> None:
    r0, r1, r2 = cluster.replicas
    statuses: dict[str, Counter[int]] = {r.name: Counter() for r in cluster.replicas}
    for i in range(3 * LIMIT):  # round robin, as a Service spreads one client's requests
        r = cluster.replicas[i % 3]
        response = cluster.ask(r, Q_CLONESET, client="10.1.0.1")
        statuses[r.name][response.status_code] += 1
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
    total = sum(statuses.values(), Counter())
    # each replica saw 12 requests: a limit per replica would have let all 36 through
    assert total == Counter({200: LIMIT, 429: 2 * LIMIT}), statuses
    assert all(c[429] > 0 for c in statuses.values()), statuses

    # a long question costs more, wherever it is asked
    cost = question_cost(LONG_QUESTION)
    assert cost > 1
    assert cluster.ask(r0, LONG_QUESTION, client="10.1.0.2").status_code == 200
    answered = 0
    for i in range(LIMIT):
        status = cluster.ask([r1, r2][i % 2], Q_CLONESET, client="10.1.0.2").status_code
        assert status in (200, 429)
        answered += status == 200
    assert answered == LIMIT - cost
    # another client is not affected
    assert cluster.ask(r2, Q_CLONESET, client="10.1.0.3").status_code == 200
    for r in cluster.replicas:
        assert cluster.metric(r, "qa_redis_up", use="rate_limits") == 1
        assert cluster.ready(r)["shared"]["rate_limits"]["state"] == "up"


def test_an_answer_computed_by_one_replica_is_a_cache_hit_on_the_others(cluster: Cluster) -> None:
    r0, r1, r2 = cluster.replicas
    before = {r.name: cluster.lookups(r) for r in cluster.replicas}
    stored = cluster.metric(r0, "qa_answer_cache_shared_writes_total", result="stored")

    first = cluster.ask(r0, Q_SIDECAR, client="10.2.0.1")
    assert first.status_code == 200
    assert cluster.lookups(r0)["miss"] == before["r0"]["miss"] + 1
    wait_for("r0 wrote its answer to redis",
             lambda: cluster.metric(r0, "qa_answer_cache_shared_writes_total", result="stored") == stored + 1, 5)

    second = cluster.ask(r1, Q_SIDECAR, client="10.2.0.1")
    assert second.status_code == 200
    after = cluster.lookups(r1)
    assert after == {**before["r1"], "shared_hit": before["r1"]["shared_hit"] + 1}, (before["r1"], after)
    a, b = assert_answer_contract(first.json()), assert_answer_contract(second.json())
    assert a.match is not None and b.match is not None and a.match.id == b.match.id
    assert a.answer_id != b.answer_id, "every answer gets its own id, also from the shared cache"
    assert b.question == Q_SIDECAR and b.took_ms >= 0
    assert a.model_dump(exclude={"answer_id", "took_ms"}) == b.model_dump(exclude={"answer_id", "took_ms"})

    # then it is in r1's own cache; and another top_k is another answer (a miss on r2)
    assert cluster.ask(r1, Q_SIDECAR, client="10.2.0.1").status_code == 200
    assert cluster.lookups(r1)["local_hit"] == before["r1"]["local_hit"] + 1
    assert cluster.ask(r2, Q_SIDECAR, client="10.2.0.1", top_k=1).status_code == 200
    assert cluster.lookups(r2) == {**before["r2"], "miss": before["r2"]["miss"] + 1}


def test_a_reload_on_one_replica_reaches_the_others(cluster: Cluster) -> None:
    r0, r1, r2 = cluster.replicas
    for r in cluster.replicas:  # the old answer, cached on every replica and in redis
        assert CLONESET_ANSWER_OLD in cluster.ask(r, Q_CLONESET, client="10.3.0.1").text
    old_hash = cluster.ready(r0)["data_hash"]
    reloads = {r.name: cluster.metric(r, "qa_index_reloads_total", result="ok") for r in cluster.replicas}

    (cluster.data_dir / "faq" / "tiny.md").write_text(faq_markdown(CLONESET_ANSWER_NEW), encoding="utf-8")
    response = cluster.http.post(r0.url + "/admin/reload?wait=true",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200 and response.json()["status"] == "ok", response.text
    new_hash = cluster.ready(r0)["data_hash"]
    assert new_hash != old_hash

    took = wait_for("r1 and r2 serve the new data",
                    lambda: all(cluster.ready(r)["data_hash"] == new_hash for r in (r1, r2)), 15)
    assert took < 5 + 2 * SYNC_INTERVAL
    for r in cluster.replicas:
        body = cluster.ask(r, Q_CLONESET, client="10.3.0.1").text
        assert CLONESET_ANSWER_NEW in body and CLONESET_ANSWER_OLD not in body, (r.name, body)
        assert cluster.metric(r, "qa_index_reloads_total", result="ok") == reloads[r.name] + 1
        assert cluster.metric(r, "qa_reload_in_sync") == 1
    sync = {r.name: cluster.ready(r)["shared"]["reload_sync"] for r in cluster.replicas}
    assert sync["r0"]["last_reload"]["by"] == sync["r0"]["replica"]
    assert sync["r1"]["last_reload"]["by"] == sync["r0"]["replica"] and sync["r1"]["followed"] == 1, sync
    assert sync["r2"]["followed"] == 1 and all(s["in_sync"] for s in sync.values()), sync

    # data with a warning replaces no good index, on any replica
    (cluster.data_dir / "faq" / "tiny.md").write_text(faq_markdown(CLONESET_ANSWER_NEW, extra=UNCLOSED_FENCE),
                                                      encoding="utf-8")
    refused = cluster.http.post(r0.url + "/admin/reload?wait=true",
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert refused.status_code == 409, refused.text
    time.sleep(4 * SYNC_INTERVAL)  # ticks in which a published reload would have been followed
    for r in cluster.replicas:
        assert cluster.ready(r)["data_hash"] == new_hash
        assert CLONESET_ANSWER_NEW in cluster.ask(r, Q_CLONESET, client="10.3.0.1").text
        assert cluster.metric(r, "qa_index_reloads_total", result="ok") == reloads[r.name] + 1
        assert cluster.metric(r, "qa_index_reloads_total", result="failed") == (1 if r is r0 else 0)
    (cluster.data_dir / "faq" / "tiny.md").write_text(faq_markdown(CLONESET_ANSWER_NEW), encoding="utf-8")


# -- failures ------------------------------------------------------------------------------------------

def timed_ask(cluster: Cluster, r: Replica, question: str, client: str) -> tuple[int, float]:
    start = time.monotonic()
    status = cluster.ask(r, question, client).status_code
    return status, time.monotonic() - start


def test_with_redis_down_or_hung_every_replica_keeps_answering(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(2, QA_RATE_LIMIT="20/minute")
    r0, r1 = cluster.replicas
    redis = cluster.redis
    assert cluster.ask(r0, Q_INPLACE, client="10.4.0.1").status_code == 200

    # killed: every replica answers, new questions and cached ones, each at once
    redis.kill()
    for r in cluster.replicas:
        for question in (Q_INPLACE, Q_WEBHOOK, Q_UNINSTALL, Q_WEBHOOK):
            status, seconds = timed_ask(cluster, r, question, client="10.4.0.2")
            assert status == 200 and seconds < 1.0, (r.name, question, status, seconds)
    for r in cluster.replicas:
        wait_for(f"{r.name} reports redis down", lambda r=r: cluster.ready(r)["shared"]["answer_cache"]["state"]
                 == "down" and cluster.ready(r)["shared"]["rate_limits"]["state"] == "down", 5)
        ready = cluster.ready(r)  # still ready: 200
        assert ready["status"] == "ready" and "last_error" in ready["shared"]["answer_cache"]
        assert "redis://127.0.0.1" in ready["shared"]["answer_cache"]["target"]
        assert cluster.metric(r, "qa_redis_up", use="answer_cache") == 0
        assert cluster.metric(r, "qa_redis_up", use="rate_limits") == 0
        assert cluster.metric(r, "qa_redis_errors_total", use="answer_cache") >= 1
    # limits are local now: 20 per replica for this client
    statuses = Counter(cluster.ask(r0, Q_INPLACE, client="10.4.0.3").status_code for _ in range(25))
    assert statuses == Counter({200: 20, 429: 5}), statuses

    # back (empty, on the same port): picked up again, and shared again
    redis.start()
    for r in cluster.replicas:
        wait_for(f"{r.name} reports redis up", lambda r=r: cluster.ready(r)["shared"]["answer_cache"]["state"]
                 == "up" and cluster.ready(r)["shared"]["rate_limits"]["state"] == "up", 10)
        assert cluster.metric(r, "qa_redis_up", use="answer_cache") == 1
    stored = cluster.metric(r0, "qa_answer_cache_shared_writes_total", result="stored")
    shared_hits = cluster.lookups(r1)["shared_hit"]
    assert cluster.ask(r0, Q_SIDECAR, client="10.4.0.4").status_code == 200
    wait_for("r0 wrote its answer to redis",
             lambda: cluster.metric(r0, "qa_answer_cache_shared_writes_total", result="stored") == stored + 1, 5)
    assert cluster.ask(r1, Q_SIDECAR, client="10.4.0.4").status_code == 200
    assert cluster.lookups(r1)["shared_hit"] == shared_hits + 1
    # and the limit is shared again: 20 in all across both replicas
    statuses = Counter(cluster.ask(cluster.replicas[i % 2], Q_INPLACE, client="10.4.0.5").status_code
                       for i in range(30))
    assert statuses == Counter({200: 20, 429: 10}), statuses

    # hung (SIGSTOP: connections open, no reply): answers wait at most the socket timeout, once
    redis.pause()
    try:
        for r in cluster.replicas:
            for question in ("pod stuck in PreparingUpdate after upgrade", Q_CLONESET, Q_UNINSTALL):
                status, seconds = timed_ask(cluster, r, question, client="10.4.0.6")
                assert status == 200 and seconds < 2.0, (r.name, question, status, seconds)
        for r in cluster.replicas:
            wait_for(f"{r.name} reports the hung redis down",
                     lambda r=r: cluster.ready(r)["shared"]["answer_cache"]["state"] == "down", 5)
    finally:
        redis.resume()
    for r in cluster.replicas:
        wait_for(f"{r.name} reports redis up after the pause",
                 lambda r=r: cluster.ready(r)["shared"]["answer_cache"]["state"] == "up", 10)
    assert_clean_logs(cluster)


def test_killing_a_replica_loses_no_request_another_can_serve(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, QA_RATE_LIMIT="off")
    replicas = cluster.replicas
    questions = [Q_INPLACE, Q_WEBHOOK, Q_SIDECAR, Q_UNINSTALL, Q_CLONESET, "what is a SidecarSet", "原地升级"]
    results: list[tuple[int, str]] = []
    retried: list[str] = []
    lock = threading.Lock()
    stop_at = 40  # requests per client thread
    killed = threading.Event()

    def client(k: int) -> None:
        """Round robin over the replicas; a connection error goes to the next one (as a Service would)."""
        with httpx.Client(timeout=10) as http:
            for i in range(stop_at):
                if i == stop_at // 3 and k == 0:
                    replicas[1].proc.kill()  # SIGKILL: gone with whatever it had in flight
                    killed.set()
                for attempt in range(len(replicas)):
                    r = replicas[(i + k + attempt) % len(replicas)]
                    try:
                        response = http.post(r.url + "/api/ask", json={"question": questions[i % len(questions)]})
                    except httpx.TransportError as exc:
                        with lock:
                            retried.append(f"{r.name}: {exc.__class__.__name__}")
                        continue
                    with lock:
                        results.append((response.status_code, r.name))
                    break
                else:
                    with lock:
                        results.append((0, "none"))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert killed.is_set() and not replicas[1].alive()
    assert time.monotonic() - start < 60
    assert len(results) == 4 * stop_at
    assert Counter(status for status, _ in results) == Counter({200: 4 * stop_at}), results
    assert retried and all(name.startswith("r1:") for name in retried), retried
    served = Counter(name for _, name in results)
    assert served["r0"] > 0 and served["r2"] > 0, served
    # the survivors say nothing went wrong
    for r in (replicas[0], replicas[2]):
        assert cluster.ready(r)["status"] == "ready"
    logs = "\n".join(r.log.read_text(errors="replace") for r in (replicas[0], replicas[2]))
    assert "Traceback" not in logs


# -- the pieces in process: where limits are counted -------------------------------------------------

def test_limits_are_counted_in_memory_by_default() -> None:
    assert ServerSettings().rate_limit_storage.get_secret_value() == "memory://"
    limiter = RateLimiter("3/minute")
    assert limiter.store.shared is None and limiter.store.status() == {"store": "memory"}
    assert [limiter.hit("ip:a") for _ in range(4)][:3] == [None, None, None]
    assert limiter.hit("ip:a") is not None


@pytest.mark.parametrize("url", ["memcached://127.0.0.1:11211", "http://redis:6379", "redis://", "redis:6379",
                                 "unix://", "redis://redis:port/0", "redis://redis:6379/cache"])
def test_a_storage_that_is_not_redis_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        ServerSettings(rate_limit_storage=url)
    with pytest.raises(ValueError):
        ServerSettings(cache_url=url)


def test_a_bad_storage_stops_qa_serve_with_a_message(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("QA_")},
           "QA_RATE_LIMIT_STORAGE": "memcached://x:1", "QA_STATE_DIR": str(tmp_path)}
    run = subprocess.run(qa_serve(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "invalid configuration" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_two_stores_on_one_redis_share_a_limit_and_its_costs(tmp_path: Path) -> None:
    redis = RedisServer()
    redis.start()
    try:
        a = RateLimiter("5/minute", LimitStore(redis.url(0)), scope="ask")  # two replicas
        b = RateLimiter("5/minute", LimitStore(redis.url(0)), scope="ask")
        assert a.hit("ip:x", cost=3) is None
        assert b.hit("ip:x") is None and a.hit("ip:x") is None
        wait = b.hit("ip:x")
        assert wait is not None and 1 <= wait <= 60
        assert a.exhausted("ip:x") is not None and b.exhausted("ip:y") is None
        # the auth guard shares the store, not the counts
        guard = AuthGuard("5/minute", a.store)
        assert guard.limiter.exhausted("ip:x") is None
        assert a.store.status()["state"] == "up"
    finally:
        redis.cleanup()


def test_a_dead_redis_falls_back_to_local_limits_at_once() -> None:
    store = LimitStore(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    limiter = RateLimiter("3/minute", store, scope="ask")
    start = time.monotonic()
    results = [limiter.hit("ip:z") for _ in range(5)]
    assert time.monotonic() - start < 1.0
    assert results[:3] == [None] * 3 and all(w is not None for w in results[3:])
    status = store.status()
    assert status["state"] == "down" and "Connection" in str(status["last_error"])
    assert store.breaker is not None and store.breaker.errors == 1  # then left alone during the pause
    assert not store.consults_shared


def test_readyz_and_metrics_say_where_shared_state_lives_without_redis(client: Any) -> None:
    body = client.get("/readyz").json()
    assert body["shared"] == {"rate_limits": {"store": "memory"}, "answer_cache": {"store": "memory"}}
    metrics = client.get("/metrics").text
    assert "qa_redis_up{" not in metrics and 'qa_answer_cache_lookups_total{result="miss"}' in metrics
