"""The engine's answer cache: an LRU in the process, and optionally Redis, shared by every replica.

What is cached is the answer before it is handed to a caller: no answer id, no question as asked,
no time taken (:meth:`qa.search.Engine._for_caller` sets them for each request), so an answer
that one replica computed is exactly as right for another replica's request. Keys are a hash of
the cache's *scope* — the index's data hash, the model, the threshold and the ranking's
parameters — with ``top_k`` and the cleaned question: a new FAQ (or another threshold) never
meets an answer made from the old one, however long the entry lives.

In Redis an answer is a hash of three fields: ``answer``, the contract's JSON
(:meth:`qa.contract.Answer.model_dump_json`, read back with ``model_validate_json``) with its
question left empty (the key is a hash, so no question is stored in the clear); ``confidence``
and ``score``, the two figures that are not part of the JSON. Entries expire after
``QA_CACHE_TTL`` seconds. Writes go through one background thread, so an answer never waits for
Redis; reads happen only after the local cache missed, through :class:`qa.shared.Breaker`
(short timeouts, and no attempt at all while Redis is known to be down).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from qa.contract import Answer
from qa.shared import RedisLink

if TYPE_CHECKING:
    from qa.settings import Settings

log = logging.getLogger(__name__)

CACHE_VERSION = "2"  # part of every key: change it when what an Answer means changes (2: translated alternatives)
KEY_PREFIX = "qa:answer:"
DEFAULT_TTL = 3600
WRITE_QUEUE = 512  # answers waiting to be written to Redis at most; more are dropped (the cache is a cache)


class CacheStats:
    """Counts of lookups (``local_hit``, ``shared_hit``, ``miss``) and of Redis writes (``stored``,
    ``dropped``, ``failed``); one object for a server's whole life (it outlives reloads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class LocalCache:
    """A thread-safe LRU of answers in this process (``size`` 0: nothing is kept)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Answer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Answer | None:
        if not self.size:
            return None
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: str, answer: Answer) -> None:
        if not self.size:
            return
        with self._lock:
            self._items[key] = answer
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def encode(answer: Answer) -> dict[str, str]:
    """An answer as the Redis hash's fields (its question left out)."""
    return {"answer": answer.model_copy(update={"question": ""}).model_dump_json(),
            "confidence": repr(float(answer.confidence)), "score": repr(float(answer.score))}


def decode(fields: list[Any]) -> Answer | None:
    """The answer from the fields ``encode`` wrote (``HMGET`` order); None when they are not that."""
    raw, conf, score = (fields + [None, None, None])[:3]
    if raw is None or conf is None or score is None:
        return None
    try:
        answer = Answer.model_validate_json(raw)
        answer._confidence = float(conf)
        answer._score = float(score)
    except (ValidationError, ValueError, TypeError):
        return None
    return answer


