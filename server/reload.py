"""Hot reload: rebuild the engine from the data folder in the background, swap it in whole.

A reload that finds a parse problem (any warning, or no entry at all) keeps the last good
engine serving and reports the problem, with file and line, on ``/readyz`` (the rule is
:func:`qa.search.load_or_build`'s).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from qa.errors import QAError
from qa.search import Engine
from server.settings import ServerSettings

log = logging.getLogger(__name__)

WATCHED_SUFFIXES = (".md", ".yaml", ".yml", ".tsv", ".txt")


class Reloader:
    """Runs one reload at a time and remembers how the last one went."""

    def __init__(self, settings: ServerSettings, current: Callable[[], Engine | None],
                 load: Callable[[ServerSettings, Engine | None], Engine],
                 publish: Callable[[Engine], None], fail: Callable[[str], None],
                 on_result: Callable[[str], None] = lambda result: None) -> None:
        self.settings = settings
        self._current = current
        self._load = load
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
            try:
                engine = self._load(self.settings, self._current())
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
