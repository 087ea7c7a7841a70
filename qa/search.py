"""From a question to an :class:`~qa.contract.Answer`: both searches, fusion, confidence, the no-answer call."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qa.answer_cache import AnswerCache, CacheStats, SharedCache
from qa.contract import Alternative, Answer, Entry, Match
from qa.embeddings import FOLDER as EMBEDDINGS
from qa.embeddings import EmbeddingCache
from qa.encoders import Encoder, load_encoder
from qa.errors import BuildRefused, IndexCorrupt, InvalidQuestion, UnknownEntry
from qa.index import DenseIndex
from qa.knowledge import KnowledgeBase
from qa.lexical import LexicalIndex
from qa.question import as_asked, for_model
from qa.segment import detect_language, normalise
from qa.settings import DEFAULT_THRESHOLD, MAX_QUESTION_CHARS
from qa.shared import off_loop

if TYPE_CHECKING:
    from qa.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_THRESHOLD", "MAX_QUESTION_CHARS", "Candidate", "ConfidenceCurve", "Engine", "FusionWeights",
           "Signals", "confidence", "confidence_logit", "fuse", "load_or_build"]


@dataclass(frozen=True)
class FusionWeights:
    """How an entry's signals add up to its fused score (chosen on data/eval; see README, "Quality")."""

    question: float = 0.55  # best cosine to the entry's question, an alternate or its translation (symmetric)
    answer: float = 0.25  # cosine to question+answer as a passage
    lexical: float = 0.20  # BM25, divided by the best BM25 score of the query, times vocabulary coverage


@dataclass(frozen=True)
class ConfidenceCurve:
    """confidence = sigmoid(slope · (fused − level) + margin_gain · margin − gap_gain · gap − unknown_gain · unknown
    − general_gain · too_general).

    scripts/tune.py chose the boundary on data/eval, then the curve was divided by a temperature
    (1.5) fitted so that confidences read as probabilities of being right.
    """

    level: float = 0.835
    slope: float = 26.67
    margin_gain: float = 13.33
    gap_gain: float = 80.0
    unknown_gain: float = 2.67  # per product-style name (CamelCase) that the FAQ never mentions
    # A question whose most specific FAQ word is in at least general_share of the entries ("What is
    # OpenKruise?") points to none of them: on data/eval, data/holdout and data/real no in-domain
    # question's rarest word is in more than 40% of the entries; "OpenKruise" is in 57%, "kruise" 74%.
    general_share: float = 0.5
    general_gain: float = 10.0


@dataclass(frozen=True)
class Candidate:
    """An entry's signals for one question."""

    id: str
    fused: float
    question: float
    answer: float
    lexical: float


@dataclass(frozen=True)
class Signals:
    """Everything the confidence is computed from, for one question."""

    candidates: list[Candidate]  # best first
    known_gap: float  # best cosine between the question and a known-gap example
    unknown_names: int  # product-style names in the question that the FAQ never mentions
    too_general: bool = False  # every FAQ word of the question is in most entries (ConfidenceCurve.general_share)


def fuse(dense_q: dict[str, float], dense_a: dict[str, float], lexical: dict[str, float],
         weights: FusionWeights = FusionWeights(), coverage: float = 1.0) -> list[Candidate]:
    """Weighted sum of the dense and lexical signals, per entry, best first (ties by id).

    Args:
        dense_q: entry id → best question/alternate cosine.
        dense_a: entry id → answer-passage cosine.
        lexical: entry id → BM25 score (any scale; divided by the best one here).
        weights: the mix.
        coverage: share of the query's tokens that the FAQ's vocabulary knows, in [0, 1]; the
            lexical signal is scaled by it, so one shared word in an otherwise foreign
            question does not count as a lexical match.
    """
    top_lex = max(lexical.values(), default=0.0)
    out = []
    for i in set(dense_q) | set(dense_a) | set(lexical):
        q, a = dense_q.get(i, 0.0), dense_a.get(i, 0.0)
        lex = coverage * lexical.get(i, 0.0) / top_lex if top_lex > 0 else 0.0
        out.append(Candidate(i, weights.question * q + weights.answer * a + weights.lexical * lex, q, a, lex))
    out.sort(key=lambda c: (-c.fused, c.id))
    return out


