"""The FastAPI app factory: heavy objects load once, in the lifespan; routes only render."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.encoders import load_encoder
from qa.errors import QAError
from qa.search import Engine
from qa.shared import Breaker, RedisLink
from server import feedback
from server.batching import BatchingEncoder
from server.models import error_response
from server.observability import Metrics, ObserveMiddleware, SharedStateCollector
from server.ratelimit import AuthGuard, LimitStore, RateLimiter, RateLimitMiddleware
from server.reload import Reloader, ReloadSync
from server.settings import ServerSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


class EngineHolder:
    """The engine being served; swapped whole, so a request sees one engine from start to end."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine
        self.error: str | None = None if engine else "loading the model and index"
        self._lock = threading.Lock()

    def set(self, engine: Engine) -> None:
        with self._lock:
            self.engine, self.error = engine, None

    def fail(self, reason: str) -> None:
        with self._lock:
            self.error = reason


def load_engine(settings: ServerSettings, serving: Engine | None = None) -> Engine:
    """The server's engine, at start-up and on every reload: built from the settings, warmed up.

    Args:
        settings: what to load.
        serving: the engine serving now, if any: its encoder and its shared answer cache (the
            Redis connection, the counts) are reused, and data with warnings is refused (the last
            good index keeps serving).

    Raises:
        QAError: model, FAQ or index problems (BuildRefused for data with warnings).
    """
    # One thread owns the encoder and merges concurrent questions into batches (see BatchingEncoder).
    fresh = BatchingEncoder(load_encoder(settings.model)) if serving is None else None
    encoder = serving.encoder if serving is not None else fresh
    try:
        engine = Engine.from_settings(settings, encoder=encoder, serving=serving is not None,
                                      shared_cache=serving.cache.shared if serving is not None else None,
                                      cache_stats=serving.cache.stats if serving is not None else None)
        engine.warm_up()
    except BaseException:
        if fresh is not None:
            fresh.close()  # a failed load keeps no worker thread; the next attempt loads the model again
        raise
    return engine


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
                 422: "invalid_request", 429: "rate_limited", 503: "not_ready"}


