"""Rate limits on top of the ``limits`` library (the engine under slowapi).

Keys: the client address for the API and the page; the Slack team and user for the slash
command (checked after the signature, so unsigned traffic cannot spend a team's budget).
A question costs what the model reads of it (:func:`question_cost`): one request for a short
question, up to four for a long typed one; a pasted log is cut before the model reads it. Failed authentications
(admin token, Slack signature) have a budget of their own per client address (:class:`AuthGuard`).

The client address is the connection's peer, or, from a peer in ``QA_TRUSTED_PROXIES`` only,
the one its ``X-Forwarded-For`` names (uvicorn's proxy-headers middleware, set up by
``server.main``): a header from anyone else changes nothing.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from qa.question import MODEL_BUDGET, WHOLE_BUDGET, estimate_tokens
from server.models import error_response

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


class RateLimiter:
    """A moving-window limit per key, in memory (one process serves one team's bot)."""

    def __init__(self, rate: str) -> None:
        """Args:
            rate: a rate string such as ``120/minute`` or ``10/second``; ``off`` disables it.

        Raises:
            ValueError: when the rate string cannot be parsed.
        """
        self.enabled = rate.strip().lower() not in {"off", "none", "0", "false", ""}
        self.rate: RateLimitItem | None = parse(rate) if self.enabled else None
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, key: str, cost: int = 1) -> float | None:
        """Counts a request.

        Args:
            key: who is asking.
            cost: how many requests it counts for (nothing is counted when it does not fit).

        Returns:
            None when allowed; otherwise the seconds to wait before retrying (at least 1).
        """
        if self.rate is None:
            return None
        if self._limiter.hit(self.rate, key, cost=cost):
            return None
        return self._wait(key)

    def exhausted(self, key: str) -> float | None:
        """Whether ``key`` has spent its budget, without counting anything.

        Returns:
            None when one more request would be allowed; otherwise the seconds to wait (at least 1).
        """
        if self.rate is None or self._limiter.test(self.rate, key):
            return None
        return self._wait(key)

    def _wait(self, key: str) -> float:
        assert self.rate is not None
        reset = self._limiter.get_window_stats(self.rate, key).reset_time
        return float(max(1, math.ceil(reset - time.time())))


def too_many(wait: float) -> HTTPException:
    """The 429 to raise from a route (the app's handler renders it with ``Retry-After``)."""
    return HTTPException(429, f"too many requests; retry in {wait:.0f} s", headers={"Retry-After": f"{wait:.0f}"})


def charge_question(request: Request, question: str) -> None:
    """Charges the rest of an API question's cost (the middleware counted one request already).

    Raises:
        HTTPException: 429 when the asker's budget cannot take it.
    """
    limiter: RateLimiter = request.app.state.limiter
    extra = question_cost(question) - 1
    if extra > 0 and (wait := limiter.hit(client_key(request.scope), extra)) is not None:
        raise too_many(wait)


class AuthGuard:
    """A budget of failed authentications per client address (``QA_AUTH_FAILURE_LIMIT``).

    A client that has used it up gets 429 before its credentials are even looked at, so it can
    no longer try tokens or signatures at full speed; other clients, and the valid requests of a
    client that has not, pay one in-memory lookup.
    """

    def __init__(self, rate: str) -> None:
        self.limiter = RateLimiter(rate)

    def check(self, request: Request) -> None:
        """Raises 429 when this client's failed authentications are used up."""
        if (wait := self.limiter.exhausted(client_key(request.scope))) is not None:
            raise too_many(wait)

    def failed(self, request: Request) -> None:
        """Counts a failed authentication of this client."""
        self.limiter.hit(client_key(request.scope))


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
            wait = self.limiter.hit(client_key(scope))
            if wait is not None:
                response = error_response(429, "rate_limited", f"too many requests; retry in {wait:.0f} s",
                                          {"Retry-After": f"{wait:.0f}"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
