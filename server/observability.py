"""Metrics (Prometheus), request logging with request ids, and security headers."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.contract import Answer
from qa.shared import Breaker
from server.models import error_response

log = logging.getLogger("server.access")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CLIENT_GONE = 499  # the status recorded for a request whose client hung up before it was answered (nginx's)
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# What could split or disguise a log line: C0 and C1 controls, line and paragraph separators,
# bidirectional embeddings, overrides and isolates.
_LOG_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # json.dumps escapes C0
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    return _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape_log(text: str) -> str:
    """``text`` on one line: CR, LF, tab and other control or bidirectional characters as escapes."""
    return _LOG_UNSAFE.sub(_escape_char, text)


def request_id(given: str | None) -> str:
    """The client's ``X-Request-ID`` when it is a short token (letters, digits, ``-``, ``_``; at most
    64), otherwise a new one."""
    return given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]


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


class TextFormatter(logging.Formatter):
    """Text lines that a client cannot split or forge: the message is escaped onto one line
    (:func:`escape_log`), and a traceback's lines are indented under it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_log(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:
        text = super().formatException(ei)  # type: ignore[arg-type]
        return "\n".join("  " + _LOG_UNSAFE.sub(_escape_char, line) for line in text.splitlines())


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
        for key, value in out.items():
            if isinstance(value, str):
                out[key] = _JSON_UNSAFE.sub(_escape_char, value)
        return json.dumps(out, ensure_ascii=False)  # escapes C0 controls, so one object stays one line


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    """Sets up the root handler (called by entry points only).

    Args:
        fmt: ``text`` or ``json``.
        level: a logging level name.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
    """Request id, one access-log line per request, metrics, security headers, HEAD (plain ASGI).

    It is the outermost layer of the app, so every response passes through it, errors included;
    an exception no handler took is answered here with a JSON 500 that carries the request id.
    A client that hung up before its answer (its body cut short, or closed by the read timeout)
    is not an error of ours: no response, no traceback, status 499 in the log and the metrics.
    ``HEAD`` is answered wherever ``GET`` is: the app sees a ``GET`` and the body is dropped
    (the headers, ``Content-Length`` included, are the ``GET``'s).
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
        rid = request_id(Headers(scope=scope).get("x-request-id"))
        scope.setdefault("state", {})["request_id"] = rid
        head = scope["method"] == "HEAD"
        inner = {**scope, "method": "GET"} if head else scope  # the router sets "route" on this one
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
            elif head and message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(inner, receive, send_with_headers)
        except ClientDisconnect:
            if not started:
                status = CLIENT_GONE  # nobody is left to answer
        except Exception:
            log.exception("unexpected error (request %s)", rid)
            if started:  # the response is under way: nothing more can be said to this client
                raise
            await error_response(500, "internal", "internal error; the request id is in the X-Request-ID header")(
                inner, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(inner.get("route"), "path", None) or "unmatched"
            method, path = scope["method"], scope["path"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                log.info("%s %s %s %d %.1fms", rid, method, path, status, elapsed * 1000,
                         extra={"request_id": rid, "method": method, "path": path, "status": status,
                                "duration_ms": round(elapsed * 1000, 2), "client": client[0] if client else ""})


class CountsCollector(Collector):
    """Exports a live mapping of counts as one Prometheus counter with a ``reason`` label (e.g. the
    connections the HTTP protocol closed for a limit: ``server.protocol.REFUSED``)."""

    def __init__(self, name: str, documentation: str, counts: Callable[[], Mapping[str, int]]) -> None:
        self.name, self.documentation, self.counts = name, documentation, counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=["reason"])
        for reason, n in sorted(self.counts().items()):
            family.add_metric([reason], n)
        yield family


LOOKUPS = ("local_hit", "shared_hit", "miss")
WRITES = ("stored", "dropped", "failed")


class SharedStateCollector(Collector):
    """What replicas share, read live at each scrape: whether each Redis is up, its errors, the answer
    cache's lookups (``local_hit``, ``shared_hit``: computed by another engine or replica, ``miss``)
    and writes to Redis, and whether this replica serves the data another one's reload published.

    Args:
        links: use (``rate_limits``, ``answer_cache``) → its breaker; empty when nothing is in Redis.
        cache_counts: the answer cache's counts (:class:`qa.answer_cache.CacheStats`).
        in_sync: whether the last published reload is served here (None: no reload sync).
    """

    def __init__(self, links: Callable[[], Mapping[str, Breaker]], cache_counts: Callable[[], Mapping[str, int]],
                 in_sync: Callable[[], bool] | None = None) -> None:
        self.links, self.cache_counts, self.in_sync = links, cache_counts, in_sync

    def collect(self) -> Iterator[Metric]:
        links = self.links()
        up = GaugeMetricFamily("qa_redis_up", "1 while Redis answers, 0 while it is down (the replica then "
                               "uses local limits and cache)", labels=["use"])
        errors = CounterMetricFamily("qa_redis_errors", "Redis calls that failed or timed out", labels=["use"])
        for use, breaker in sorted(links.items()):
            up.add_metric([use], 1.0 if breaker.up else 0.0)
            errors.add_metric([use], breaker.errors)
        yield up
        yield errors
        counts = self.cache_counts()
        lookups = CounterMetricFamily("qa_answer_cache_lookups", "Answer cache lookups by result: local_hit, "
                                      "shared_hit (from Redis: another replica's answer), miss", labels=["result"])
        for result in LOOKUPS:
            lookups.add_metric([result], counts.get(result, 0))
        yield lookups
        if "answer_cache" in links:
            writes = CounterMetricFamily("qa_answer_cache_shared_writes", "Answers written to the shared cache: "
                                         "stored, dropped (Redis down or too many queued), failed",
                                         labels=["result"])
            for result in WRITES:
                writes.add_metric([result], counts.get(result, 0))
            yield writes
            yield CounterMetricFamily("qa_answer_cache_unreadable", "Shared cache entries that did not read as "
                                      "an answer (treated as misses)", value=counts.get("unreadable", 0))
        if self.in_sync is not None:
            yield GaugeMetricFamily("qa_reload_in_sync", "1 when this replica serves the data of the last reload "
                                    "another replica published", value=1.0 if self.in_sync() else 0.0)
