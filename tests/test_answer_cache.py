"""The answer cache: the local LRU, the Redis layer (a real ``redis-server``, never a mock), and how
the engine uses them (two engines on one Redis stand for two replicas)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError
from redis_support import RedisServer, free_port
from tiny_faq import EN_CPU, Q_CPU, Q_SIDECAR, Q_STUCK, TINY_QUESTIONS, open_engine, write_tiny_data, write_translation

from qa.answer_cache import KEY_PREFIX, AnswerCache, LocalCache, decode, encode
from qa.contract import Answer
from qa.search import Engine
from qa.settings import Settings


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def cache_url(redis_server: RedisServer) -> str:
    """Database 1 of the module's Redis, emptied for this test."""
    client = redis.Redis.from_url(redis_server.url(1))
    client.flushdb()
    client.close()
    return redis_server.url(1)


def replica(data_dir: Path, index_dir: Path, **settings: Any) -> Engine:
    """An engine as a replica's server makes it: ``Engine.from_settings`` (the HashEncoder)."""
    return open_engine(data_dir, index_dir, **settings)


@pytest.fixture
def replicas(tmp_path: Path, cache_url: str) -> tuple[Engine, Engine]:
    data = write_tiny_data(tmp_path / "data")
    write_translation(data)
    return (replica(data, tmp_path / "index-a", cache_url=cache_url),
            replica(data, tmp_path / "index-b", cache_url=cache_url))


def flushed(engine: Engine) -> Engine:
    """The engine, once the answers it queued for Redis are written."""
    assert engine.cache.shared is not None and engine.cache.shared.flush(5)
    return engine


def lookups(engine: Engine) -> dict[str, int]:
    """The cache's lookup counts (writes are counted apart, from the writer thread)."""
    return {k: v for k, v in engine.cache.stats.snapshot().items() if k in {"local_hit", "shared_hit", "miss",
                                                                           "unreadable"}}


# -- the local layer ---------------------------------------------------------------------------------

def test_the_local_cache_keeps_the_most_recently_used(hash_engine: Engine) -> None:
    answers = [hash_engine.ask(q) for q in TINY_QUESTIONS[:3]]
    cache = LocalCache(2)
    for i, a in enumerate(answers):
        cache.put(str(i), a)
        if i == 1:
            assert cache.get("0") is answers[0]  # "0" is now the most recent: "1" goes next
    assert cache.get("1") is None and cache.get("0") is answers[0] and cache.get("2") is answers[2]
    off = LocalCache(0)
    off.put("x", answers[0])
    assert off.get("x") is None and len(off) == 0


def test_without_a_url_the_cache_is_local_and_counts_its_lookups(hash_engine: Engine) -> None:
    assert hash_engine.cache.shared is None and not hash_engine.cache.consults_shared
    hash_engine.ask(Q_CPU)
    hash_engine.ask(Q_CPU)
    asyncio.run(hash_engine.ask_async(Q_CPU))
    hash_engine.ask(Q_CPU, top_k=1)  # another top_k, another answer
    assert hash_engine.cache.stats.snapshot() == {"miss": 2, "local_hit": 2}


def test_keys_depend_on_the_question_top_k_and_scope() -> None:
    a, b = AnswerCache(8, "data-1|model|0.5"), AnswerCache(8, "data-2|model|0.5")
    assert a.key("q", 3) == AnswerCache(8, "data-1|model|0.5").key("q", 3)
    assert len({a.key("q", 3), a.key("q", 2), a.key("q2", 3), b.key("q", 3)}) == 4
    question = "原地升级能修改容器的 CPU 和内存吗？"
    assert question not in a.key(question, 3) and len(a.key(question, 3)) == len(a.key("q", 3))  # hashed


# -- the contract's JSON in Redis ---------------------------------------------------------------------

def test_an_answer_reads_back_exactly_from_the_contract_json(tmp_path: Path) -> None:
    data = write_tiny_data(tmp_path / "data")
    write_translation(data)
    engine = open_engine(data, tmp_path / "index", cache_size=0)
    asked = [*TINY_QUESTIONS, EN_CPU, "how do I bake sourdough bread at home", "完全无关的问题"]
    answers = [engine.ask(q) for q in asked]
    assert any(a.match is None for a in answers) and any(a.match and a.match.translation for a in answers)
    assert any(a.match and a.match.commands for a in answers)
    for a in answers:
        fields = encode(a)
        assert json.loads(fields["answer"])["question"] == ""  # no question in the clear
        back = decode([fields["answer"], fields["confidence"], fields["score"]])
        assert back is not None
        assert back.model_dump(exclude={"question"}) == a.model_dump(exclude={"question"}) and back.question == ""
        assert (back.confidence, back.score) == (a.confidence, a.score)
    assert decode([None, None, None]) is None and decode(["{not json", "0.5", "0.1"]) is None
    assert decode([answers[0].model_dump_json(), "x", "0.1"]) is None