def confidence_logit(signals: Signals, curve: ConfidenceCurve = ConfidenceCurve()) -> float:
    """The log-odds behind :func:`confidence` (0 is the 0.5 boundary)."""
    ranked = signals.candidates
    if not ranked:
        return -50.0
    top = ranked[0]
    margin = top.fused - ranked[1].fused if len(ranked) > 1 else top.fused
    # a known-gap example closer to the question than the entry's own questions pulls it down
    gap = max(0.0, signals.known_gap - top.question)
    return (curve.slope * (top.fused - curve.level) + curve.margin_gain * margin
            - curve.gap_gain * gap - curve.unknown_gain * signals.unknown_names
            - curve.general_gain * signals.too_general)


def confidence(signals: Signals, curve: ConfidenceCurve = ConfidenceCurve()) -> float:
    """How likely the first candidate is the right answer, in [0, 1]."""
    if not signals.candidates:
        return 0.0
    z = confidence_logit(signals, curve)
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


class Engine:
    """Answers questions from a knowledge base with a hybrid dense + lexical search.

    Build it with :meth:`from_settings`; answer with :meth:`ask` or, on an event loop,
    :meth:`ask_async`. Both clean the question once, serve repeated questions from a cache
    (:class:`qa.answer_cache.AnswerCache`: in the process, and in Redis when ``QA_CACHE_URL`` is
    set), and return the same :class:`~qa.contract.Answer`.
    """

    def __init__(self, kb: KnowledgeBase, encoder: Encoder, dense: DenseIndex, *,
                 threshold: float = DEFAULT_THRESHOLD, cache_size: int = 1024,
                 fusion: FusionWeights = FusionWeights(), curve: ConfidenceCurve = ConfidenceCurve(),
                 built: bool = False, shared_cache: SharedCache | None = None,
                 cache_stats: CacheStats | None = None) -> None:
        self.kb = kb
        self.encoder = encoder
        self.dense = dense
        self.threshold = threshold
        self.fusion = fusion
        self.curve = curve
        self.built = built  # whether this engine's index was built (not loaded) when it was made
        self.lexical = LexicalIndex(kb.segmenter(), [kb.lexical_document(e) for e in kb.entries],
                                    common_names=kb.common_names)
        owners = np.array([p.owner for p in dense.passages], dtype=object)
        fields = np.array([p.field for p in dense.passages], dtype=object)
        self._owner = owners
        self._is_question = np.isin(fields, ["question", "alternate"])
        self._is_answer = fields == "answer"
        self._is_known_gap = fields == "known_gap"
        # An answer depends on the data, the model, the threshold and the ranking's parameters: all are
        # in the cache's scope, so an answer cached by another engine (or replica) is reused only when right.
        scope = f"{kb.data_hash}|{dense.data_hash}|{dense.model}|{threshold!r}|{fusion!r}|{curve!r}"
        self.cache = AnswerCache(cache_size, scope, shared_cache, cache_stats)

    @classmethod
    def from_settings(cls, settings: Settings, *, encoder: Encoder | None = None, rebuild: bool = False,
                      serving: bool = False, progress: Callable[[int, int], None] | None = None,
                      shared_cache: SharedCache | None = None, cache_stats: CacheStats | None = None,
                      **kwargs: object) -> Engine:
        """Loads the knowledge base and the index the settings name, building the index when it
        is missing or stale (see :func:`load_or_build` for when a build is refused).

        Args:
            settings: data, index, model, threshold, cache size, ``allow_warnings``.
            encoder: an encoder already loaded (default: load ``settings.model``).
            rebuild: build even when the saved index is current.
            serving: a good engine is serving already, so any data warning refuses the build.
            progress: ``progress(done, total)`` while building.
            shared_cache: the Redis answer cache to use (a reload passes the serving engine's);
                default: the one ``settings.cache_url`` names, or none when it is unset.
            cache_stats: where cache lookups are counted (a reload passes the serving engine's).
            **kwargs: ``fusion`` or ``curve`` (for experiments).

        Raises:
            QAError: model, FAQ or index problems; :class:`BuildRefused` for data with warnings.
        """
        encoder = encoder if encoder is not None else load_encoder(settings.model)
        kb = KnowledgeBase.load(settings.data_dir, settings.faq_dir)
        dense, built = load_or_build(kb, encoder, Path(settings.index_dir), rebuild=rebuild,
                                     allow_warnings=settings.allow_warnings, serving=serving, progress=progress)
        if shared_cache is None:
            shared_cache = SharedCache.from_settings(settings)
        return cls(kb, encoder, dense, threshold=settings.threshold, cache_size=settings.cache_size, built=built,
                   shared_cache=shared_cache, cache_stats=cache_stats, **kwargs)  # type: ignore[arg-type]

    # -- answering -----------------------------------------------------------------------

    def ask(self, question: str, top_k: int = 3) -> Answer:
        """Answers one question (any language; cut when very long).

        Args:
            question: the question as asked.
            top_k: how many candidates in all (the match plus alternatives).

        Raises:
            InvalidQuestion: when the question is empty or blank.
        """
        start = time.perf_counter()
        clean = self.clean(question)
        key = self.cache.key(clean, top_k)
        answer = self.cache.get(key)
        if answer is None:
            answer = self._answer_and_cache(key, clean, self.encoder.encode([clean], "query"), top_k)
        return self._for_caller(answer, question, start)

    async def ask_async(self, question: str, top_k: int = 3) -> Answer:
        """:meth:`ask` for an event loop: a repeated question is answered on the loop at once; a
        new one awaits the shared cache, if any, from a worker thread, then the encoder (its
        ``submit`` when it has one, else a worker thread).

        Raises:
            InvalidQuestion: when the question is empty or blank.
        """
        start = time.perf_counter()
        clean = self.clean(question)
        key = self.cache.key(clean, top_k)
        answer = self.cache.get_local(key)
        if answer is None and self.cache.consults_shared:
            answer = await off_loop(lambda: self.cache.get_shared(key))
        if answer is None:
            self.cache.missed()
            submit = getattr(self.encoder, "submit", None)
            if submit is not None:
                vectors = await asyncio.wrap_future(submit([clean], "query"))
            else:
                vectors = await asyncio.to_thread(self.encoder.encode, [clean], "query")
            answer = self._answer_and_cache(key, clean, vectors, top_k)
        return self._for_caller(answer, question, start)

    def warm_up(self) -> None:
        """Runs the answering path once in each language, uncached.

        The first question otherwise pays for what loads lazily: the model's weights paged in,
        the encoder's thread team, the segmenter's tables. Servers call this before they report
        ready.
        """
        for question in ("如何升级 OpenKruise？", "How do I upgrade OpenKruise?"):
            clean = self.clean(question)
            self._answer(clean, self._search(clean, self.encoder.encode([clean], "query")), 3)

    @staticmethod
    def clean(question: str) -> str:
        """The question as the engine sees it: :func:`qa.question.for_model` (a long question cut to the
        lines that carry its matter), normalised.

        Raises:
            InvalidQuestion: when it is empty or blank.
        """
        if not isinstance(question, str):
            raise InvalidQuestion("the question must be text")
        clean = normalise(for_model(question))[:MAX_QUESTION_CHARS]  # a long question: the lines that matter
        if not clean:
            raise InvalidQuestion("the question is empty")
        return clean

    def signals(self, question: str) -> Signals:
        """The candidates and the other inputs of the confidence, for tuning and ablation scripts."""
        clean = self.clean(question)
        return self._search(clean, self.encoder.encode([clean], "query"))

    def _search(self, clean: str, vectors: np.ndarray) -> Signals:
        scores, idx = self.dense.search(np.asarray(vectors, dtype=np.float32).reshape(1, -1))
        dense_q: dict[str, float] = {}
        dense_a: dict[str, float] = {}
        known_gap = 0.0
        for s, j in zip(scores[0].tolist(), idx[0].tolist()):
            if j < 0:
                continue
            owner = self._owner[j]
            if self._is_question[j]:
                dense_q[owner] = max(s, dense_q.get(owner, -1.0))
            elif self._is_answer[j]:
                dense_a[owner] = max(s, dense_a.get(owner, -1.0))
            elif self._is_known_gap[j]:
                known_gap = max(known_gap, s)
        tokens = self.lexical.correct(self.lexical.segmenter.tokens(clean))
        lexical = {e.id: float(v) for e, v in zip(self.kb.entries, self.lexical.scores(tokens))}
        ranked = fuse(dense_q, dense_a, lexical, self.fusion, self.lexical.coverage(tokens))
        rarest = self.lexical.rarest_share(tokens)
        too_general = rarest is not None and rarest >= self.curve.general_share
        return Signals(ranked, known_gap, len(self.lexical.unknown_names(clean)), too_general)

    def _answer(self, clean: str, signals: Signals, top_k: int) -> Answer:
        ranked = signals.candidates
        conf = confidence(signals, self.curve)
        top_k = max(1, top_k)
        match = None
        language = detect_language(clean)
        if ranked and conf >= self.threshold:
            entry = self.kb.by_id[ranked[0].id]
            translation = self.kb.translations.get(entry.id) if language == "en" else None
            match = Match(**dict(entry), score=round(ranked[0].fused, 4), confidence=round(conf, 4),
                          translation=translation)
            ranked, top_k = ranked[1:], top_k - 1
        alternatives = tuple(Alternative(id=c.id, question=self.kb.by_id[c.id].question, score=round(c.fused, 4),
                                         translated_question=self._translated_question(c.id, language))
                             for c in ranked[:top_k if match else max(top_k, 1)])
        answer = Answer(answer_id="", question=clean, language=language, match=match, alternatives=alternatives,
                        took_ms=0.0)
        answer._confidence = conf
        answer._score = signals.candidates[0].fused if signals.candidates else 0.0
        return answer

    def _translated_question(self, entry_id: str, language: str) -> str | None:
        """The entry's question in the asker's language (English), when a translation is kept."""
        translation = self.kb.translations.get(entry_id) if language == "en" else None
        return translation.question if translation is not None else None

    def _answer_and_cache(self, key: str, clean: str, vectors: np.ndarray, top_k: int) -> Answer:
        answer = self._answer(clean, self._search(clean, vectors), top_k)
        self.cache.put(key, answer)
        return answer

    @staticmethod
    def _for_caller(answer: Answer, question: str, start: float) -> Answer:
        """The answer with a new id, the question as asked and the time taken (answers are frozen, so
        the cached one is shared safely)."""
        return answer.model_copy(update={"answer_id": uuid.uuid4().hex, "question": as_asked(question),
                                         "took_ms": (time.perf_counter() - start) * 1000})

    # -- browsing ----------------------------------------------------------------------------

    def entry(self, entry_id: str) -> Entry:
        """One entry in full.

        Raises:
            UnknownEntry: when no entry has that id.
        """
        e = self.kb.by_id.get(entry_id)
        if e is None:
            raise UnknownEntry(entry_id)
        return e

    def entries(self) -> list[Entry]:
        """Every entry, in FAQ order."""
        return list(self.kb.entries)


