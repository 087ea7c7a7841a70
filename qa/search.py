"""From a question to an :class:`Answer`: both searches, fusion, confidence, the no-answer call."""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from qa.encoders import Encoder
from qa.errors import IndexCorrupt, InvalidQuestion, UnknownEntry
from qa.faq import Entry
from qa.index import DenseIndex
from qa.knowledge import KnowledgeBase
from qa.lexical import LexicalIndex
from qa.segment import Language, detect_language, normalise

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 4000  # longer questions are cut; the encoder cuts again at its token limit


@dataclass(frozen=True)
class Weights:
    """How the signals of one entry combine, and how the confidence is shaped.

    The defaults were chosen on the project's own evaluation set (see README, "Quality").
    """

    question: float = 0.55  # best cosine to the entry's question or an alternate (symmetric)
    answer: float = 0.25  # cosine to question+answer as a passage
    lexical: float = 0.20  # BM25, divided by the best BM25 score of the query
    # confidence = sigmoid(slope * (fused - level) + margin_gain * margin - gap_gain * oos_excess
    #                      - unknown_gain * unknown_names); scripts/tune.py chose the boundary on
    # data/eval, then divided the curve by a temperature (1.5) fitted so confidences are calibrated.
    level: float = 0.835
    slope: float = 26.67
    margin_gain: float = 13.33
    gap_gain: float = 80.0
    unknown_gain: float = 2.67  # per product-style name (CamelCase) that the FAQ never mentions


DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Scored:
    """An entry's signals for one query."""

    id: str
    fused: float
    question: float
    answer: float
    lexical: float


def fuse(dense_q: dict[str, float], dense_a: dict[str, float], lexical: dict[str, float],
         weights: Weights = Weights(), coverage: float = 1.0) -> list[Scored]:
    """Weighted sum of the dense and lexical signals, per entry, best first.

    Args:
        dense_q: entry id → best question/alternate cosine.
        dense_a: entry id → answer-passage cosine.
        lexical: entry id → BM25 score (any scale; divided by the best one here).
        weights: the mix.
        coverage: share of the query's tokens that the FAQ's vocabulary knows, in [0, 1]; the
            lexical signal is scaled by it, so one shared word in an otherwise foreign
            question does not count as a lexical match.

    Returns:
        Every entry that appears in any input, sorted by fused score (ties by id).
    """
    top_lex = max(lexical.values(), default=0.0)
    ids = set(dense_q) | set(dense_a) | set(lexical)
    out = []
    for i in ids:
        q, a = dense_q.get(i, 0.0), dense_a.get(i, 0.0)
        lex = coverage * lexical.get(i, 0.0) / top_lex if top_lex > 0 else 0.0
        fused = weights.question * q + weights.answer * a + weights.lexical * lex
        out.append(Scored(i, fused, q, a, lex))
    out.sort(key=lambda s: (-s.fused, s.id))
    return out


def confidence_logit(ranked: Sequence[Scored], oos: float, weights: Weights = Weights(), unknown: int = 0) -> float:
    """The log-odds behind :func:`confidence` (0 is the 0.5 boundary)."""
    if not ranked:
        return -50.0
    top = ranked[0]
    margin = top.fused - ranked[1].fused if len(ranked) > 1 else top.fused
    excess = max(0.0, oos - top.question)
    return (weights.slope * (top.fused - weights.level) + weights.margin_gain * margin
            - weights.gap_gain * excess - weights.unknown_gain * unknown)


def confidence(ranked: Sequence[Scored], oos: float, weights: Weights = Weights(), unknown: int = 0) -> float:
    """How likely the first candidate is the right answer, in [0, 1].

    Both the absolute level of the best score and its margin over the runner-up count; a
    known-gap example closer to the query than the best entry's own questions pulls it down,
    and so does each product-style name the FAQ never mentions.

    Args:
        ranked: candidates, best first.
        oos: best cosine between the query and the known-gap (out-of-scope) examples.
        weights: the shape of the curve.
        unknown: how many product-style names in the query the FAQ never mentions.

    Returns:
        The confidence.
    """
    if not ranked:
        return 0.0
    z = confidence_logit(ranked, oos, weights, unknown)
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


@dataclass
class Answer:
    """The engine's answer: the public JSON contract."""

    question: str
    language: Language
    match: dict[str, object] | None
    alternatives: list[dict[str, object]]
    took_ms: float
    confidence: float = 0.0  # of the best candidate, also when it fell under the threshold
    score: float = 0.0  # fused score of the best candidate
    debug: dict[str, object] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, object]:
        """Returns the JSON contract shared by the CLI and the HTTP API."""
        return {"question": self.question, "language": self.language, "match": self.match,
                "alternatives": self.alternatives, "took_ms": round(self.took_ms, 3)}


