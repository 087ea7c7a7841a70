"""Hot reload: rebuild the engine from the data folder in the background, swap it in whole.

A reload that finds a parse problem (any warning, or no entry at all) keeps the last good
engine serving and reports the problem, with file and line, on ``/readyz`` (the rule is
:func:`qa.search.load_or_build`'s).

Several replicas (``QA_CACHE_URL`` set): a reload asked of one replica (``POST /admin/reload``,
or its watcher) is published in Redis, and every other replica reloads from its own data folder
(:class:`ReloadSync`). Each replica builds and checks its own index by the same rule, so data
with warnings never replaces a good index anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qa.errors import QAError
from qa.search import Engine
from qa.shared import RedisLink
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
        self.announce: Callable[[Engine], None] | None = None  # set by ReloadSync: tells the other replicas

    def reload(self, announce: bool = True) -> dict[str, object]:
        """Rebuilds and swaps; on failure the serving engine stays.

        Args:
            announce: publish a successful reload to the other replicas (when there are any);
                False for a reload that follows another replica's.

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
            if announce and self.announce is not None:
                self.announce(engine)
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


RELOAD_KEY = "qa:reload"  # in the answer cache's Redis database: the last reload a replica asked for
RETRY_SECONDS = 30.0
MAX_ATTEMPTS = 3
_UNREAD = object()


class ReloadSync:
    """A reload on one replica reaches all: one key in Redis, read by every replica every tick.

    The replica that reloads (for ``POST /admin/reload`` or its watcher) writes a note — a new id,
    the data hash it now serves, its name, the time — under :data:`RELOAD_KEY`. Every replica reads
    the key on each tick of the server's monitor (``QA_SYNC_INTERVAL``); a note it has not seen,
    written after it started, whose data hash it does not serve yet, makes it reload from its own
    data folder (not announced again, so nothing echoes). Should its data still differ after that
    (a volume that has not caught up yet), it tries again after :data:`RETRY_SECONDS`, at most
    :data:`MAX_ATTEMPTS` times for that note. A note that cannot be written while Redis is away is
    written when it is back.

    A key rather than a pub/sub message: a replica that was restarting, or cut off from Redis, when
    the reload happened still finds the note at its next tick, and the tick is also the health check
    of Redis that ``/readyz`` reports.
    """

    def __init__(self, link: Callable[[], RedisLink | None], reloader: Reloader,
                 serving_hash: Callable[[], str | None], replica: str | None = None,
                 retry_seconds: float = RETRY_SECONDS, max_attempts: int = MAX_ATTEMPTS) -> None:
        self._link = link
        self._reloader = reloader
        self._serving_hash = serving_hash
        self.replica = replica or f"{socket.gethostname()}/{os.getpid()}"
        self._retry = retry_seconds
        self._max_attempts = max_attempts
        self.started = time.time()
        self._lock = threading.Lock()
        self._unsent: dict[str, Any] | None = None
        self._seen: str | None = None
        self.note: dict[str, Any] | None = None  # the last note read or written
        self.wanted: str | None = None  # the data hash that note asks this replica to serve
        self._attempts = 0
        self._next_attempt = 0.0
        self.followed = 0  # reloads made for other replicas' notes
        reloader.announce = self.announce

    def announce(self, engine: Engine) -> None:
        """Publishes a reload this replica made (the next tick retries when Redis is away)."""
        note: dict[str, Any] = {"id": uuid.uuid4().hex, "data_hash": engine.kb.data_hash, "by": self.replica,
                                "at": time.time()}
        with self._lock:
            self._unsent, self._seen, self.note, self.wanted = note, note["id"], note, None
        self._send()

    def _send(self) -> None:
        link = self._link()
        with self._lock:
            note = self._unsent
        if note is None or link is None:
            return
        if link.call(lambda: link.client.set(RELOAD_KEY, json.dumps(note)), None):
            with self._lock:
                if self._unsent is note:
                    self._unsent = None
            log.info("reload published to the other replicas: data %s", note["data_hash"])

    def tick(self) -> None:
        """Sends a note still unsent, reads the key, and reloads when another replica's note asks for it."""
        link = self._link()
        if link is None:
            return
        self._send()
        raw = link.call(lambda: link.client.get(RELOAD_KEY), _UNREAD)
        if not isinstance(raw, (bytes, str)):  # Redis away (_UNREAD), or no reload published yet (None)
            return
        try:
            note = json.loads(raw)
            fresh = (str(note["id"]), str(note["data_hash"]), str(note["by"]), float(note["at"]))
        except (ValueError, TypeError, KeyError):
            log.warning("ignoring an unreadable reload note in redis")
            return
        note_id, data_hash, by, at = fresh
        with self._lock:
            if note_id != self._seen:
                self._seen, self.note = note_id, note
                mine_or_old = by == self.replica or at < self.started  # the start-up load read the data after it
                self.wanted = None if mine_or_old else data_hash
                self._attempts, self._next_attempt = 0, 0.0
            wanted = self.wanted
            if wanted is None or self._serving_hash() in (None, wanted):
                return
            if self._attempts >= self._max_attempts or time.monotonic() < self._next_attempt:
                return
            self._attempts += 1
            self._next_attempt = time.monotonic() + self._retry
            attempt = self._attempts
        log.info("replica %s reloaded (data %s); reloading from %s (attempt %d)", by, data_hash,
                 self._reloader.settings.data_dir, attempt)
        result = self._reloader.reload(announce=False)
        self.followed += 1
        now = self._serving_hash()
        if result.get("status") == "ok" and now != data_hash:
            log.warning("reloaded, but this replica's data (%s) is not the one replica %s serves (%s)",
                        now, by, data_hash)

    def in_sync(self) -> bool:
        """False while another replica's reload is published and this one serves other data."""
        wanted = self.wanted
        return wanted is None or self._serving_hash() == wanted

    def status(self) -> dict[str, object]:
        """For ``/readyz``."""
        out: dict[str, object] = {"replica": self.replica, "in_sync": self.in_sync(), "followed": self.followed}
        note = self.note
        if note is not None:
            out["last_reload"] = {"by": note.get("by"), "data_hash": note.get("data_hash"),
                                  "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(note.get("at", 0))))}
        if self._unsent is not None:
            out["unsent"] = True
        return out
