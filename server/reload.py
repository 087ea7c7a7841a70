"""Hot reload: rebuild the engine from the data folder in the background, swap it in whole.

A reload that finds a parse problem (any warning, or no entry at all) keeps the last good
engine serving and reports the problem, with file and line, on ``/readyz``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from qa.encoders import BatchingEncoder, Encoder, load_encoder
from qa.errors import QAError
from qa.knowledge import KnowledgeBase
from qa.search import Engine, load_or_build
from server.settings import ServerSettings

log = logging.getLogger(__name__)

WATCHED_SUFFIXES = (".md", ".yaml", ".yml", ".tsv", ".txt")


class ReloadRejected(QAError):
    """The new data does not parse cleanly; the old engine stays."""


def rebuild_engine(settings: ServerSettings, encoder: Encoder | None = None) -> Engine:
    """Loads the data again and returns a new engine (the index rebuilt when the data changed).

    Args:
        settings: where the data and index are.
        encoder: the encoder already loaded (reused; loading it again would be wasted work).

    Returns:
        The new engine.

    Raises:
        ReloadRejected: when any file has a parse warning.
        QAError: when nothing can be loaded.
    """
    kb = KnowledgeBase.load(settings.data_dir, settings.faq_dir)
    if kb.warnings:
        raise ReloadRejected("; ".join(str(w) for w in kb.warnings[:3]))
    # Nothing serving (the start-up load failed): this reload loads a model of its own.
    fresh = BatchingEncoder(load_encoder(settings.model)) if encoder is None else None
    encoder = encoder or fresh
    assert encoder is not None
    try:
        dense = load_or_build(kb, encoder, settings.index_dir)
    except BaseException:
        if fresh is not None:
            fresh.close()  # its worker thread and model go with it
        raise
    return Engine(kb, encoder, dense, threshold=settings.threshold, cache_size=settings.cache_size)


class Reloader:
    """Runs one reload at a time and remembers how the last one went."""

    def __init__(self, settings: ServerSettings, current: Callable[[], Engine | None],
                 publish: Callable[[Engine], None], fail: Callable[[str], None],
                 on_result: Callable[[str], None] = lambda result: None) -> None:
        self.settings = settings
        self._current = current
        self._publish = publish
        self._fail = fail
        self._on_result = on_result
        self._lock = threading.Lock()
        self._state = threading.Lock()
        self._pending = False
        self._running = False
        self.last: dict[str, object] = {}

    def reload(self) -> dict[str, object]:
        """Rebuilds and swaps; on failure the serving engine stays.

        Returns:
            ``{"status": "ok"|"failed", "seconds", "entries" | "error"}``.
        """
        with self._lock:
            start = time.perf_counter()
            old = self._current()
            try:
                engine = rebuild_engine(self.settings, old.encoder if old else None)
            except Exception as exc:  # QAError, or anything unexpected: the old engine keeps serving
                if not isinstance(exc, QAError):
                    log.exception("unexpected error while reloading")
                msg = f"reload failed, still serving the last good index: {exc}"
                log.error("%s", msg)
                self._fail(msg)
                self._on_result("failed")
                self.last = {"status": "failed", "error": str(exc), "seconds": round(time.perf_counter() - start, 3)}
                return self.last
            self._publish(engine)
            self._on_result("ok")
            self.last = {"status": "ok", "entries": len(engine.kb.entries), "vectors": len(engine.dense),
                         "seconds": round(time.perf_counter() - start, 3)}
            log.info("reloaded: %d entries in %.2fs", len(engine.kb.entries), time.perf_counter() - start)
            return self.last

    @property
    def lock(self) -> threading.Lock:
        """Held while the engine is (re)built; the start-up load takes it too."""
        return self._lock

    def start(self) -> bool:
        """Starts a reload in a background thread; a request during a reload queues one more.

        Returns:
            False when a reload was already running (another one follows it, so edits made
            meanwhile are picked up).
        """
        with self._state:
            self._pending = True
            if self._running:
                return False
            self._running = True
        threading.Thread(target=self._drain, name="qa-reload", daemon=True).start()
        return True

    def _drain(self) -> None:
        while True:
            with self._state:
                if not self._pending:
                    self._running = False
                    return
                self._pending = False
            self.reload()

    async def watch(self, paths: list[Path], debounce_ms: int = 500) -> None:
        """Reloads whenever FAQ or data files under ``paths`` change (runs until cancelled)."""
        from watchfiles import awatch

        def relevant(change: object, path: str) -> bool:
            return path.endswith(WATCHED_SUFFIXES) and "/eval/" not in path

        async for changes in awatch(*paths, watch_filter=relevant, debounce=debounce_ms):
            log.info("data changed (%d files); reloading", len(changes))
            await asyncio.to_thread(self.reload)
