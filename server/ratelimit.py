"""Rate limits on top of the ``limits`` library (the engine under slowapi).

Keys: the client address for the API and the page; the Slack team and user for the slash
command (checked after the signature, so unsigned traffic cannot spend a team's budget).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from server.models import error_response


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

    def hit(self, key: str) -> float | None:
        """Counts one request.

        Args:
            key: who is asking.

        Returns:
            None when allowed; otherwise the seconds to wait before retrying (at least 1).
        """
        if self.rate is None:
            return None
        if self._limiter.hit(self.rate, key):
            return None
        reset = self._limiter.get_window_stats(self.rate, key).reset_time
        return float(max(1, math.ceil(reset - time.time())))


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
            client = scope.get("client")
            wait = self.limiter.hit(f"ip:{client[0] if client else '?'}")
            if wait is not None:
                response = error_response(429, "rate_limited", f"too many requests; retry in {wait:.0f} s",
                                          {"Retry-After": f"{wait:.0f}"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