def test_an_answer_from_one_replica_is_a_hit_on_the_other(replicas: tuple[Engine, Engine]) -> None:
    a, b = replicas
    first = flushed(a).ask(Q_SIDECAR)
    flushed(a)
    assert a.cache.stats.snapshot() == {"miss": 1, "stored": 1}
    second = b.ask(Q_SIDECAR)
    assert lookups(b) == {"shared_hit": 1}
    assert second.model_dump(exclude={"answer_id", "took_ms"}) == first.model_dump(exclude={"answer_id", "took_ms"})
    assert second.answer_id != first.answer_id and second.question == Q_SIDECAR
    assert (second.confidence, second.score) == (first.confidence, first.score)
    # now in b's own cache; the event loop path finds it too
    third = asyncio.run(b.ask_async(Q_SIDECAR))
    assert third.answer_id not in {first.answer_id, second.answer_id}
    assert lookups(b) == {"shared_hit": 1, "local_hit": 1}
    # the event loop path reads the shared cache as well
    flushed(b).ask(Q_STUCK)
    flushed(b)
    asyncio.run(a.ask_async(Q_STUCK))
    assert lookups(a) == {"miss": 1, "shared_hit": 1}


def test_redis_holds_hashed_keys_with_a_ttl_and_no_question(replicas: tuple[Engine, Engine], cache_url: str) -> None:
    a, _ = replicas
    flushed(a).ask(Q_STUCK)
    flushed(a)
    client = redis.Redis.from_url(cache_url)
    keys = client.keys(KEY_PREFIX + "*")
    assert len(keys) == 1 and Q_STUCK.encode() not in keys[0]
    assert 0 < client.ttl(keys[0]) <= Settings().cache_ttl
    stored = client.hgetall(keys[0])
    assert set(stored) == {b"answer", b"confidence", b"score"}
    assert "PreparingUpdate" not in Answer.model_validate_json(stored[b"answer"]).question


def test_new_data_never_meets_an_old_answer(tmp_path: Path, cache_url: str) -> None:
    data = write_tiny_data(tmp_path / "data")
    old = replica(data, tmp_path / "index-a", cache_url=cache_url)
    flushed(old).ask(Q_CPU)
    flushed(old)
    faq = data / "faq" / "tiny.md"
    faq.write_text(faq.read_text(encoding="utf-8").replace("支持原地修改容器资源", "支持原地修改容器的资源"),
                   encoding="utf-8")
    new = replica(data, tmp_path / "index-b", cache_url=cache_url)
    assert new.kb.data_hash != old.kb.data_hash
    answer = new.ask(Q_CPU)
    assert lookups(new) == {"miss": 1}
    assert answer.match is not None and "容器的资源" in answer.match.markdown
    # and another threshold is another scope too
    other = replica(data, tmp_path / "index-b", cache_url=cache_url, threshold=0.9)
    other.ask(Q_CPU)
    assert lookups(other) == {"miss": 1}


def test_an_unreadable_entry_is_a_miss(replicas: tuple[Engine, Engine], cache_url: str) -> None:
    a, b = replicas
    key = a.cache.key(a.clean(Q_CPU), 3)
    redis.Redis.from_url(cache_url).hset(KEY_PREFIX + key, mapping={"answer": "{}", "confidence": "1", "score": "1"})
    answer = a.ask(Q_CPU)
    assert answer.match is not None
    assert lookups(a) == {"unreadable": 1, "miss": 1}


# -- Redis away ---------------------------------------------------------------------------------------

def test_a_dead_redis_costs_nothing_and_fails_nothing(tmp_path: Path) -> None:
    data = write_tiny_data(tmp_path / "data")
    engine = replica(data, tmp_path / "index", cache_url=f"redis://127.0.0.1:{free_port()}/1")  # nothing listens
    start = time.monotonic()
    answers = [engine.ask(q) for q in TINY_QUESTIONS] + [asyncio.run(engine.ask_async(q)) for q in TINY_QUESTIONS]
    assert time.monotonic() - start < 2.0
    assert all(a.match is not None for a in answers)
    assert engine.cache.shared is not None
    link = engine.cache.shared.link
    assert link.up is False and link.errors == 1 and not engine.cache.consults_shared  # tried once, then paused
    assert link.status()["state"] == "down" and "Connection" in str(link.status()["last_error"])
    counts = engine.cache.stats.snapshot()
    assert counts["miss"] == 5 and counts["local_hit"] == 5 and counts.get("dropped", 0) == 5
    assert link.probe() is False  # the monitor's check, whatever the pause says


def test_redis_coming_back_is_used_again(tmp_path: Path) -> None:
    server = RedisServer()
    try:
        data = write_tiny_data(tmp_path / "data")
        engine = replica(data, tmp_path / "index", cache_url=server.url(1))  # not started yet
        engine.ask(Q_CPU)
        assert engine.cache.shared is not None and engine.cache.shared.link.up is False
        server.start()
        assert engine.cache.shared.link.probe() and engine.cache.consults_shared
        flushed(engine).ask(Q_STUCK)
        flushed(engine)
        assert engine.cache.stats.snapshot()["stored"] == 1
    finally:
        server.cleanup()


@pytest.mark.parametrize("url", ["http://h:6379", "redis://", "localhost:6379", "unix://"])
def test_the_cache_url_must_be_redis(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(cache_url=url)


def test_the_cache_url_is_a_secret_and_empty_is_unset() -> None:
    s = Settings(cache_url="redis://:hunter2@redis:6379/1")
    assert "hunter2" not in repr(s) and s.cache_url is not None
    assert Settings(cache_url="  ").cache_url is None and Settings().cache_url is None
