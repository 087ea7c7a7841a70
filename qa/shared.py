"""State shared by several replicas, in Redis: a connection that can never hang or fail an answer.

Every Redis call goes through a :class:`Breaker`: short socket timeouts, no retries, and after a
failure the link counts as *down* for a few seconds, during which callers use their local
fallback (the in-process cache, in-memory rate limits) without trying Redis at all. The server's
monitor probes every link each ``QA_SYNC_INTERVAL`` seconds (a failed probe extends the pause),
so Redis going away shows on ``/readyz`` without traffic, and Redis coming back is picked up
without a request paying for the attempt; without a monitor (the CLI) a caller tries again once
the pause is over.

This module imports ``redis`` only when a link is made, so the embedded defaults need nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = 0.25  # seconds: a Redis call (connect or reply) on the answering path never waits longer
PAUSE_SECONDS = 5.0  # after a failure, callers leave Redis alone this long (the monitor probes it meanwhile)
REDIS_SCHEMES = ("redis", "rediss", "unix")


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


async def off_loop(fn: Callable[[], T]) -> T:
    """``fn()`` (a Redis round trip) in a small pool of threads of its own, so that an event loop never
    waits on Redis and a slow Redis never takes the threads other work runs in."""
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="qa-redis")
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn)


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when Redis is away, slow or confused (never a bug of ours)."""
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def check_redis_url(url: str, schemes: tuple[str, ...] = REDIS_SCHEMES) -> str:
    """``url`` when it is a Redis URL (``redis://host:port/db``, ``rediss://…``, ``unix:///path``).

    Raises:
        ValueError: another scheme, or no host (nothing is connected to).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in schemes:
        raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}, "
                         f"not {parts.scheme + '://' if parts.scheme else repr(url[:40])}")
    if parts.scheme.endswith("unix") and not parts.path:
        raise ValueError("a unix:// URL needs a socket path")
    if not parts.scheme.endswith("unix"):
        if not parts.hostname:
            raise ValueError("a redis:// URL needs a host")
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"the database in a redis:// URL is a number (redis://host:6379/0), not {db[:20]!r}")
    return url.strip()


def describe(url: str) -> str:
    """``url`` without a user or password, for logs and ``/readyz``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    where = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{where}{parts.path}"


def redis_client(url: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """A ``redis.Redis`` with short connect and read timeouts and no retries."""
    import redis

    return redis.Redis.from_url(url, **redis_options(timeout))


def redis_options(timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The client options every Redis connection of the bot uses (also given to the ``limits`` storage)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0}


class Breaker:
    """Up, down or unknown (never tried); calls through it never raise Redis errors.

    Args:
        name: what this link is for (``answer_cache``, ``rate_limits``), in logs and metrics.
        probe: a cheap call that raises when Redis cannot be used (a ``PING``).
        target: where it points, without credentials (for ``/readyz``).
        pause: seconds callers leave a down link alone before trying it again.
    """

    def __init__(self, name: str, probe: Callable[[], object], target: str = "",
                 pause: float = PAUSE_SECONDS) -> None:
        self.name = name
        self.target = target
        self._probe = probe
        self._pause = pause
        self._lock = threading.Lock()
        self.up: bool | None = None  # None: not tried yet
        self.since = time.time()
        self.errors = 0
        self.last_error: str | None = None
        self._retry_at = 0.0
        self._errors = redis_errors()

    @property
    def available(self) -> bool:
        """Whether a caller should try Redis now (up, never tried, or its pause is over)."""
        return self.up is not False or time.monotonic() >= self._retry_at

    def call(self, fn: Callable[[], T], default: T) -> T:
        """``fn()``, or ``default`` when the link is down or the call fails (the link then goes down)."""
        if not self.available:
            return default
        try:
            result = fn()
        except self._errors as exc:
            self._failed(exc)
            return default
        self._worked()
        return result

    def probe(self) -> bool:
        """Tries Redis now, whatever the pause says (the monitor's check); True when it answered."""
        try:
            self._probe()
        except self._errors as exc:
            self._failed(exc)
            return False
        self._worked()
        return True

    def _worked(self) -> None:
        if self.up is True:
            return
        with self._lock:
            was, self.up, self.since = self.up, True, time.time()
        if was is False:
            log.warning("redis for %s (%s) is back: shared again", self.name, self.target)

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            was = self.up
            self.errors += 1
            self.last_error = f"{exc.__class__.__name__}: {exc}"[:200]
            self._retry_at = time.monotonic() + self._pause
            if was is not False:
                self.up, self.since = False, time.time()
        if was is not False:
            log.warning("redis for %s (%s) is unavailable, serving from local state: %s",
                        self.name, self.target, self.last_error)

    def status(self) -> dict[str, object]:
        """For ``/readyz``: where, up/down/unknown, since when, the last error while down."""
        state = {True: "up", False: "down", None: "unknown"}[self.up]
        out: dict[str, object] = {"store": "redis", "target": self.target, "state": state,
                                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)),
                                  "errors": self.errors}
        if self.up is False and self.last_error:
            out["last_error"] = self.last_error
        return out


class RedisLink(Breaker):
    """A Redis client and its :class:`Breaker` (one connection pool, shared by every user of the URL)."""

    def __init__(self, url: str, name: str, timeout: float = DEFAULT_TIMEOUT, pause: float = PAUSE_SECONDS) -> None:
        self.client = redis_client(url, timeout)
        super().__init__(name, self.client.ping, describe(url), pause)

    def close(self) -> None:
        """Closes the connection pool."""
        try:
            self.client.close()
        except Exception:  # pragma: no cover - closing a broken pool
            pass
