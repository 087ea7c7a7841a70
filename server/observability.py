"""Metrics (Prometheus), request logging with request ids, and security headers."""

from __future__ import annotations

import json
import logging
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.contract import Answer
from server.models import error_response

log = logging.getLogger("server.access")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (one per app, so tests stay apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("qa_http_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("qa_http_request_duration_seconds", "HTTP request latency by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.answers = Counter("qa_answers_total", "Answers by outcome and surface", ["outcome", "surface"],
                               registry=r)
        self.confidence = Histogram("qa_answer_confidence", "Confidence of the best candidate",
                                    buckets=tuple(i / 10 for i in range(1, 11)), registry=r)
        self.entries = Gauge("qa_index_entries", "FAQ entries in the loaded index", registry=r)
        self.vectors = Gauge("qa_index_vectors", "Vectors in the loaded dense index", registry=r)
        self.build_info = Gauge("qa_index_build_info", "The loaded index (value 1)",
                                ["model", "data_hash", "built_at"], registry=r)
        self.reloads = Counter("qa_index_reloads_total", "Index reloads by result", ["result"], registry=r)

    def observe_answer(self, answer: Answer, surface: str) -> None:
        """Counts an answer and records its best candidate's confidence."""
        self.answers.labels("answered" if answer.match else "no_answer", surface).inc()
        self.confidence.observe(answer.confidence)


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the request fields when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        for key in ("request_id", "method", "path", "status", "duration_ms", "client"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, ensure_ascii=False)


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    """Sets up the root handler (called by entry points only).

    Args:
        fmt: ``text`` or ``json``.
        level: a logging level name.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "bm25s", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def security_headers(frame_ancestors: str) -> dict[str, str]:
    """Headers sent with every response."""
    return {
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                   f"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                   f"frame-ancestors {frame_ancestors}",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY" if frame_ancestors.strip() == "'none'" else "",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


class ObserveMiddleware:
    """Request id, one access-log line per request, metrics, security headers (plain ASGI).

    It is the outermost layer of the app, so every response passes through it, errors included;
    an exception no handler took is answered here with a JSON 500 that carries the request id.
    Plain ASGI rather than ``BaseHTTPMiddleware``: no extra task and stream per request.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, frame_ancestors: str) -> None:
        self.app = app
        self.metrics = metrics
        self.headers = {k: v for k, v in security_headers(frame_ancestors).items() if v}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = Headers(scope=scope).get("x-request-id", "")[:64] or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                headers = MutableHeaders(scope=message)
                headers.update(self.headers)
                headers["X-Request-ID"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unexpected error (request %s)", rid)
            if started:  # the response is under way: nothing more can be said to this client
                raise
            await error_response(500, "internal", "internal error; the request id is in the X-Request-ID header")(
                scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method, path = scope["method"], scope["path"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                log.info("%s %s %s %d %.1fms", rid, method, path, status, elapsed * 1000,
                         extra={"request_id": rid, "method": method, "path": path, "status": status,
                                "duration_ms": round(elapsed * 1000, 2), "client": client[0] if client else ""})
