"""The dense index: FAISS vectors + passage metadata + a manifest, saved atomically.

Layout of an index folder::

    manifest.json   format version, model id, dimension, hash of the data, checksums of the files
    vectors.faiss   FAISS index (inner product over unit vectors = cosine)
    passages.json   one record a vector: which entry (or out-of-scope topic) and which field

The manifest is written last, so a folder whose manifest matches its files is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from qa.errors import IndexCorrupt

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: known gaps are field "known_gap"; answers as parts
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
PASSAGES = "passages.json"


@dataclass(frozen=True)
class Passage:
    """One encoded text: a question, an alternate, an answer, or an out-of-scope example."""

    owner: str  # entry id, or "gap:<topic>" for a known gap
    field: str  # question | alternate | answer | known_gap
    text: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    """Writes a file via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    @classmethod
    def build(cls, passages: Sequence[Passage], encode: Callable[[list[str], str], np.ndarray], model: str,
              data_hash: str, batch_size: int = 32, progress: Callable[[int], None] | None = None) -> DenseIndex:
        """Encodes passages and builds a flat inner-product index.

        Args:
            passages: what to encode. Question-like fields are encoded as queries (a symmetric
                match), answers as passages.
            encode: ``encode(texts, kind)`` returning unit vectors.
            model: the encoder's id, recorded in the manifest.
            data_hash: hash of the sources, recorded in the manifest.
            batch_size: texts per encoder call.
            progress: called with the number of passages just encoded.

        Returns:
            The index.
        """
        start = time.perf_counter()
        vectors: list[np.ndarray] = []
        for i in range(0, len(passages), batch_size):
            batch = passages[i:i + batch_size]
            kinds = ["passage" if p.field == "answer" else "query" for p in batch]
            parts: dict[str, tuple[list[int], np.ndarray]] = {}
            for kind in ("query", "passage"):
                idx = [j for j, k in enumerate(kinds) if k == kind]
                if idx:
                    parts[kind] = (idx, encode([batch[j].text for j in idx], kind))
            dim = next(iter(parts.values()))[1].shape[1]
            out = np.zeros((len(batch), dim), dtype=np.float32)
            for idx, vecs in parts.values():
                out[idx] = vecs
            vectors.append(out)
            if progress:
                progress(len(batch))
        matrix = np.ascontiguousarray(np.vstack(vectors), dtype=np.float32)
        index = faiss.IndexFlatIP(matrix.shape[1])
        index.add(matrix)
        return cls(index, passages, model, data_hash, time.perf_counter() - start)

    def search(self, query: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest passages by cosine.

        Args:
            query: unit vectors, shape (n, dim).
            k: how many (default: all, which is right at FAQ size).

        Returns:
            (scores, passage indexes), each of shape (n, k).
        """
        k = len(self) if k is None else min(k, len(self))
        return self.index.search(np.ascontiguousarray(query, dtype=np.float32), k)

    def save(self, folder: Path) -> None:
        """Writes the index atomically: each file via a temp file and rename, manifest last.

        Args:
            folder: the index folder (created if missing).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vec_bytes = faiss.serialize_index(self.index).tobytes()
        _atomic_write(folder / VECTORS, vec_bytes)
        pas_bytes = json.dumps([asdict(p) for p in self.passages], ensure_ascii=False).encode("utf-8")
        _atomic_write(folder / PASSAGES, pas_bytes)
        manifest = {
            "format": FORMAT_VERSION,
            "model": self.model,
            "dim": self.dim,
            "count": len(self),
            "data_hash": self.data_hash,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(self.build_seconds, 3),
            "files": {VECTORS: hashlib.sha256(vec_bytes).hexdigest(), PASSAGES: hashlib.sha256(pas_bytes).hexdigest()},
        }
        _atomic_write(folder / MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"))

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
            if _sha256(path) != files.get(name):
                raise IndexCorrupt(f"{name} does not match its checksum (truncated or corrupt)")
        try:
            index = faiss.deserialize_index(np.fromfile(folder / VECTORS, dtype=np.uint8))
            passages = [Passage(**p) for p in json.loads((folder / PASSAGES).read_text(encoding="utf-8"))]
        except (RuntimeError, ValueError, TypeError, OSError) as exc:
            raise IndexCorrupt(f"cannot read index: {exc}") from exc
        if index.ntotal != len(passages) or index.d != manifest.get("dim"):
            raise IndexCorrupt("vector count or dimension disagrees with the manifest")
        return cls(index, passages, model, data_hash, float(manifest.get("build_seconds", 0.0)))  # type: ignore[arg-type]