def create_app(settings: ServerSettings | None = None, engine: Engine | None = None,
               loader: Callable[[ServerSettings], Engine] | None = None) -> FastAPI:
    """Builds the app.

    Args:
        settings: configuration (default: from the environment).
        engine: a ready engine (tests pass a small one); without it the lifespan loads one in
            the background, and ``/readyz`` answers 503 until it is there.
        loader: how to load an engine, at start-up and on reloads (default :func:`load_engine`).

    Returns:
        The FastAPI app.
    """
    settings = settings or ServerSettings()
    metrics = Metrics()
    holder = EngineHolder(engine)
    load: Callable[..., Engine] = loader or load_engine

    def publish(e: Engine) -> None:
        holder.set(e)
        metrics.entries.set(len(e.kb.entries))
        metrics.vectors.set(len(e.dense))
        metrics.build_info.clear()
        manifest = e.dense.read_manifest(settings.index_dir) or {}
        metrics.build_info.labels(e.dense.model, e.dense.data_hash, str(manifest.get("built_at", ""))).set(1)

    reloader = Reloader(settings, lambda: holder.engine, load, publish, holder.fail,
                        lambda result: metrics.reloads.labels(result).inc())

    # State shared by replicas (QA_RATE_LIMIT_STORAGE, QA_CACHE_URL): Redis behind breakers, local fallbacks.
    limit_store = LimitStore(settings.rate_limit_storage.get_secret_value(), settings.redis_timeout)

    def cache_link() -> RedisLink | None:
        shared = holder.engine.cache.shared if holder.engine is not None else None
        return shared.link if shared is not None else None

    sync = ReloadSync(cache_link, reloader, lambda: holder.engine.kb.data_hash if holder.engine else None) \
        if settings.cache_url is not None else None

    def links() -> dict[str, Breaker]:
        out: dict[str, Breaker] = {}
        if limit_store.breaker is not None:
            out["rate_limits"] = limit_store.breaker
        if (link := cache_link()) is not None:
            out["answer_cache"] = link
        return out

    def watch_shared_state() -> None:
        """One tick of the monitor: is each Redis there, and has another replica reloaded?"""
        for breaker in links().values():
            breaker.probe()
        if sync is not None:
            sync.tick()

    async def monitor() -> None:
        while True:
            try:
                await asyncio.to_thread(watch_shared_state)
            except Exception:  # the monitor must outlive anything one tick meets
                log.exception("shared-state monitor")
            await asyncio.sleep(settings.sync_interval)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None
        watcher = None
        feedback.start(app)  # the records' writer thread (it migrates the database first)
        shared_monitor = asyncio.create_task(monitor()) \
            if limit_store.breaker is not None or settings.cache_url is not None else None
        if settings.watch:
            paths = [p for p in {settings.data_dir, settings.faq_dir or settings.data_dir} if p.exists()]
            watcher = asyncio.create_task(reloader.watch(paths))
        if holder.engine is not None:
            publish(holder.engine)
        else:
            def locked_load() -> None:
                with reloader.lock:  # a reload asked for meanwhile waits, then reuses this encoder
                    publish(load(settings))

            async def background_load() -> None:
                try:
                    await asyncio.to_thread(locked_load)
                    log.info("ready: %d entries", len(holder.engine.kb.entries) if holder.engine else 0)
                except QAError as exc:
                    holder.fail(f"cannot load the engine: {exc}")
                    log.error("cannot load the engine: %s", exc)
                except Exception as exc:  # anything else must still reach /readyz, not hang "loading"
                    holder.fail(f"cannot load the engine: {exc.__class__.__name__}: {exc}")
                    log.exception("cannot load the engine")
            task = asyncio.create_task(background_load())
        yield
        for t in (task, watcher, shared_monitor):
            if t is not None and not t.done():
                t.cancel()
        await feedback.stop(app)  # stores the records still queued
        if holder.engine is not None and holder.engine.cache.shared is not None:
            await asyncio.to_thread(holder.engine.cache.shared.flush, 1.0)  # answers still queued for Redis

    app = FastAPI(
        title="OpenKruise FAQ answer bot",
        version="0.1.0",
        description="Answers questions about OpenKruise from its FAQ, in Chinese and English. "
                    "Every surface (this API, the chat page, the Slack command, the `qa` CLI) returns "
                    "the same answer.",
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: the default page loads Swagger UI from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.holder = holder
    app.state.publish = publish
    app.state.reloader = reloader
    feedback.install(app, settings, metrics)  # app.state.records_db, app.state.recorder (None: QA_RECORD=false)
    limiter = RateLimiter(settings.rate_limit, limit_store, scope="ask")
    app.state.limiter = limiter
    # failed admin and Slack authentications, counted in the same store (shared when the limits are)
    app.state.auth_guard = AuthGuard(settings.auth_failure_limit, limit_store)
    app.state.reload_sync = sync
    metrics.registry.register(SharedStateCollector(
        links, lambda: holder.engine.cache.stats.snapshot() if holder.engine is not None else {},
        (lambda: sync.in_sync()) if sync is not None else None))

    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    app.add_middleware(ObserveMiddleware, metrics=metrics, frame_ancestors=settings.frame_ancestors)  # outermost

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, _STATUS_CODES.get(exc.status_code, "error"), detail,
                              getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}".strip(": "))

    from server import admin, api, slack, slack_interactive

    app.include_router(api.router)
    app.include_router(slack.router)
    app.include_router(slack_interactive.router)
    app.include_router(admin.router)
    app.include_router(feedback.router)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def get_healthz() -> dict[str, str]:
        """Answers 200 while the process lives."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness", responses={503: {"description": "Not ready"}})
    async def get_readyz() -> Response:
        """200 once the index is loaded; 503 with the reason before (or after a failed load).

        ``shared`` says where rate limits and cached answers live and, for Redis, whether it is up:
        a replica whose Redis is down is still ready (it answers from local state)."""
        e = holder.engine
        if e is None:
            return error_response(503, "not_ready", holder.error or "not ready")
        body: dict[str, object] = {"status": "ready", "entries": len(e.kb.entries), "vectors": len(e.dense),
                                   "model": e.dense.model, "data_hash": e.dense.data_hash}
        if e.kb.warnings:
            body["warnings"] = [str(w) for w in e.kb.warnings]
        if holder.error:
            body["last_reload_error"] = holder.error
        shared: dict[str, object] = {
            "rate_limits": limit_store.status(),
            "answer_cache": e.cache.shared.link.status() if e.cache.shared is not None else {"store": "memory"}}
        if sync is not None:
            shared["reload_sync"] = sync.status()
        body["shared"] = shared
        return JSONResponse(body)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def get_metrics() -> Response:
        """Requests and latency per route, answer outcomes, confidence, index size and build."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def get_page() -> FileResponse:
        """The chat page."""
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/docs", include_in_schema=False)
    async def get_docs() -> FileResponse:
        """Swagger UI for this API, from local assets."""
        return FileResponse(STATIC / "docs.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    try:
        import swagger_ui_bundle

        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    except ImportError:  # pragma: no cover - the docs page then shows without styling
        log.warning("swagger-ui-bundle is not installed; /docs will not render")
    return app