class SharedCache:
    """Answers in Redis, shared by every replica that points at the same database.

    Args:
        link: the Redis connection and its breaker.
        ttl: seconds an answer is kept.
        stats: where lookups and writes are counted (a new one by default).
    """

    def __init__(self, link: RedisLink, ttl: int = DEFAULT_TTL, stats: CacheStats | None = None) -> None:
        self.link = link
        self.ttl = ttl
        self.stats = stats or CacheStats()
        self._queue: queue.Queue[tuple[str, dict[str, str]] | None] = queue.Queue(WRITE_QUEUE)
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SharedCache | None:
        """The shared cache ``QA_CACHE_URL`` names, or None when it is unset (nothing is connected yet)."""
        if settings.cache_url is None:
            return None
        link = RedisLink(settings.cache_url.get_secret_value(), "answer_cache", timeout=settings.redis_timeout)
        return cls(link, settings.cache_ttl)

    def get(self, key: str) -> Answer | None:
        """The answer stored under ``key``; None when there is none, it does not read, or Redis is away."""
        fields = self.link.call(lambda: self.link.client.hmget(KEY_PREFIX + key, "answer", "confidence", "score"),
                                None)
        if fields is None:
            return None
        answer = decode(list(fields))
        if answer is None and any(f is not None for f in fields):
            self.stats.add("unreadable")
        return answer

    def put(self, key: str, answer: Answer) -> bool:
        """Stores an answer now (with its TTL); False when Redis is away."""
        return self._store(KEY_PREFIX + key, encode(answer))

    def put_later(self, key: str, answer: Answer) -> None:
        """Stores an answer from the writer thread; dropped when Redis is down or the queue is full."""
        if not self.link.available:
            self.stats.add("dropped")
            return
        try:
            self._queue.put_nowait((KEY_PREFIX + key, encode(answer)))
        except queue.Full:
            self.stats.add("dropped")
            return
        self._ensure_writer()

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until the answers queued so far are written (or dropped); False on timeout."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        """Stops the writer (after what is queued) and closes the connection pool."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=2)
        self.link.close()

    def _store(self, key: str, fields: dict[str, str]) -> bool:
        def write() -> bool:
            pipe = self.link.client.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.expire(key, self.ttl)
            pipe.execute()
            return True

        stored = self.link.call(write, False)
        self.stats.add("stored" if stored else "failed")
        return stored

    def _ensure_writer(self) -> None:
        if self._writer is not None:
            return
        with self._writer_lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="qa-cache-writer", daemon=True)
                self._writer.start()

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._store(*item)
            finally:
                self._queue.task_done()


class AnswerCache:
    """What the engine asks: the local LRU first, then the shared cache; a new answer goes to both.

    Args:
        size: answers kept in the process (``QA_CACHE_SIZE``; 0 keeps none).
        scope: what makes an answer valid besides the question (see the module's note).
        shared: the Redis layer, or None (in process only).
        stats: where lookups are counted (the shared cache's, so counts outlive reloads).
    """

    def __init__(self, size: int, scope: str, shared: SharedCache | None = None,
                 stats: CacheStats | None = None) -> None:
        self.local = LocalCache(size)
        self.shared = shared
        self.stats = stats or (shared.stats if shared is not None else CacheStats())
        self._scope = hashlib.sha256(f"{CACHE_VERSION}\0{scope}".encode()).hexdigest()[:24]

    def key(self, clean: str, top_k: int) -> str:
        """The key of a cleaned question asked for ``top_k`` candidates, within this cache's scope."""
        digest = hashlib.sha256(f"{top_k}\0{clean}".encode()).hexdigest()[:32]
        return f"{self._scope}:{digest}"

    @property
    def consults_shared(self) -> bool:
        """Whether a local miss is worth a look in Redis (configured, and not known to be down)."""
        return self.shared is not None and self.shared.link.available

    def get_local(self, key: str) -> Answer | None:
        """The local cache's answer (a hit is counted; a miss is the caller's to count)."""
        hit = self.local.get(key)
        if hit is not None:
            self.stats.add("local_hit")
        return hit

    def get_shared(self, key: str) -> Answer | None:
        """The shared cache's answer, kept locally too (a hit is counted). Blocks for a Redis round trip:
        call it from a worker thread on an event loop."""
        if self.shared is None:
            return None
        hit = self.shared.get(key)
        if hit is not None:
            self.local.put(key, hit)
            self.stats.add("shared_hit")
        return hit

    def get(self, key: str) -> Answer | None:
        """Local, then shared; a miss of both is counted."""
        hit = self.get_local(key)
        if hit is None and self.consults_shared:
            hit = self.get_shared(key)
        if hit is None:
            self.missed()
        return hit

    def missed(self) -> None:
        self.stats.add("miss")

    def put(self, key: str, answer: Answer) -> None:
        """Keeps a new answer locally and queues it for the shared cache."""
        self.local.put(key, answer)
        if self.shared is not None:
            self.shared.put_later(key, answer)
