"""Writing the records without ever slowing or failing an answer.

A surface hands each answer to :meth:`Recorder.record_answer`, which only puts a small record on a
bounded queue (it never blocks: when the queue is full the record is dropped and counted). One
background thread gathers records for up to a second (or until 500 are waiting), redacts and
pseudonymises them, and inserts them in one transaction. When the database is down
or full the batch is kept and retried with a growing pause (0.2 s to 5 s) while new records wait
in the queue; nothing is lost unless the outage outlasts the queue. Closing flushes what is waiting.

Feedback is different: the person giving it is told whether it was stored, so
:meth:`Recorder.feedback` writes at once (from a request's worker thread) and raises
:class:`UnknownAnswer` or :class:`RecordsUnavailable`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

import sqlalchemy as sa

from qa.errors import QAError
from qa.records import db
from qa.records.privacy import pseudonym, redact
from qa.records.schema import clicks, feedback, questions

if TYPE_CHECKING:
    from qa.contract import Answer
    from qa.settings import Settings

log = logging.getLogger(__name__)

SURFACES = frozenset({"api", "page", "slack", "cli"})


class UnknownAnswer(QAError, KeyError):
    """No recorded question has this answer id."""


class RecordsUnavailable(QAError):
    """The records database cannot be reached or written now."""


def utcnow() -> datetime:
    """Now, in UTC, without a zone (how the records store times)."""
    return datetime.now(UTC).replace(tzinfo=None)


class QuestionRecord(NamedTuple):
    """A question as it waits in the queue: the answer as shown (frozen, so shared safely) and the
    raw asker; the writer redacts, hashes and flattens it, off the request's path."""

    answer: Answer
    surface: str
    asker: str | None  # the raw identity, held in memory only until the writer hashes it
    at: float  # time.time()

    @property
    def answer_id(self) -> str:
        return self.answer.answer_id


class ClickRecord(NamedTuple):
    """An alternative clicked under an earlier answer."""

    answer_id: str
    entry_id: str
    surface: str
    next_answer_id: str | None
    at: float  # time.time()


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC).replace(tzinfo=None)


class RecorderHooks:
    """What the recorder reports; the server counts these in /metrics. The defaults do nothing."""

    def written(self, kind: str, n: int) -> None:
        """``n`` records of ``kind`` (``question``, ``click``, ``feedback``) were stored."""

    def failed(self, stage: str) -> None:
        """A database operation failed (``write``, ``migrate``, ``feedback``, ``retention``)."""

    def dropped(self, reason: str, n: int) -> None:
        """``n`` records were given up (``queue_full``, ``shutdown``, ``rejected``)."""

    def deleted(self, n: int) -> None:
        """``n`` rows were deleted by the retention."""


_Item = QuestionRecord | ClickRecord | threading.Event  # an Event marks a flush


