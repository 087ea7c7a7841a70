"""The dense index: FAISS vectors + passage metadata + a manifest, saved atomically.

Layout of an index folder::

    manifest.json   format version, model id, dimension, hash of the data, checksums of the files
    vectors.faiss   FAISS index (inner product over unit vectors = cosine)
    passages.json   one record a vector: which entry (or out-of-scope topic) and which field
    embeddings/     the cache of encoded texts a rebuild reuses (see :mod:`qa.embeddings`)

The manifest is written last, so a folder whose manifest matches its files is complete. Each file
is written to a temporary file (``.<name>.<pid>-<random>.tmp``) and renamed; such files left by a
killed save are removed by the next save or load.

The FAISS index is exact (``IndexFlatIP``) below :data:`HNSW_FROM` vectors and an HNSW graph
(``IndexHNSWFlat``, inner product) from there on; the manifest records which (README, "Speed").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from qa.errors import IndexCorrupt

if TYPE_CHECKING:
    from qa.embeddings import EmbeddingCache

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: known gaps are field "known_gap"; answers as parts
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
PASSAGES = "passages.json"

# FAISS index type by size (measured by scripts/scale_bench.py; README, "Speed").
HNSW_FROM = 50_000  # vectors; below this the index is exact
HNSW_M = 32  # graph neighbours per vector
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
SEARCH_ALL_UP_TO = 2_048  # vectors; a search without k returns all of them up to this size ...
SEARCH_K = 1_024  # ... and the best SEARCH_K beyond it
STALE_TMP_SECONDS = 3600.0  # a temporary file this old is stale even if its writer's pid is alive


@dataclass(frozen=True)
class Passage:
    """One encoded text: a question, an alternate, an answer, or an out-of-scope example."""

    owner: str  # entry id, or "gap:<topic>" for a known gap
    field: str  # question | alternate | answer | known_gap
    text: str


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_IN_FLIGHT: set[str] = set()  # temporary files this process is writing now
_IN_FLIGHT_LOCK = threading.Lock()
_TMP_PID = re.compile(r"\.(\d+)-[^.]*\.tmp$")


def atomic_write(path: Path, data: bytes) -> None:
    """Writes a file via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.discard(tmp)


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process: its own writes in progress are in _IN_FLIGHT
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def remove_stale_temporary_files(folder: Path) -> list[Path]:
    """Removes the ``.*.tmp`` files that a killed save left in ``folder``.

    A temporary file is left alone while its writer may still be renaming it: when this process
    is writing it now, or when the process named in it is alive and the file is less than
    :data:`STALE_TMP_SECONDS` old. Failures (a read-only folder) are ignored.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    try:
        candidates = [p for p in Path(folder).glob(".*.tmp") if p.is_file()]
    except OSError:
        return removed
    now = time.time()
    for path in candidates:
        with _IN_FLIGHT_LOCK:
            if str(path) in _IN_FLIGHT:
                continue
        m = _TMP_PID.search(path.name)
        try:
            young = now - path.stat().st_mtime < STALE_TMP_SECONDS
            if m and young and _writer_alive(int(m.group(1))):
                continue
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted save in %s", len(removed), folder)
    return removed


def make_faiss_index(vectors: np.ndarray, hnsw_from: int) -> faiss.Index:
    """An inner-product FAISS index of ``vectors``: exact below ``hnsw_from`` rows, HNSW from there on."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    index: faiss.Index
    if len(vectors) >= hnsw_from:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    return index


def index_type(index: faiss.Index) -> str:
    """"flat" or "hnsw" (what the manifest records)."""
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    return type(index).__name__