class Engine:
    """Answers questions from a knowledge base with a hybrid dense + lexical search."""

    def __init__(self, kb: KnowledgeBase, encoder: Encoder, dense: DenseIndex,
                 threshold: float = DEFAULT_THRESHOLD, weights: Weights = Weights(), cache_size: int = 1024) -> None:
        """Wires the parts together (use :meth:`open` to load or build the index).

        Args:
            kb: the knowledge base.
            encoder: the query encoder (the same model the index was built with).
            dense: the dense index.
            threshold: confidence below which there is no match.
            weights: fusion and confidence shape.
            cache_size: answers kept for repeated questions (0 disables the cache).
        """
        self.kb = kb
        self.encoder = encoder
        self.dense = dense
        self.threshold = threshold
        self.weights = weights
        self.lexical = LexicalIndex(kb.segmenter(), [kb.lexical_document(e) for e in kb.entries],
                                    common_names=kb.common_names)
        self._owner = np.array([p.owner for p in dense.passages], dtype=object)
        self._field = np.array([p.field for p in dense.passages], dtype=object)
        self._is_question = np.isin(self._field, ["question", "alternate"])
        self._is_answer = self._field == "answer"
        self._is_oos = self._field == "oos"
        self._cache: OrderedDict[tuple[str, int], Answer] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path, index_dir: Path, encoder: Encoder, *, faq_dir: Path | None = None,
             rebuild: bool = False, progress: Callable[[int, int], None] | None = None,
             **kwargs: object) -> Engine:
        """Loads the knowledge base and the index, building the index when it is missing or stale.

        Args:
            data_dir: the data folder.
            index_dir: where the index lives.
            encoder: the encoder.
            faq_dir: FAQ folder when not ``data_dir/faq``.
            rebuild: build even when the saved index is current.
            progress: ``progress(done, total)`` while building.
            **kwargs: passed to the constructor (threshold, weights, cache_size).

        Returns:
            A ready engine.
        """
        kb = KnowledgeBase.load(data_dir, faq_dir)
        dense = load_or_build(kb, encoder, Path(index_dir), rebuild=rebuild, progress=progress)
        return cls(kb, encoder, dense, **kwargs)  # type: ignore[arg-type]

    # -- answering -----------------------------------------------------------------------

    def ask(self, question: str, top_k: int = 3) -> Answer:
        """Answers one question.

        Args:
            question: the question as asked (any language; cut when very long).
            top_k: how many candidates in all (the match plus alternatives).

        Returns:
            The answer.

        Raises:
            InvalidQuestion: when the question is empty or blank.
        """
        return self.ask_many([question], top_k)[0]

    def cached(self, question: str, top_k: int = 3) -> Answer | None:
        """The answer from the cache, without encoding anything; None when it is not there.

        Servers call this on their event loop first, so repeated questions never wait for a
        worker thread behind questions that need the model.

        Raises:
            InvalidQuestion: when the question is empty or blank.
        """
        start = time.perf_counter()
        hit = self._cache_get((self.clean(question), top_k))
        return None if hit is None else _handout(hit, question, start)

    def ask_many(self, questions: Sequence[str], top_k: int = 3) -> list[Answer]:
        """Answers several questions with one encoder call.

        Args:
            questions: the questions.
            top_k: candidates per answer.

        Returns:
            One answer per question, in order.

        Raises:
            InvalidQuestion: when any question is empty or blank.
        """
        start = time.perf_counter()
        clean = [self.clean(q) for q in questions]
        results: list[Answer | None] = [self._cache_get((c, top_k)) for c in clean]
        fresh = [i for i, r in enumerate(results) if r is None]
        if fresh:
            vectors = self.encoder.encode([clean[i] for i in fresh], "query")
            scores, idx = self.dense.search(vectors)
            for row, i in enumerate(fresh):
                results[i] = self._answer_and_cache(clean[i], scores[row], idx[row], top_k)
        return [_handout(r, q, start) for q, r in zip(questions, results) if r is not None]

    def ask_encoded(self, question: str, vector: np.ndarray, top_k: int = 3, started: float | None = None) -> Answer:
        """Answers a question whose query vector was computed elsewhere (e.g. off the event loop).

        Args:
            question: the question as asked.
            vector: its query vector, from this engine's encoder.
            top_k: candidates in all.
            started: ``time.perf_counter()`` when answering began, for ``took_ms``.

        Returns:
            The answer (also cached).
        """
        start = started if started is not None else time.perf_counter()
        scores, idx = self.dense.search(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        return _handout(self._answer_and_cache(self.clean(question), scores[0], idx[0], top_k), question, start)

    def warm_up(self) -> None:
        """Runs the answering path once in each language, uncached.

        The first question otherwise pays for what loads lazily: the model's weights paged in,
        the encoder's thread team, the segmenter's tables. Servers call this before they report
        ready.
        """
        for question in ("如何升级 OpenKruise？", "How do I upgrade OpenKruise?"):
            clean = self.clean(question)
            scores, idx = self.dense.search(self.encoder.encode([clean], "query"))
            self._answer(clean, scores[0], idx[0], 3)

    def _answer_and_cache(self, clean: str, scores: np.ndarray, idx: np.ndarray, top_k: int) -> Answer:
        answer = self._answer(clean, scores, idx, top_k)
        self._cache_put((clean, top_k), answer)
        return answer

    @staticmethod
    def clean(question: str) -> str:
        """The question as the engine sees it (normalised and cut).

        Raises:
            InvalidQuestion: when it is empty or blank.
        """
        if not isinstance(question, str):
            raise InvalidQuestion("the question must be text")
        clean = normalise(question)[:MAX_QUESTION_CHARS]
        if not clean:
            raise InvalidQuestion("the question is empty")
        return clean

    def signals(self, clean: str, scores: np.ndarray, idx: np.ndarray) -> tuple[list[Scored], float, int]:
        """Per-entry fused candidates, the best known-gap cosine, and the count of unknown names."""
        dense_q: dict[str, float] = {}
        dense_a: dict[str, float] = {}
        oos = 0.0
        for s, j in zip(scores.tolist(), idx.tolist()):
            if j < 0:
                continue
            owner = self._owner[j]
            if self._is_question[j]:
                if s > dense_q.get(owner, -1.0):
                    dense_q[owner] = s
            elif self._is_answer[j]:
                dense_a[owner] = max(s, dense_a.get(owner, -1.0))
            elif self._is_oos[j]:
                oos = max(oos, s)
        tokens = self.lexical.correct(self.lexical.segmenter.tokens(clean))
        lex = self.lexical.scores(tokens)
        lexical = {e.id: float(v) for e, v in zip(self.kb.entries, lex)}
        ranked = fuse(dense_q, dense_a, lexical, self.weights, self.lexical.coverage(tokens))
        return ranked, oos, len(self.lexical.unknown_names(clean))

    def _answer(self, clean: str, scores: np.ndarray, idx: np.ndarray, top_k: int) -> Answer:
        ranked, oos, unknown = self.signals(clean, scores, idx)
        conf = confidence(ranked, oos, self.weights, unknown)
        top_k = max(1, top_k)
        match = None
        alts_from = 0
        if ranked and conf >= self.threshold:
            e = self.kb.by_id[ranked[0].id]
            match = {**_entry_json(e), "score": round(ranked[0].fused, 4), "confidence": round(conf, 4)}
            alts_from = 1
            top_k -= 1
        alternatives = [{"id": s.id, "question": self.kb.by_id[s.id].question, "score": round(s.fused, 4)}
                        for s in ranked[alts_from:alts_from + max(top_k, 0 if match else 1)]]
        debug = {"oos": oos, "unknown_names": unknown, "top": ranked[:3]}
        return Answer(clean, detect_language(clean), match, alternatives, 0.0, conf,
                      ranked[0].fused if ranked else 0.0, debug)

    # -- cache -----------------------------------------------------------------------------

    def _cache_get(self, key: tuple[str, int]) -> Answer | None:
        if not self._cache_size:
            return None
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def _cache_put(self, key: tuple[str, int], answer: Answer) -> None:
        if not self._cache_size:
            return
        with self._cache_lock:
            self._cache[key] = answer
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    # -- browsing ----------------------------------------------------------------------------

    def entry(self, entry_id: str) -> dict[str, object]:
        """One entry in full.

        Raises:
            UnknownEntry: when no entry has that id.
        """
        e = self.kb.by_id.get(entry_id)
        if e is None:
            raise UnknownEntry(entry_id)
        return _entry_json(e)

    def entries(self) -> list[dict[str, str]]:
        """Every entry's id, section and question."""
        return [{"id": e.id, "section": e.section, "question": e.question} for e in self.kb.entries]


def _handout(answer: Answer, question: str, start: float) -> Answer:
    """A copy for the caller, with the question as asked and the time taken; editing it cannot
    change what the cache hands out next."""
    return replace(answer, question=question, took_ms=(time.perf_counter() - start) * 1000,
                   match=copy.deepcopy(answer.match), alternatives=copy.deepcopy(answer.alternatives))


def _entry_json(e: Entry) -> dict[str, object]:
    return {"id": e.id, "section": e.section, "question": e.question, "answer": e.answer,
            "commands": [{"language": c.language, "code": c.code} for c in e.commands]}


def load_or_build(kb: KnowledgeBase, encoder: Encoder, index_dir: Path, *, rebuild: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> DenseIndex:
    """Loads the saved index when it is current and intact; otherwise builds and saves a new one.

    Args:
        kb: the knowledge base (its data hash decides staleness).
        encoder: the encoder (its name decides staleness).
        index_dir: the index folder.
        rebuild: build regardless.
        progress: ``progress(done, total)`` while building.

    Returns:
        The dense index.
    """
    if not rebuild:
        try:
            return DenseIndex.load(index_dir, encoder.name, kb.data_hash)
        except IndexCorrupt as exc:
            if DenseIndex.read_manifest(index_dir) is None:
                log.info("no index in %s yet; building it", index_dir)
            else:
                log.warning("rebuilding the index in %s: %s", index_dir, exc)
    passages = kb.passages()
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, len(passages))

    dense = DenseIndex.build(passages, encoder.encode, encoder.name, kb.data_hash, progress=tick)  # type: ignore[arg-type]
    try:
        dense.save(index_dir)
    except OSError as exc:
        log.warning("index built but not saved to %s: %s (answering from memory)", index_dir, exc)
    log.info("index built: %d passages in %.2fs", len(dense), dense.build_seconds)
    return dense