class Recorder:
    """Records questions, clicks and feedback in the records database (see the module's docstring).

    Call :meth:`start` once the app starts and :meth:`close` when it stops.
    """

    def __init__(self, engine: sa.Engine, *, salt: str | None = None, retention_days: int = 90,
                 queue_size: int = 10_000, batch_size: int = 500, batch_delay: float = 1.0,
                 retention_every: float = 3600.0, hooks: RecorderHooks | None = None) -> None:
        """Args:
            engine: the records database (:func:`qa.records.db.make_engine`); nothing connects yet.
            salt: the pseudonyms' salt (``QA_RECORD_SALT``); default: the one kept in the database.
            retention_days: rows older than this are deleted, at start and every ``retention_every``
                seconds (0: never).
            queue_size: records waiting at most; more are dropped (and counted), never waited for.
            batch_size: records written in one transaction at most.
            batch_delay: seconds the writer gathers records before it writes (sooner when a full
                batch is waiting, on :meth:`flush` and on :meth:`close`).
            hooks: counters (the server's /metrics).
        """
        self.engine = engine
        self.hooks = hooks or RecorderHooks()
        self.retention_days = retention_days
        self._given_salt = salt or None
        self._salt: str | None = None
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._batch_delay = batch_delay
        self._retention_every = retention_every
        self._next_retention = 0.0
        self._next_prepare = 0.0
        self._give_up_at = 0.0
        self._held = 0  # records of a failed batch, kept for the next try
        self._redact_memo: dict[str, str] = {}
        self._pseudonym_memo: dict[str, str] = {}
        self._ready = False
        self._ready_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unwritten: set[str] = set()  # answer ids queued, not yet stored (feedback flushes for them)
        self._last_warning = 0.0
        self._failing_since: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, hooks: RecorderHooks | None = None, **kwargs: object) -> Recorder:
        """A recorder on ``QA_DATABASE_URL`` (or SQLite in ``QA_STATE_DIR``), with the salt and retention
        the settings give."""
        salt = settings.record_salt.get_secret_value() if settings.record_salt is not None else None
        return cls(db.make_engine(db.database_url(settings)), salt=salt, retention_days=settings.record_days,
                   hooks=hooks, **kwargs)  # type: ignore[arg-type]

    # -- the request side: never blocks ---------------------------------------------------

    def record_answer(self, answer: Answer, surface: str, asker: str | None = None) -> None:
        """Queues the record of an answer.

        Args:
            answer: what the surface showed.
            surface: ``api``, ``page``, ``slack`` or ``cli``.
            asker: ``slack:TEAM:USER`` or ``ip:ADDRESS`` (hashed before it is stored), or None.
        """
        self._put(QuestionRecord(answer, surface, asker, time.time()))

    def record_click(self, answer_id: str, entry_id: str, surface: str, next_answer_id: str | None = None) -> None:
        """Queues "the alternative ``entry_id`` was clicked under the answer ``answer_id``"
        (``next_answer_id``: the answer that click got, when known)."""
        self._put(ClickRecord(answer_id, entry_id, surface, next_answer_id, time.time()))

    def _put(self, item: QuestionRecord | ClickRecord) -> None:
        if isinstance(item, QuestionRecord):
            self._unwritten.add(item.answer_id)
        try:
            self._queue.put_nowait(item)
            if len(self._queue.queue) >= self._batch_size and not self._held:  # (no lock: a length will do)
                self._wake.set()  # a full batch is waiting: write it now (not while retrying: that keeps its pace)
        except queue.Full:
            if isinstance(item, QuestionRecord):
                self._unwritten.discard(item.answer_id)
            self.hooks.dropped("queue_full", 1)
            self._warn("records: the queue is full (%d waiting); a record was dropped", self._queue.qsize())

    @property
    def waiting(self) -> int:
        """Records not stored yet: queued, or held by the writer for a retry."""
        return self._queue.qsize() + self._held

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the writer thread, which migrates the database (``alembic upgrade head``), reads
        the salt and applies the retention before its first write, retrying while the database is down."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="qa-records", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until everything queued before this call is stored (or given up). False on timeout."""
        marker = threading.Event()
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        self._wake.set()
        if self._thread is None or not self._thread.is_alive():
            self.start()
        return marker.wait(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 10.0) -> None:
        """Stores what is waiting, then stops the writer. When the database does not take it within
        ``timeout`` seconds, the rest is dropped, counted and logged."""
        thread = self._thread
        if thread is None:
            return
        self._give_up_at = time.monotonic() + max(0.0, timeout - 1.0)
        self._stop.set()
        self._wake.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(threading.Event())  # wakes the writer if it waits for the queue
        thread.join(timeout)
        if thread.is_alive():
            log.error("records: the writer did not finish within %.0f s; %d records waiting are lost",
                      timeout, self._queue.qsize())
        self._thread = None

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        batch: list[_Item] = []
        pause = 0.2
        self._prepare()
        while True:
            if not batch:
                if self._stop.is_set() and self._queue.empty():
                    return
                try:
                    batch.append(self._queue.get(timeout=0.5))
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    self._prepare()
                    continue
                if self._batch_delay > 0 and not self._stop.is_set() and self._queue.qsize() < self._batch_size:
                    # Gather: one transaction a second rather than one a question (a flush, closing,
                    # or a full batch waiting cut it short). A write holds the GIL for a while; once
                    # a second it touches few answers, once a question it would touch them all.
                    self._wake.wait(self._batch_delay)
                    self._wake.clear()
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self._write(batch):
                batch, pause, self._held = [], 0.2, 0
                self._maybe_retention()
                continue
            self._held = sum(not isinstance(i, threading.Event) for i in batch)
            if self._stop.is_set():  # closing with the database down: try until close's timeout, then give up
                if time.monotonic() >= self._give_up_at:
                    lost = self._drop(batch, "shutdown") + self._drain_dropping("shutdown")
                    self._held = 0
                    log.error("records: the database is unavailable at shutdown; %d records were lost", lost)
                    return
            self._wake.wait(min(pause, max(0.05, self._give_up_at - time.monotonic())) if self._stop.is_set()
                            else pause)
            self._wake.clear()
            pause = min(pause * 2, 5.0)

    def _write(self, batch: list[_Item]) -> bool:
        """Stores the batch; True when done (markers released), False to retry later."""
        rows_q, rows_c = [], []
        for item in batch:
            if isinstance(item, QuestionRecord):
                rows_q.append(item)
            elif isinstance(item, ClickRecord):
                rows_c.append(item)
        if not rows_q and not rows_c:
            self._release(batch)
            return True
        try:
            self._ensure_ready()
            values_q = []
            for i, r in enumerate(rows_q):
                values_q.append(self._question_row(r))
                if i % 64 == 63:
                    time.sleep(0)  # hands the GIL to the request threads now and then
            values_c = [self._click_row(r) for r in rows_c]
            try:
                with self.engine.begin() as conn:
                    if values_q:
                        conn.execute(questions.insert(), values_q)
                    if values_c:
                        conn.execute(clicks.insert(), values_c)
            except (sa.exc.IntegrityError, sa.exc.DataError):
                self._write_one_by_one(rows_q, rows_c)  # (a connection error in there is retried below)
            else:
                self._written(rows_q, rows_c)
        except Exception as exc:  # down, full, locked, dropped tables...: keep the batch and retry
            self._ready = False  # the next try checks the schema again (cheap when it is current)
            self.hooks.failed("write")
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            self._warn("records: cannot write %d records (%d more waiting), will retry: %s", len(rows_q) + len(rows_c),
                       self._queue.qsize(), _short(exc))
            return False
        self._release(batch)
        return True

    def _write_one_by_one(self, rows_q: list[QuestionRecord], rows_c: list[ClickRecord]) -> None:
        """A batch the database refused as data (e.g. an answer id stored twice): each row on its own."""
        stored_q = [r for r in rows_q if self._insert_one(questions, self._question_row(r))]
        stored_c = [r for r in rows_c if self._insert_one(clicks, self._click_row(r))]
        self._written(stored_q, stored_c)
        for r in rows_q:
            self._unwritten.discard(r.answer_id)

    def _insert_one(self, table: sa.Table, row: dict[str, object]) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(table.insert(), [row])
        except (sa.exc.IntegrityError, sa.exc.DataError) as exc:
            self.hooks.dropped("rejected", 1)
            log.warning("records: a record was refused by the database: %s", _short(exc))
            return False
        return True

    def _written(self, rows_q: list[QuestionRecord], rows_c: list[ClickRecord]) -> None:
        if rows_q:
            self.hooks.written("question", len(rows_q))
        if rows_c:
            self.hooks.written("click", len(rows_c))
        for r in rows_q:
            self._unwritten.discard(r.answer_id)
        if self._failing_since is not None:
            log.warning("records: the database is back after %.1f s", time.monotonic() - self._failing_since)
            self._failing_since = None

    @staticmethod
    def _release(batch: list[_Item]) -> None:
        for item in batch:
            if isinstance(item, threading.Event):
                item.set()

    def _drop(self, batch: list[_Item], reason: str) -> int:
        records = [i for i in batch if not isinstance(i, threading.Event)]
        for r in records:
            if isinstance(r, QuestionRecord):
                self._unwritten.discard(r.answer_id)
        if records:
            self.hooks.dropped(reason, len(records))
        self._release(batch)
        return len(records)

    def _drain_dropping(self, reason: str) -> int:
        rest: list[_Item] = []
        while True:
            try:
                rest.append(self._queue.get_nowait())
            except queue.Empty:
                return self._drop(rest, reason)

    def _question_row(self, r: QuestionRecord) -> dict[str, object]:
        a = r.answer
        match = a.match
        return {"answer_id": a.answer_id, "asked_at": _utc(r.at), "surface": r.surface,
                "question": self._redacted(a.question), "language": a.language,
                "entry_id": match.id if match is not None else None, "confidence": float(a.confidence),
                "score": float(a.score), "alternatives": json.dumps([x.id for x in a.alternatives]),
                "latency_ms": float(a.took_ms), "asker": self._pseudonym(r.asker) if r.asker else None}

    def _redacted(self, text: str) -> str:
        """Redacted, remembered for repeated questions (the writer thread alone uses the memo)."""
        done = self._redact_memo.get(text)
        if done is None:
            done = redact(text)
            if len(self._redact_memo) >= 4096:
                self._redact_memo.clear()
            self._redact_memo[text] = done
        return done

    def _pseudonym(self, identity: str) -> str:
        done = self._pseudonym_memo.get(identity)
        if done is None:
            done = pseudonym(identity, self._salt or "")
            if len(self._pseudonym_memo) >= 4096:
                self._pseudonym_memo.clear()
            self._pseudonym_memo[identity] = done
        return done

    @staticmethod
    def _click_row(r: ClickRecord) -> dict[str, object]:
        return {"clicked_at": _utc(r.at), "answer_id": r.answer_id, "entry_id": r.entry_id, "surface": r.surface,
                "next_answer_id": r.next_answer_id}

    # -- schema, salt, retention ----------------------------------------------------------

    def _ensure_ready(self) -> None:
        """Migrates the database and reads the salt, once (again after a failure)."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                db.upgrade(self.engine)
                self._salt = self._given_salt or db.shared_salt(self.engine)
            except Exception:
                self.hooks.failed("migrate")
                raise
            self._ready = True
            log.info("records: database %s ready (revision %s)", db.describe(self.engine.url), db.head_revision())

    def _prepare(self) -> None:
        """While idle: the migration and the salt (at start, and again every 5 s while the database is
        down), then the retention when it is due."""
        if not self._ready and time.monotonic() >= self._next_prepare:
            try:
                self._ensure_ready()
            except Exception as exc:
                self._next_prepare = time.monotonic() + 5.0
                self._warn("records: the database is unavailable, will retry: %s", _short(exc))
                return
        self._maybe_retention()

    def _maybe_retention(self) -> None:
        if not self._ready or time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + self._retention_every
        if self.retention_days > 0:
            self.delete_older_than(timedelta(days=self.retention_days))

    def delete_older_than(self, age: timedelta) -> int:
        """Deletes questions, feedback and clicks older than ``age``; returns how many rows went."""
        cutoff = utcnow() - age
        try:
            with self.engine.begin() as conn:
                n = sum(conn.execute(t.delete().where(c < cutoff)).rowcount or 0
                        for t, c in ((questions, questions.c.asked_at), (feedback, feedback.c.updated_at),
                                     (clicks, clicks.c.clicked_at)))
        except Exception as exc:
            self.hooks.failed("retention")
            self._warn("records: the retention could not delete old rows: %s", _short(exc))
            return 0
        if n:
            self.hooks.deleted(n)
            log.info("records: deleted %d rows older than %s", n, age)
        return n

    # -- feedback (written at once) -------------------------------------------------------

    def feedback(self, answer_id: str, helpful: bool, comment: str | None = None, surface: str = "api") -> bool:
        """Stores a 👍/👎 on an answer (a later one replaces it; a comment is kept unless a new one is given).

        Returns:
            True when it is the answer's first feedback, False when it replaced one.

        Raises:
            UnknownAnswer: no recorded question has this answer id.
            RecordsUnavailable: the database cannot be reached or written now.
        """
        if answer_id in self._unwritten:  # asked a moment ago, still in the queue
            self.flush(timeout=5.0)
        now = utcnow()
        values: dict[str, object] = {"helpful": bool(helpful), "surface": surface, "updated_at": now}
        if comment is not None and comment.strip():
            values["comment"] = redact(comment.strip())
        try:
            self._ensure_ready()
            for _ in range(2):
                try:
                    with self.engine.begin() as conn:
                        known = conn.execute(sa.select(questions.c.answer_id)
                                             .where(questions.c.answer_id == answer_id)).first()
                        if known is None:
                            raise UnknownAnswer(answer_id)
                        if conn.execute(feedback.update().where(feedback.c.answer_id == answer_id)
                                        .values(**values)).rowcount:
                            created = False
                        else:
                            conn.execute(feedback.insert().values(answer_id=answer_id, created_at=now, **values))
                            created = True
                    self.hooks.written("feedback", 1)
                    return created
                except sa.exc.IntegrityError:  # another request inserted it meanwhile: update it instead
                    continue
            raise RecordsUnavailable("the feedback could not be stored")
        except (UnknownAnswer, RecordsUnavailable):
            raise
        except Exception as exc:
            self._ready = False
            self.hooks.failed("feedback")
            log.warning("records: cannot store feedback: %s", _short(exc))
            raise RecordsUnavailable(f"the records database is unavailable: {_short(exc)}") from exc

    # -- logging ------------------------------------------------------------------------------

    def _warn(self, message: str, *args: object) -> None:
        """A warning at most every 30 s (an outage would otherwise log every retry)."""
        now = time.monotonic()
        if now - self._last_warning >= 30.0:
            self._last_warning = now
            log.warning(message, *args)


def _short(exc: BaseException) -> str:
    """An exception in one line, without the SQL and parameters (which hold the records)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"[:300]
