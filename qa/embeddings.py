"""A cache of encoded texts, so that an index build encodes only what changed.

Each vector is keyed by sha256(model id, kind, text): ``kind`` is how the text was encoded
("query" or "passage": e5 prefixes them differently), so the same text under another model or
kind is another key. The cache lives in the index folder::

    embeddings/manifest.json   format, model id, dimension, count, checksum of the data file
    embeddings/vectors.npz     keys (sha256 digests, 32 bytes each) and float32 vectors, row by row

It is written like the index (temporary file and rename, manifest last) and checked like it on
load: a cache that is missing, of another format, model or dimension, or that fails its checksum
is dropped (with a warning when it was damaged) and the build encodes everything again. After a
build the cache holds exactly the texts of that build, so it never outgrows the index. A long
build saves what it has encoded every :attr:`EmbeddingCache.checkpoint_seconds`, so a build that
is killed resumes where it was.

Vectors come back exactly as the encoder returned them (float32, bit for bit): an index built
from the cache equals one built by encoding everything.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from qa.index import atomic_write, remove_stale_temporary_files, sha256_file

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FOLDER = "embeddings"
MANIFEST = "manifest.json"
DATA = "vectors.npz"

Encode = Callable[[list[str], str], np.ndarray]


def text_key(model: str, kind: str, text: str) -> bytes:
    """The cache key of a text: sha256 over the model id, the kind and the text (32 bytes)."""
    h = hashlib.sha256()
    for part in (model, kind, text):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


class _Corrupt(Exception):
    """The cache on disk is damaged (it is dropped with a warning and rebuilt)."""


class _Stale(Exception):
    """The cache is intact but of another format, model or dimension (dropped without a warning)."""


class EmbeddingCache:
    """Vectors by (model, kind, text), loaded from and saved to a folder.

    Use :meth:`open`, then :meth:`encode` (which encodes the misses, and keeps only the texts it
    was asked for), then :meth:`save`.
    """

    checkpoint_seconds: float | None = 60.0  # while encoding, save the vectors so far this often (None: never)

    def __init__(self, folder: Path | None, model: str, dim: int | None = None) -> None:
        """An empty cache (see :meth:`open` for one read from disk).

        Args:
            folder: where it is saved (None: memory only).
            model: the encoder id; vectors of another model are never used.
            dim: the encoder's dimension, when known; a cache of another dimension is dropped.
        """
        self.folder = Path(folder) if folder is not None else None
        self.model = model
        self.dim = dim
        self._rows: dict[bytes, int] = {}
        self._vectors = np.zeros((0, dim or 0), dtype=np.float32)
        self.hits = 0  # passages served from the cache by the last encode()
        self.encoded = 0  # texts encoded by the last encode()
        self._dirty = False

    def __len__(self) -> int:
        return len(self._rows)

    @classmethod
    def open(cls, folder: Path, model: str, dim: int | None = None) -> EmbeddingCache:
        """Reads the cache in ``folder``; an empty one when it is missing, stale or damaged.

        Never raises: a damaged cache is logged as a warning and rebuilt by the next save.
        """
        cache = cls(folder, model, dim)
        folder = Path(folder)
        remove_stale_temporary_files(folder)
        if not (folder / MANIFEST).exists():
            return cache
        try:
            keys, vectors = cls._read(folder, model, dim)
        except _Stale as exc:
            log.info("embedding cache in %s not used: %s", folder, exc)
            cache._dirty = True
            return cache
        except Exception as exc:  # _Corrupt, or anything a damaged file raises: never fail a build
            log.warning("embedding cache in %s is unusable, encoding everything again: %s", folder, exc)
            cache._dirty = True
            return cache
        cache._rows = {k: i for i, k in enumerate(keys)}
        cache._vectors = vectors
        cache.dim = int(vectors.shape[1])
        return cache

    @staticmethod
    def _read(folder: Path, model: str, dim: int | None) -> tuple[list[bytes], np.ndarray]:
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _Corrupt(f"unreadable manifest: {exc}") from exc
        if not isinstance(manifest, dict):
            raise _Corrupt("unreadable manifest")
        if manifest.get("format") != FORMAT_VERSION:
            raise _Stale(f"cache format {manifest.get('format')} != {FORMAT_VERSION}")
        if manifest.get("model") != model:
            raise _Stale(f"cache of {manifest.get('model')}, not {model}")
        if dim is not None and manifest.get("dim") != dim:
            raise _Stale(f"cache of dimension {manifest.get('dim')}, not {dim}")
        path = folder / DATA
        try:
            checksum = sha256_file(path)
        except OSError as exc:
            raise _Corrupt(f"{DATA}: {exc}") from exc
        files = manifest.get("files")
        if not isinstance(files, dict) or checksum != files.get(DATA):
            raise _Corrupt(f"{DATA} does not match its checksum (truncated or corrupt)")
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = data["keys"]
                vectors = data["vectors"]
        except Exception as exc:  # OSError, ValueError, KeyError, zipfile.BadZipFile, ...
            raise _Corrupt(f"cannot read {DATA}: {exc.__class__.__name__}: {exc}") from exc
        count = manifest.get("count")
        if (keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != 32 or vectors.dtype != np.float32
                or vectors.ndim != 2 or len(keys) != len(vectors) or len(keys) != count
                or vectors.shape[1] != manifest.get("dim")):
            raise _Corrupt("keys, vectors and manifest disagree")
        key_list = [bytes(k) for k in keys]
        if len(set(key_list)) != len(key_list):
            raise _Corrupt("duplicate keys")
        return key_list, np.ascontiguousarray(vectors)

    def encode(self, items: Sequence[tuple[str, str]], encode: Encode, batch_size: int = 32,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors for ``(kind, text)`` items, from the cache or encoded now.

        Misses are encoded once per distinct key, in batches of ``batch_size`` items in their
        order, each batch split by kind. The cache then holds exactly these items (entries not
        asked for are dropped), ready to :meth:`save`.

        Args:
            items: ``(kind, text)`` pairs; kind is "query" or "passage".
            encode: ``encode(texts, kind)`` returning float32 unit vectors.
            batch_size: texts per encoder call.
            progress: called with the number of items just resolved (the cached ones first).

        Returns:
            float32 array of shape (len(items), dim), in the order of ``items``.
        """
        keys = [text_key(self.model, kind, text) for kind, text in items]
        cached = [k in self._rows for k in keys]
        self.hits = sum(cached)
        if self.hits and progress:
            progress(self.hits)
        missing: dict[bytes, list[int]] = {}  # key -> the item positions that need it
        for i, (k, hit) in enumerate(zip(keys, cached)):
            if not hit:
                missing.setdefault(k, []).append(i)
        order = list(missing)
        new: dict[bytes, np.ndarray] = {}
        last_checkpoint = time.monotonic()
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            for kind in ("query", "passage"):
                batch_keys = [k for k in batch if items[missing[k][0]][0] == kind]
                if batch_keys:
                    vecs = np.asarray(encode([items[missing[k][0]][1] for k in batch_keys], kind), dtype=np.float32)
                    if vecs.ndim != 2 or len(vecs) != len(batch_keys):
                        raise ValueError(f"the encoder returned {vecs.shape} for {len(batch_keys)} texts")
                    new.update(zip(batch_keys, vecs))
            if progress:
                progress(sum(len(missing[k]) for k in batch))
            if (self.folder is not None and self.checkpoint_seconds is not None and new
                    and start + batch_size < len(order)
                    and time.monotonic() - last_checkpoint >= self.checkpoint_seconds):
                self._checkpoint(new)
                last_checkpoint = time.monotonic()
        self.encoded = len(new)
        dim = next(iter(new.values())).shape[0] if new else (self._vectors.shape[1] if self._rows else self.dim or 0)
        if self.dim is not None and dim != self.dim and (new or self._rows):
            raise ValueError(f"the encoder returned vectors of dimension {dim}, not {self.dim}")
        # the cache becomes exactly the distinct keys of this call, in first-seen order
        distinct = list(dict.fromkeys(keys))
        matrix = np.zeros((len(distinct), dim), dtype=np.float32)
        for row, k in enumerate(distinct):
            matrix[row] = new[k] if k in new else self._vectors[self._rows[k]]
        rows = {k: i for i, k in enumerate(distinct)}
        self._dirty = self._dirty or bool(new) or len(rows) != len(self._rows)
        self._rows, self._vectors, self.dim = rows, matrix, dim
        return matrix[[rows[k] for k in keys]] if keys else np.zeros((0, dim), dtype=np.float32)

    def save(self) -> bool:
        """Writes the cache (data file, then manifest) when it changed; a failure is only logged.

        Returns:
            Whether the cache on disk is now current.
        """
        if self.folder is None:
            return False
        remove_stale_temporary_files(self.folder)
        if not self._dirty and (self.folder / MANIFEST).exists():
            return True
        if not self._write(list(self._rows), self._vectors):
            return False
        self._dirty = False
        return True

    def _checkpoint(self, new: dict[bytes, np.ndarray]) -> None:
        """Saves the cache as loaded plus what this build encoded so far (nothing dropped yet)."""
        keys = list(self._rows) + list(new)  # the new keys were misses: none is in _rows
        fresh = np.stack(list(new.values()))
        vectors = np.concatenate([self._vectors, fresh]) if self._rows else fresh
        if self._write(keys, vectors):
            log.info("embedding cache: %d new vectors saved so far", len(new))

    def _write(self, keys: list[bytes], vectors: np.ndarray) -> bool:
        assert self.folder is not None
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        buf = io.BytesIO()
        np.savez(buf, keys=key_array, vectors=vectors)
        data = buf.getvalue()
        manifest = {"format": FORMAT_VERSION, "model": self.model, "dim": int(vectors.shape[1]),
                    "count": len(keys), "files": {DATA: hashlib.sha256(data).hexdigest()}}
        try:
            atomic_write(self.folder / DATA, data)
            atomic_write(self.folder / MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"))
        except OSError as exc:
            log.warning("embedding cache not saved to %s: %s", self.folder, exc)
            return False
        return True