def load_or_build(kb: KnowledgeBase, encoder: Encoder, index_dir: Path, *, rebuild: bool = False,
                  allow_warnings: bool = False, serving: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> tuple[DenseIndex, bool]:
    """Loads the saved index when it is current and intact; otherwise builds and saves a new one.

    One rule for every caller: data with warnings (an unclosed fence, an unknown id, a file that
    does not parse) never replaces a good index, whether it is saved in ``index_dir`` or serving
    (``serving``), unless ``allow_warnings``. With no index anywhere (a first build) what loaded
    is built, and the warnings are the caller's to show.

    Returns:
        The index, and whether it was built now (False: loaded as it was).

    Raises:
        BuildRefused: the data has warnings and a good index exists.
    """
    if not rebuild:
        try:
            return DenseIndex.load(index_dir, encoder.name, kb.data_hash), False
        except IndexCorrupt as exc:
            if DenseIndex.read_manifest(index_dir) is None:
                log.info("no index in %s yet; building it", index_dir)
            else:
                log.warning("rebuilding the index in %s: %s", index_dir, exc)
    if kb.warnings and not allow_warnings and (serving or DenseIndex.read_manifest(index_dir) is not None):
        raise BuildRefused(kb.warnings, "the last good index is kept" if serving else
                           f"the index in {index_dir} was left as it is")
    passages = kb.passages()
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, len(passages))

    cache = EmbeddingCache.open(Path(index_dir) / EMBEDDINGS, encoder.name, encoder.dim)  # encodes only what changed
    dense = DenseIndex.build(passages, encoder.encode, encoder.name, kb.data_hash, progress=tick,  # type: ignore[arg-type]
                             cache=cache)
    try:
        dense.save(index_dir)
        cache.save()
    except OSError as exc:
        log.warning("index built but not saved to %s: %s (answering from memory)", index_dir, exc)
    log.info("index built: %d passages in %.2fs", len(dense), dense.build_seconds)
    return dense, True