class DenseIndex:
    """Vectors of passages with a narrow interface: build, search, save, load."""

    def __init__(self, index: faiss.Index, passages: Sequence[Passage], model: str, data_hash: str,
                 build_seconds: float = 0.0) -> None:
        """Wraps a built FAISS index (use :meth:`build` or :meth:`load`)."""
        self.index = index
        self.passages = list(passages)
        self.model = model
        self.data_hash = data_hash
        self.build_seconds = build_seconds

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        """The FAISS index type: "flat" (exact) or "hnsw"."""
        return index_type(self.index)

    @classmethod
    def build(cls, passages: Sequence[Passage], encode: Callable[[list[str], str], np.ndarray], model: str,
              data_hash: str, batch_size: int = 32, progress: Callable[[int], None] | None = None, *,
              cache: EmbeddingCache | None = None, hnsw_from: int | None = None) -> DenseIndex:
        """Encodes passages (or takes their vectors from ``cache``) and builds the FAISS index.

        Args:
            passages: what to encode. Question-like fields are encoded as queries (a symmetric
                match), answers as passages.
            encode: ``encode(texts, kind)`` returning unit vectors.
            model: the encoder's id, recorded in the manifest.
            data_hash: hash of the sources, recorded in the manifest.
            batch_size: texts per encoder call.
            progress: called with the number of passages just encoded (or found in the cache).
            cache: vectors of texts encoded before, by the same model; only the others are
                encoded, and the cache is left holding exactly these passages (save it with
                :meth:`~qa.embeddings.EmbeddingCache.save`).
            hnsw_from: vectors from which the index is HNSW rather than exact (default :data:`HNSW_FROM`).

        Returns:
            The index.
        """
        from qa.embeddings import EmbeddingCache

        start = time.perf_counter()
        if cache is None:
            cache = EmbeddingCache(None, model)
        elif cache.model != model:
            raise ValueError(f"an embedding cache of {cache.model} cannot build an index of {model}")
        items = [("passage" if p.field == "answer" else "query", p.text) for p in passages]
        matrix = cache.encode(items, encode, batch_size=batch_size, progress=progress)
        index = make_faiss_index(matrix, HNSW_FROM if hnsw_from is None else hnsw_from)
        return cls(index, passages, model, data_hash, time.perf_counter() - start)

    def search(self, query: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest passages by cosine.

        Args:
            query: unit vectors, shape (n, dim).
            k: how many (default: all of them up to :data:`SEARCH_ALL_UP_TO` vectors, which is
                right at FAQ size, else the best :data:`SEARCH_K`).

        Returns:
            (scores, passage indexes), each of shape (n, k); an index of -1 is no passage.
        """
        if k is None:
            k = len(self) if len(self) <= SEARCH_ALL_UP_TO else SEARCH_K
        k = min(k, len(self))
        query = np.ascontiguousarray(query, dtype=np.float32)
        params = None
        if isinstance(self.index, faiss.IndexHNSW):
            # HNSW returns k results from its efSearch candidates: fewer candidates than k would
            # miss close passages (at k=1,024 and efSearch=128, 60% of the exact top 1,024)
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(int(self.index.hnsw.efSearch), k)
        if len(query) > 1:
            return self.index.search(query, k, params=params)
        # One question: FAISS would split an exact search of 10,000+ vectors over its OpenMP
        # threads, which wait for a core the encoder is using (0.2 ms became 16 ms at 12,000
        # vectors on 2 busy cores). The setting is the calling thread's own; restored after.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(query, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)

    def save(self, folder: Path) -> None:
        """Writes the index atomically: each file via a temp file and rename, manifest last.

        Args:
            folder: the index folder (created if missing).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporary_files(folder)
        vec_bytes = faiss.serialize_index(self.index).tobytes()
        atomic_write(folder / VECTORS, vec_bytes)
        records = [{"owner": p.owner, "field": p.field, "text": p.text} for p in self.passages]
        pas_bytes = json.dumps(records, ensure_ascii=False).encode("utf-8")
        atomic_write(folder / PASSAGES, pas_bytes)
        manifest = {
            "format": FORMAT_VERSION,
            "model": self.model,
            "dim": self.dim,
            "count": len(self),
            "index": self._index_params(),
            "data_hash": self.data_hash,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(self.build_seconds, 3),
            "files": {VECTORS: hashlib.sha256(vec_bytes).hexdigest(), PASSAGES: hashlib.sha256(pas_bytes).hexdigest()},
        }
        atomic_write(folder / MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"))

    def _index_params(self) -> dict[str, object]:
        params: dict[str, object] = {"type": self.kind}
        if isinstance(self.index, faiss.IndexHNSW):
            params.update(M=int(self.index.hnsw.nb_neighbors(1)),  # type: ignore[attr-defined]
                          ef_construction=int(self.index.hnsw.efConstruction),
                          ef_search=int(self.index.hnsw.efSearch))
        return params

    @staticmethod
    def read_manifest(folder: Path) -> dict[str, object] | None:
        """Returns the manifest, or None when there is none or it is unreadable."""
        try:
            data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @classmethod
    def load(cls, folder: Path, model: str, data_hash: str) -> DenseIndex:
        """Loads an index, checking that it is complete, intact and current.

        Args:
            folder: the index folder.
            model: the encoder id the index must have been built with.
            data_hash: the hash of the current sources.

        Returns:
            The index.

        Raises:
            IndexCorrupt: missing, stale (other model, data or format), truncated or corrupt.
        """
        folder = Path(folder)
        remove_stale_temporary_files(folder)
        manifest = cls.read_manifest(folder)
        if manifest is None:
            raise IndexCorrupt(f"no readable manifest in {folder}")
        if manifest.get("format") != FORMAT_VERSION:
            raise IndexCorrupt(f"index format {manifest.get('format')} != {FORMAT_VERSION}")
        if manifest.get("model") != model:
            raise IndexCorrupt(f"index built with {manifest.get('model')}, not {model}")
        if manifest.get("data_hash") != data_hash:
            raise IndexCorrupt("the FAQ or data files changed since the index was built")
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise IndexCorrupt("manifest lists no files")
        for name in (VECTORS, PASSAGES):
            path = folder / name
            if not path.exists():
                raise IndexCorrupt(f"{name} is missing")
            if sha256_file(path) != files.get(name):
                raise IndexCorrupt(f"{name} does not match its checksum (truncated or corrupt)")
        try:
            index = faiss.deserialize_index(np.fromfile(folder / VECTORS, dtype=np.uint8))
            passages = [Passage(**p) for p in json.loads((folder / PASSAGES).read_text(encoding="utf-8"))]
        except (RuntimeError, ValueError, TypeError, OSError) as exc:
            raise IndexCorrupt(f"cannot read index: {exc}") from exc
        if index.ntotal != len(passages) or index.d != manifest.get("dim"):
            raise IndexCorrupt("vector count or dimension disagrees with the manifest")
        params = manifest.get("index", {"type": "flat"})  # indexes saved before the type was recorded are flat
        if not isinstance(params, dict) or params.get("type") != index_type(index):
            raise IndexCorrupt(f"the vectors file holds a {index_type(index)} index, the manifest says {params}")
        return cls(index, passages, model, data_hash, float(manifest.get("build_seconds", 0.0)))  # type: ignore[arg-type]
