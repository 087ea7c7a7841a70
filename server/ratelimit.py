"""Rate limits on top of the ``limits`` library (the engine under slowapi).

Keys: the client address for the API and the page; the Slack team and user for the slash
command (checked after the signature, so unsigned traffic cannot spend a team's budget).
A question costs what the model reads of it (:func:`question_cost`): one request for a short
question, up to four for a long typed one; a pasted log is cut before the model reads it. Failed authentications
(admin token, Slack signature) have a budget of their own per client address (:class:`AuthGuard`).

Where the counters live (:class:`LimitStore`, ``QA_RATE_LIMIT_STORAGE``): in this process
(``memory://``, the default), or in Redis, where every replica counts into the same moving
window, so a client's limit holds across the deployment. With Redis, a call that fails or takes
longer than ``QA_REDIS_TIMEOUT`` is counted in this process's memory instead, and Redis is left
alone for a few seconds (:class:`qa.shared.Breaker`): a request never fails or waits on it.

The client address is the connection's peer, or, from a peer in ``QA_TRUSTED_PROXIES`` only,
the one its ``X-Forwarded-For`` names (uvicorn's proxy-headers middleware, set up by
``server.main``): a header from anyone else changes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from qa.question import MODEL_BUDGET, WHOLE_BUDGET, estimate_tokens
from qa.shared import DEFAULT_TIMEOUT, Breaker, describe, off_loop, redis_options
from server.models import error_response

T = TypeVar("T")

STORAGE_SCHEMES = ("redis", "rediss", "redis+unix")  # QA_RATE_LIMIT_STORAGE, besides memory://
KEY_PREFIX = "qa-limits"

MAX_COST = 4  # what the model reads of a question is bounded (qa.question.for_model), so is its cost
_TOKENS_PER_UNIT = WHOLE_BUDGET // MAX_COST  # 36 estimated tokens read by the model count one request


def question_cost(text: str) -> int:
    """What a question spends of its asker's budget: 1 for a short one, up to :data:`MAX_COST`.

    Encoding time grows with the tokens the model reads: the whole question up to
    :data:`qa.question.WHOLE_BUDGET` estimated tokens, :data:`qa.question.MODEL_BUDGET` of a
    longer one (:func:`qa.question.for_model`). Each 36 of them count one request.
    """
    tokens = estimate_tokens(text[:20_000])
    read = tokens if tokens <= WHOLE_BUDGET else MODEL_BUDGET
    return max(1, min(MAX_COST, math.ceil(read / _TOKENS_PER_UNIT)))


def client_key(scope: Scope) -> str:
    """The rate-limit key of a connection's client (its address; see the module's note on proxies)."""
    client = scope.get("client")
    return f"ip:{client[0] if client else '?'}"


class LimitStore:
    """Where rate-limit counters live: this process's memory, or Redis with memory as the fallback.

    Args:
        url: ``memory://``, or a Redis URL (``redis://host:6379/0``) shared by every replica.
        timeout: seconds a Redis call may take (connect or reply).

    Nothing is connected until the first request is counted.
    """

    def __init__(self, url: str = "memory://", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.local = MovingWindowRateLimiter(MemoryStorage())
        self.shared: MovingWindowRateLimiter | None = None
        self.breaker: Breaker | None = None
        if url.strip() not in {"", "memory://"}:
            from limits.storage import RedisStorage, storage_from_string

            storage = storage_from_string(url, key_prefix=KEY_PREFIX, **redis_options(timeout))
            assert isinstance(storage, RedisStorage)
            self.shared = MovingWindowRateLimiter(storage)
            self.breaker = Breaker("rate_limits", storage.get_connection().ping, describe(url))

    def run(self, op: Callable[[MovingWindowRateLimiter], T]) -> T:
        """``op`` on the shared counters; on the local ones when there are none or Redis is away."""
        if self.shared is not None and self.breaker is not None:
            shared = self.shared
            result = self.breaker.call(lambda: op(shared), None)
            if result is not None:
                return result
        return op(self.local)

    @property
    def consults_shared(self) -> bool:
        """Whether counting goes to Redis now (configured, and not known to be down)."""
        return self.breaker is not None and self.breaker.available

    def status(self) -> dict[str, object]:
        """For ``/readyz``."""
        return self.breaker.status() if self.breaker is not None else {"store": "memory"}


class RateLimiter:
    """A moving-window limit per key, counted in a :class:`LimitStore` (this process's memory by default)."""

    def __init__(self, rate: str, store: LimitStore | None = None, scope: str = "") -> None:
        """Args:
            rate: a rate string such as ``120/minute`` or ``10/second``; ``off`` disables it.
            store: where the counters live (default: this process's memory).
            scope: what this limit counts (``ask``, ``auth``): keeps its keys apart from other
                limits in the same store.

        Raises:
            ValueError: when the rate string cannot be parsed.
        """
        self.enabled = rate.strip().lower() not in {"off", "none", "0", "false", ""}
        self.rate: RateLimitItem | None = parse(rate) if self.enabled else None
        self.store = store or LimitStore()
        self._scope = f"{scope}:" if scope else ""

    def hit(self, key: str, cost: int = 1) -> float | None:
        """Counts a request.

        Args:
            key: who is asking.
            cost: how many requests it counts for (nothing is counted when it does not fit).

        Returns:
            None when allowed; otherwise the seconds to wait before retrying (at least 1).
        """
        rate = self.rate
        if rate is None:
            return None
        if self.store.run(lambda lim: lim.hit(rate, self._scope + key, cost=cost)):
            return None
        return self._wait(key)

    def exhausted(self, key: str) -> float | None:
        """Whether ``key`` has spent its budget, without counting anything.

        Returns:
            None when one more request would be allowed; otherwise the seconds to wait (at least 1).
        """
        rate = self.rate
        if rate is None or self.store.run(lambda lim: lim.test(rate, self._scope + key)):
            return None
        return self._wait(key)

    async def hit_async(self, key: str, cost: int = 1) -> float | None:
        """:meth:`hit` for the event loop: a round trip to a shared store runs in a worker thread."""
        if self.store.consults_shared:
            return await off_loop(lambda: self.hit(key, cost))
        return self.hit(key, cost)

    async def exhausted_async(self, key: str) -> float | None:
        """:meth:`exhausted` for the event loop (see :meth:`hit_async`)."""
        if self.store.consults_shared:
            return await off_loop(lambda: self.exhausted(key))
        return self.exhausted(key)

    def _wait(self, key: str) -> float:
        rate = self.rate
        assert rate is not None
        reset = self.store.run(lambda lim: lim.get_window_stats(rate, self._scope + key)).reset_time
        return float(max(1, math.ceil(reset - time.time())))


def too_many(wait: float) -> HTTPException:
    """The 429 to raise from a route (the app's handler renders it with ``Retry-After``)."""
    return HTTPException(429, f"too many requests; retry in {wait:.0f} s", headers={"Retry-After": f"{wait:.0f}"})


async def charge_question(request: Request, question: str) -> None:
    """Charges the rest of an API question's cost (the middleware counted one request already).

    Raises:
        HTTPException: 429 when the asker's budget cannot take it.
    """
    limiter: RateLimiter = request.app.state.limiter
    extra = question_cost(question) - 1
    if extra > 0 and (wait := await limiter.hit_async(client_key(request.scope), extra)) is not None:
        raise too_many(wait)


class AuthGuard:
    """A budget of failed authentications per client address (``QA_AUTH_FAILURE_LIMIT``).

    A client that has used it up gets 429 before its credentials are even looked at, so it can
    no longer try tokens or signatures at full speed; other clients, and the valid requests of a
    client that has not, pay one lookup (in memory, or in the shared store the request limit uses).
    """

    def __init__(self, rate: str, store: LimitStore | None = None) -> None:
        self.limiter = RateLimiter(rate, store, scope="auth")

    async def check(self, request: Request) -> None:
        """Raises 429 when this client's failed authentications are used up."""
        if (wait := await self.limiter.exhausted_async(client_key(request.scope))) is not None:
            raise too_many(wait)

    async def failed(self, request: Request) -> None:
        """Counts a failed authentication of this client."""
        await self.limiter.hit_async(client_key(request.scope))


class RateLimitMiddleware:
    """Limits the API and the page per client address (plain ASGI); 429 with ``Retry-After``.

    The Slack command is limited in its route instead, per team and user, after its signature.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if self.limiter.enabled and scope["type"] == "http" and (path == "/" or path.startswith("/api/")):
            key = client_key(scope)
            limiter = self.limiter
            wait = await limiter.hit_async(key)  # a Redis round trip runs off the event loop
            if wait is not None:
                response = error_response(429, "rate_limited", f"too many requests; retry in {wait:.0f} s",
                                          {"Retry-After": f"{wait:.0f}"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
