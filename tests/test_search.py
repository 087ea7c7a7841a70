"""qa.search: fusion, confidence, and the Engine (HashEncoder; jieba, BM25 and FAISS for real)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from tiny_faq import (
    ALT_SIDECAR,
    ALT_UNINSTALL,
    OOS_Q,
    Q_CLONESET,
    Q_CPU,
    Q_SIDECAR,
    Q_STUCK,
    Q_UNINSTALL,
    SECTION_STUCK,
    STUCK_BASH,
    TINY_IDS,
    TINY_QUESTIONS,
    open_engine,
)

from qa.contract import Answer, CommandPart, TextPart
from qa.encoders import HashEncoder, Kind
from qa.errors import InvalidQuestion, UnknownEntry
from qa.faq import entry_id
from qa.index import Passage
from qa.knowledge import KnowledgeBase
from qa.search import (
    DEFAULT_THRESHOLD,
    MAX_QUESTION_CHARS,
    Candidate,
    ConfidenceCurve,
    Engine,
    FusionWeights,
    Signals,
    confidence,
    fuse,
)
from qa.segment import normalise

NONSENSE = "zxqv wplk"


def without_time(a: Answer) -> dict[str, object]:
    return a.model_dump(mode="json", exclude={"took_ms", "answer_id"})


class CountingEncoder:
    """A HashEncoder that counts its calls."""

    def __init__(self) -> None:
        self._inner = HashEncoder()
        self.name, self.dim = self._inner.name, self._inner.dim
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        self.calls.append(list(texts))
        return self._inner.encode(texts, kind)


def like(engine: Engine, encoder: object | None = None, **kwargs: object) -> Engine:
    """A fresh engine (own cache) over the same knowledge base and index."""
    return Engine(engine.kb, encoder or engine.encoder, engine.dense, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fuse

W = FusionWeights(question=0.5, answer=0.3, lexical=0.2)
DENSE_Q = {"a": 0.9, "b": 0.7}
DENSE_A = {"a": 0.5, "b": 0.8, "c": 0.6}
LEXICAL = {"a": 2.0, "b": 4.0, "c": 0.0}


def test_fuse_exact_order_and_values() -> None:
    ranked = fuse(DENSE_Q, DENSE_A, LEXICAL, W)
    # b: .5*.7 + .3*.8 + .2*(4/4) = .35 + .24 + .2  = .79
    # a: .5*.9 + .3*.5 + .2*(2/4) = .45 + .15 + .1  = .70
    # c: .5*0  + .3*.6 + .2*(0/4) = 0   + .18 + 0   = .18
    assert [s.id for s in ranked] == ["b", "a", "c"]
    assert [s.fused for s in ranked] == pytest.approx([0.79, 0.70, 0.18])
    assert [(s.question, s.answer, s.lexical) for s in ranked] == [(0.7, 0.8, 1.0), (0.9, 0.5, 0.5), (0.0, 0.6, 0.0)]


def test_fuse_coverage_scales_the_lexical_signal() -> None:
    half = fuse(DENSE_Q, DENSE_A, LEXICAL, W, coverage=0.5)
    # b: .35 + .24 + .2*.5*1 = .69 ; a: .45 + .15 + .2*.5*.5 = .65 ; c: .18
    assert [(s.id, s.lexical) for s in half] == [("b", 0.5), ("a", 0.25), ("c", 0.0)]
    assert [s.fused for s in half] == pytest.approx([0.69, 0.65, 0.18])
    # without known words the lexical signal is gone and the dense order wins: a .60 > b .59
    none = fuse(DENSE_Q, DENSE_A, LEXICAL, W, coverage=0.0)
    assert [s.id for s in none] == ["a", "b", "c"]
    assert [s.fused for s in none] == pytest.approx([0.60, 0.59, 0.18])


def test_fuse_with_the_default_weights() -> None:
    w = FusionWeights()
    ranked = fuse(DENSE_Q, DENSE_A, LEXICAL)
    expected = {
        "a": w.question * 0.9 + w.answer * 0.5 + w.lexical * 0.5,
        "b": w.question * 0.7 + w.answer * 0.8 + w.lexical * 1.0,
        "c": w.answer * 0.6,
    }
    assert [s.id for s in ranked] == sorted(expected, key=lambda i: (-expected[i], i))
    assert {s.id: s.fused for s in ranked} == pytest.approx(expected)


def test_fuse_ties_broken_by_id_and_no_division_by_zero() -> None:
    ranked = fuse({"z": 0.5, "y": 0.5, "x": 0.2}, {}, {"z": 0.0, "y": 0.0}, W)
    assert [s.id for s in ranked] == ["y", "z", "x"]
    assert [s.fused for s in ranked] == pytest.approx([0.25, 0.25, 0.1])
    assert all(s.lexical == 0.0 for s in ranked)
    assert fuse({}, {}, {}) == []


def test_fuse_entry_only_in_the_lexical_search() -> None:
    [only] = fuse({}, {}, {"only": 3.0}, W)
    assert (only.id, only.fused, only.question, only.answer, only.lexical) == ("only", pytest.approx(0.2), 0.0, 0.0, 1.0)


# --------------------------------------------------------------------------- confidence

CW = ConfidenceCurve(level=0.8, slope=40.0, margin_gain=25.0, gap_gain=40.0, unknown_gain=4.0)


def ranked_of(top: float, second: float | None = None, top_question: float = 0.95, known_gap: float = 0.0,
              unknown: int = 0) -> Signals:
    out = [Candidate("x", top, top_question, 0.0, 0.0)]
    if second is not None:
        out.append(Candidate("y", second, 0.5, 0.0, 0.0))
    return Signals(out, known_gap, unknown)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_confidence_exact_values() -> None:
    # z = 40 * (0.9 - 0.8) + 25 * (0.9 - 0.7) = 4 + 5 = 9
    assert confidence(ranked_of(0.9, 0.7), CW) == pytest.approx(sigmoid(9.0))
    # a known-gap example 0.05 closer than the entry's own question: z = 9 - 40 * 0.05 = 7
    assert confidence(ranked_of(0.9, 0.7, known_gap=1.0), CW) == pytest.approx(sigmoid(7.0))
    # one unknown product name: z = 9 - 4 = 5
    assert confidence(ranked_of(0.9, 0.7, unknown=1), CW) == pytest.approx(sigmoid(5.0))
    # a single candidate: the margin is its own score, z = 4 + 25 * 0.9 = 26.5
    assert confidence(ranked_of(0.9), CW) == pytest.approx(sigmoid(26.5))
    assert confidence(Signals([], 0.0, 0), CW) == pytest.approx(0.0, abs=1e-12)


def test_confidence_with_the_default_weights() -> None:
    w = ConfidenceCurve()
    z = w.slope * (0.9 - w.level) + w.margin_gain * 0.2 - w.gap_gain * 0.05 - w.unknown_gain * 2
    assert confidence(ranked_of(0.9, 0.7, known_gap=1.0, unknown=2)) == pytest.approx(sigmoid(z))


def test_confidence_rises_with_the_top_score() -> None:
    values = [confidence(ranked_of(top, top - 0.1), CW) for top in (0.6, 0.7, 0.75, 0.8, 0.85, 0.9)]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[0] < 0.5 < values[-1]


def test_confidence_rises_with_the_margin() -> None:
    values = [confidence(ranked_of(0.8, second), CW) for second in (0.8, 0.78, 0.75, 0.7, 0.6)]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[0] == pytest.approx(0.5)  # at the level with no margin: z = 0


def test_a_too_general_question_loses_general_gain_from_its_logit() -> None:
    w = ConfidenceCurve()
    specific, general = ranked_of(0.9, 0.7), ranked_of(0.9, 0.7)
    general = Signals(general.candidates, general.known_gap, general.unknown_names, too_general=True)
    assert confidence(general, w) == pytest.approx(sigmoid(w.slope * (0.9 - w.level) + w.margin_gain * 0.2
                                                           - w.general_gain))
    assert confidence(specific, w) > 0.5 > confidence(general, w)


def test_rarest_share_is_the_share_of_entries_with_the_most_specific_known_word() -> None:
    from qa.lexical import LexicalIndex
    from qa.segment import Segmenter

    index = LexicalIndex(Segmenter([]), ["openkruise cloneset", "openkruise sidecarset", "openkruise helm", "helm"])
    assert index.rarest_share(["openkruise"]) == pytest.approx(0.75)
    assert index.rarest_share(["openkruise", "helm"]) == pytest.approx(0.5)
    assert index.rarest_share(["openkruise", "cloneset", "bread"]) == pytest.approx(0.25)
    assert index.rarest_share(["bread", "§12"]) is None  # nothing known: no judgement


def test_confidence_falls_only_when_a_known_gap_beats_the_best_question() -> None:
    base = confidence(ranked_of(0.85, 0.75, top_question=0.9), CW)
    assert confidence(ranked_of(0.85, 0.75, top_question=0.9, known_gap=0.9), CW) == base  # not closer: no effect
    closer = [confidence(ranked_of(0.85, 0.75, top_question=0.9, known_gap=oos), CW) for oos in (0.92, 0.95, 1.0)]
    assert base > closer[0] > closer[1] > closer[2]


@pytest.mark.parametrize("top, second, oos, unknown", [
    (100.0, -100.0, 0.0, 0), (-100.0, -200.0, 0.0, 0), (0.9, 0.9, 50.0, 0), (1e9, 0.0, 0.0, 0),
    (0.5, 0.4, 0.0, 1000), (0.0, 0.0, 0.0, 0),
])
def test_confidence_stays_within_0_and_1(top: float, second: float, oos: float, unknown: int) -> None:
    for w in (CW, ConfidenceCurve()):
        c = confidence(ranked_of(top, second, known_gap=oos, unknown=unknown), w)
        assert 0.0 <= c <= 1.0


# --------------------------------------------------------------------------- the knowledge base


def test_knowledge_base_loads_every_file(tiny_data: Path) -> None:
    kb = KnowledgeBase.load(tiny_data)
    assert [e.question for e in kb.entries] == TINY_QUESTIONS
    assert kb.warnings == []
    assert kb.alternates == {TINY_IDS[Q_SIDECAR]: [ALT_SIDECAR, "add a sidecar to running pods"],
                             TINY_IDS[Q_UNINSTALL]: [ALT_UNINSTALL]}
    assert kb.known_gaps == {"baking": [OOS_Q, "best oven temperature for a baguette"]}
    assert kb.glossary.groups[2] == ["uninstall", "卸载"]
    assert "PreparingUpdate" in kb.terms
    assert len(kb.data_hash) == 16
    passages = kb.passages()
    assert len(passages) == 5 + 5 + 3 + 2
    sidecar = TINY_IDS[Q_SIDECAR]
    assert [p for p in passages if p.owner == sidecar] == [
        Passage(sidecar, "question", Q_SIDECAR), Passage(sidecar, "alternate", ALT_SIDECAR),
        Passage(sidecar, "alternate", "add a sidecar to running pods"),
        Passage(sidecar, "answer", f"{Q_SIDECAR}\n{kb.by_id[sidecar].markdown}")]
    assert passages[-2:] == [Passage("gap:baking", "known_gap", OOS_Q),
                             Passage("gap:baking", "known_gap", "best oven temperature for a baguette")]


def test_alternates_for_an_unknown_id_are_dropped_with_a_warning(tiny_data: Path) -> None:
    (tiny_data / "alternates.yaml").write_text('"deadbeef":\n  - "orphan phrasing"\n', encoding="utf-8")
    kb = KnowledgeBase.load(tiny_data)
    assert kb.alternates == {}
    assert [str(w) for w in kb.warnings] == ["alternates.yaml:1: unknown entry id 'deadbeef'; ignored"]


def test_unreadable_data_files_are_ignored_with_a_warning(tiny_data: Path) -> None:
    for name in ("glossary.tsv", "alternates.yaml"):
        (tiny_data / name).unlink()
        (tiny_data / name).mkdir()  # reading it raises IsADirectoryError
    (tiny_data / "terms.txt").write_bytes(b"\xff\xfe\x00broken")
    kb = KnowledgeBase.load(tiny_data)
    assert [e.question for e in kb.entries] == TINY_QUESTIONS
    assert (kb.glossary.groups, kb.terms, kb.alternates) == ([], [], {})
    assert sorted(w.source for w in kb.warnings) == ["alternates.yaml", "glossary.tsv", "terms.txt"]


def test_only_the_faq_is_required(tmp_path: Path) -> None:
    (tmp_path / "faq").mkdir()
    (tmp_path / "faq" / "one.md").write_text("## S\n\n#### Q：Only one?\n\nA：Yes.\n", encoding="utf-8")
    engine = open_engine(tmp_path, tmp_path / "index")
    assert engine.ask("Only one?").match.id == entry_id("Only one?")  # type: ignore[union-attr]


# --------------------------------------------------------------------------- the engine: matches


@pytest.mark.parametrize("question, language", [
    (Q_CPU, "zh"), (Q_STUCK, "zh"), (Q_SIDECAR, "en"), (Q_UNINSTALL, "en"), (Q_CLONESET, "zh")])
def test_exact_question_matches_its_entry_with_the_json_contract(hash_engine: Engine, question: str,
                                                                 language: str) -> None:
    answer = hash_engine.ask(question)
    body = json.loads(answer.model_dump_json())
    # the JSON is the contract, and reads back to the same answer
    assert Answer.model_validate(body).model_dump() == answer.model_dump()
    assert (answer.question, answer.language) == (question, language)
    match = answer.match
    assert match is not None
    e = hash_engine.kb.by_id[entry_id(question)]
    assert (match.id, match.section, match.question, match.answer) == (e.id, e.section, question, e.answer)
    assert DEFAULT_THRESHOLD <= match.confidence <= 1.0
    assert match.confidence == round(answer.confidence, 4)
    assert match.score == round(answer.score, 4)
    assert len(answer.alternatives) == 2
    assert entry_id(question) not in {a.id for a in answer.alternatives}
    scores = [match.score] + [a.score for a in answer.alternatives]
    assert scores == sorted(scores, reverse=True)
    for a in answer.alternatives:
        assert a.question == hash_engine.kb.by_id[a.id].question
    assert body["took_ms"] >= 0 and body["took_ms"] == round(answer.took_ms, 3)


def test_match_carries_the_commands_in_order_with_the_text(hash_engine: Engine) -> None:
    match = hash_engine.ask(Q_STUCK).match
    assert match is not None and match.section == SECTION_STUCK
    assert [type(p) for p in match.answer] == [TextPart, CommandPart]
    assert match.commands == [CommandPart(language="bash", code=STUCK_BASH)]


@pytest.mark.parametrize("phrasing, question", [
    (ALT_SIDECAR, Q_SIDECAR), ("add a sidecar to running pods", Q_SIDECAR), (ALT_UNINSTALL, Q_UNINSTALL)])
def test_alternate_phrasing_finds_its_entry(hash_engine: Engine, phrasing: str, question: str) -> None:
    answer = hash_engine.ask(phrasing)
    assert answer.match is not None and answer.match.id == TINY_IDS[question]
    assert answer.question == phrasing


def test_nonsense_with_a_high_threshold_has_no_match_but_alternatives(hash_engine: Engine) -> None:
    strict = like(hash_engine, threshold=0.999)
    answer = strict.ask(NONSENSE)
    assert answer.match is None
    assert len(answer.alternatives) == 3
    assert {a.id for a in answer.alternatives} <= set(TINY_IDS.values())
    # the exact question still clears it
    assert strict.ask(Q_CPU).match is not None


def test_known_gap_question_is_rejected(hash_engine: Engine) -> None:
    answer = hash_engine.ask(OOS_Q)
    assert answer.match is None
    assert hash_engine.signals(OOS_Q).known_gap == pytest.approx(1.0)
    assert len(answer.alternatives) == 3


def test_unknown_product_name_lowers_the_confidence(hash_engine: Engine) -> None:
    known = hash_engine.ask("CloneSet 和 Deployment 有什么区别？")
    unknown = hash_engine.ask("BroadcastJob 和 Deployment 有什么区别？")
    assert (hash_engine.signals("CloneSet 和 Deployment 有什么区别？").unknown_names,
            hash_engine.signals("BroadcastJob 和 Deployment 有什么区别？").unknown_names) == (0, 1)
    assert unknown.confidence < known.confidence
    assert hash_engine.lexical.unknown_names("BroadcastJob 和 CloneSets 的 PreparingUpdate") == ["broadcastjob"]


def test_kubernetes_own_names_are_not_unknown_products(hash_engine: Engine, tiny_data: Path) -> None:
    """Kinds and event reasons in a pasted error do not count against the answer; products still do."""
    from qa.knowledge import KnowledgeBase
    from qa.lexical import LexicalIndex

    text = "Warning FailedGetScale: no ReplicaSet, ImagePullBackOff; also BroadcastJob"
    assert hash_engine.lexical.unknown_names(text) == ["broadcastjob", "failedgetscale", "imagepullbackoff",
                                                       "replicaset"]
    before = KnowledgeBase.load(tiny_data).data_hash
    (tiny_data / "common_names.txt").write_text("# comment\nFailed*\nReplicaSet\n*BackOff\n", encoding="utf-8")
    kb = KnowledgeBase.load(tiny_data)
    assert kb.common_names == ["Failed*", "ReplicaSet", "*BackOff"]
    assert kb.data_hash != before  # an edit rebuilds the index and reloads the server
    lexical = LexicalIndex(kb.segmenter(), [kb.lexical_document(e) for e in kb.entries], common_names=kb.common_names)
    assert lexical.unknown_names(text) == ["broadcastjob"]
    assert lexical.unknown_names("BackOffJob and ReplicaSetX") == ["backoffjob", "replicasetx"]  # whole names only


def test_misspelt_english_words_are_corrected_on_the_lexical_side(hash_engine: Engine) -> None:
    assert hash_engine.lexical.correct(["clonset", "sidcar", "bread"]) == ["cloneset", "sidecar", "§0", "bread"]
    assert hash_engine.ask("Clonset 和 Deployment 有什么区别？").match.id == TINY_IDS[Q_CLONESET]  # type: ignore[union-attr]


@pytest.mark.parametrize("threshold", [1.0, 0.0])
def test_threshold_given_to_the_engine_is_respected(hash_engine: Engine, threshold: float) -> None:
    engine = like(hash_engine, threshold=threshold)
    assert engine.threshold == threshold
    exact, nonsense = engine.ask(Q_CPU), engine.ask(NONSENSE)
    if threshold == 1.0:  # nothing is certain: no match, the right entry first among the alternatives
        assert exact.match is None and nonsense.match is None
        assert exact.alternatives[0].id == TINY_IDS[Q_CPU]
        assert len(exact.alternatives) == 3
    else:  # anything goes: even nonsense gets its best candidate as the match
        assert exact.match is not None and exact.match.id == TINY_IDS[Q_CPU]
        assert nonsense.match is not None
        assert nonsense.match.id == hash_engine.ask(NONSENSE).alternatives[0].id


def test_default_threshold(hash_engine: Engine) -> None:
    assert hash_engine.threshold == DEFAULT_THRESHOLD == 0.5


@pytest.mark.parametrize("top_k, matched, expected", [(1, True, 0), (3, True, 2), (5, True, 4), (10, True, 4),
                                                      (1, False, 1), (3, False, 3), (5, False, 5)])
def test_top_k_counts_the_match_and_the_alternatives(hash_engine: Engine, top_k: int, matched: bool,
                                                     expected: int) -> None:
    answer = hash_engine.ask(Q_CPU if matched else NONSENSE, top_k=top_k)
    assert (answer.match is not None) == matched
    assert len(answer.alternatives) == expected


# --------------------------------------------------------------------------- the engine: input


@pytest.mark.parametrize("question", ["", "   ", "\t\n  ", "\x00\u200b\x07", "\u3000"])
def test_empty_or_blank_question_is_invalid(hash_engine: Engine, question: str) -> None:
    with pytest.raises(InvalidQuestion):
        hash_engine.ask(question)


def test_non_text_question_is_invalid(hash_engine: Engine) -> None:
    with pytest.raises(InvalidQuestion):
        hash_engine.ask(None)  # type: ignore[arg-type]


def test_100_kb_question_is_answered(hash_engine: Engine) -> None:
    big = ((Q_SIDECAR + " ") * 2000)[:100_000]
    assert len(big.encode("utf-8")) == 100_000
    start = time.perf_counter()
    answer = hash_engine.ask(big)
    assert time.perf_counter() - start < 5.0
    assert answer.question == big
    assert answer.match is not None and answer.match.id == TINY_IDS[Q_SIDECAR]
    json.loads(answer.model_dump_json())


def test_very_long_questions_are_cut_before_searching(hash_engine: Engine) -> None:
    head = ("原地升级能修改容器的 CPU 和内存吗？" * 400)[:MAX_QUESTION_CHARS]
    a, b = hash_engine.ask(head + " one tail" * 1000), hash_engine.ask(head + " another tail" * 1000)
    assert without_time(a) | {"question": ""} == without_time(b) | {"question": ""}


def test_full_width_question_is_normalised(hash_engine: Engine) -> None:
    asked = "ＣｌｏｎｅＳｅｔ　和　Ｄｅｐｌｏｙｍｅｎｔ　有什么区别？"
    answer = hash_engine.ask(asked)
    assert answer.question == asked
    assert answer.match is not None and answer.match.id == TINY_IDS[Q_CLONESET]


# --------------------------------------------------------------------------- ask_many and the cache


def test_ask_async_equals_ask(hash_engine: Engine) -> None:
    questions = TINY_QUESTIONS + [ALT_SIDECAR, NONSENSE, OOS_Q, Q_CPU]
    sync_engine, async_engine = like(hash_engine, cache_size=0), like(hash_engine, cache_size=0)

    async def ask_all() -> list[Answer]:
        return [await async_engine.ask_async(q) for q in questions]

    assert [without_time(a) for a in asyncio.run(ask_all())] == [without_time(sync_engine.ask(q)) for q in questions]


def test_questions_are_cleaned_once_before_encoding(hash_engine: Engine) -> None:
    encoder = CountingEncoder()
    engine = like(hash_engine, encoder)
    for q in (Q_CPU, " " + Q_SIDECAR):
        engine.ask(q)
    # the normalised questions (NFKC turns the full-width question marks into "?")
    assert encoder.calls == [[normalise(Q_CPU)], [Q_SIDECAR]]
    assert normalise(Q_CPU).endswith("吗?")


def test_ask_async_awaits_an_encoder_that_submits(hash_engine: Engine) -> None:
    from server.batching import BatchingEncoder

    encoder = BatchingEncoder(CountingEncoder())
    try:
        engine = like(hash_engine, encoder)
        answer = asyncio.run(engine.ask_async(Q_STUCK))
        assert answer.match is not None and answer.match.id == TINY_IDS[Q_STUCK]
        assert encoder.inner.calls == [[normalise(Q_STUCK)]]  # type: ignore[attr-defined]
    finally:
        encoder.close()


def test_cache_returns_the_same_answer_without_encoding_again(hash_engine: Engine) -> None:
    encoder = CountingEncoder()
    engine = like(hash_engine, encoder)
    first = engine.ask(Q_STUCK)
    second = engine.ask(Q_STUCK)
    assert len(encoder.calls) == 1
    assert without_time(second) == without_time(first)
    # the same question after normalisation is the same cache entry, answered as asked
    spaced = engine.ask("  " + Q_STUCK.replace(" ", "   ") + "  ")
    assert len(encoder.calls) == 1
    assert spaced.question == "  " + Q_STUCK.replace(" ", "   ") + "  "
    assert spaced.match == first.match
    # another top_k is another entry
    engine.ask(Q_STUCK, top_k=5)
    assert len(encoder.calls) == 2


def test_cached_answer_takes_under_a_millisecond(hash_engine: Engine) -> None:
    hash_engine.ask(Q_CPU)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        hash_engine.ask(Q_CPU)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.001


def test_cache_can_be_disabled(hash_engine: Engine) -> None:
    encoder = CountingEncoder()
    engine = like(hash_engine, encoder, cache_size=0)
    engine.ask(Q_CPU)
    engine.ask(Q_CPU)
    assert len(encoder.calls) == 2


def test_cache_evicts_the_least_recently_used(hash_engine: Engine) -> None:
    encoder = CountingEncoder()
    engine = like(hash_engine, encoder, cache_size=2)
    for q in (Q_CPU, Q_STUCK, Q_CPU, Q_SIDECAR):  # Q_CPU is used again, so Q_STUCK is the one evicted
        engine.ask(q)
    assert len(encoder.calls) == 3
    engine.ask(Q_CPU)
    assert len(encoder.calls) == 3
    engine.ask(Q_STUCK)
    assert len(encoder.calls) == 4


def test_a_returned_answer_cannot_be_changed(hash_engine: Engine) -> None:
    first = hash_engine.ask(Q_CPU)
    with pytest.raises(ValidationError):
        first.match.question = "changed"  # type: ignore[misc, union-attr]
    with pytest.raises(ValidationError):
        first.alternatives = ()  # type: ignore[misc]
    assert hash_engine.ask(Q_CPU).match == first.match


# --------------------------------------------------------------------------- browsing


def test_entry_by_id(hash_engine: Engine) -> None:
    e = hash_engine.entry(TINY_IDS[Q_STUCK])
    assert (e.id, e.section, e.question) == (TINY_IDS[Q_STUCK], SECTION_STUCK, Q_STUCK)
    assert e.commands == [CommandPart(language="bash", code=STUCK_BASH)]


@pytest.mark.parametrize("bad", ["deadbeef", "", TINY_IDS[Q_CPU].upper(), TINY_IDS[Q_CPU] + "-2"])
def test_entry_with_an_unknown_id_raises(hash_engine: Engine, bad: str) -> None:
    with pytest.raises(UnknownEntry):
        hash_engine.entry(bad)
    with pytest.raises(KeyError):  # UnknownEntry is a KeyError too
        hash_engine.entry(bad)


def test_entries_lists_every_entry(hash_engine: Engine) -> None:
    assert [(e.id, e.question) for e in hash_engine.entries()] == [(TINY_IDS[q], q) for q in TINY_QUESTIONS]
    assert [e.section for e in hash_engine.entries()] == [
        "原地升级 / 资源", "原地升级 / 状态", "Sidecar", "Uninstall / Helm", "工作负载"]


def _gated_batching_encoder(dim: int) -> tuple[Any, threading.Event]:
    """A BatchingEncoder whose worker waits at the gate before each batch (so work can pile up)."""
    from server.batching import BatchingEncoder

    gate = threading.Event()

    class Gated(HashEncoder):
        def encode(self, texts, kind="passage"):  # type: ignore[no-untyped-def]
            gate.wait(5)
            return super().encode(texts, kind)

    return BatchingEncoder(Gated(dim=dim)), gate


def test_batching_encoder_survives_a_caller_that_gave_up() -> None:
    """A cancelled request (a client that went away) must not stop the encoder's worker."""
    enc, gate = _gated_batching_encoder(32)
    first = enc.submit(["busy"], "query")  # occupies the worker
    abandoned = enc.submit(["gone"], "query")
    assert abandoned.cancel()
    gate.set()
    assert first.result(5).shape == (1, 32)
    assert enc.submit(["still answering"], "query").result(5).shape == (1, 32)
    assert enc._thread.is_alive()


def test_closed_batching_encoder_finishes_queued_work_then_refuses() -> None:
    enc, gate = _gated_batching_encoder(16)
    queued = [enc.submit([f"q{i}"], "query") for i in range(3)]
    enc.close()
    gate.set()
    assert all(f.result(5).shape == (1, 16) for f in queued)
    enc._thread.join(5)
    assert not enc._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        enc.submit(["late"], "query")


def test_warm_up_runs_the_answering_path_without_filling_the_cache(hash_engine: Engine) -> None:
    encoder = CountingEncoder()
    engine = like(hash_engine, encoder)
    engine.warm_up()
    assert len(encoder.calls) == 2  # one question in each language, each encoded as a query
    engine.ask("如何升级 OpenKruise？")
    assert len(encoder.calls) == 3  # not cached by the warm-up


def test_data_file_items_are_validated_with_file_and_line(tiny_data: Path) -> None:
    sidecar, cpu = TINY_IDS[Q_SIDECAR], TINY_IDS[Q_CPU]
    (tiny_data / "translations.yaml").write_text(
        f'"{sidecar}":\n  question: "How do I add a sidecar?"\n  answer: "Use a SidecarSet."\n'
        f'"{cpu}":\n  answer: "no question here"\n', encoding="utf-8")
    (tiny_data / "out_of_scope.yaml").write_text(
        '- topic: baking\n  examples:\n    - "bread"\n- topic: empty\n  examples: []\n- just a string\n',
        encoding="utf-8")
    (tiny_data / "alternates.yaml").write_text(f'"{sidecar}":\n  - "ok"\n"{cpu}": "not a list"\n', encoding="utf-8")
    kb = KnowledgeBase.load(tiny_data)
    # the valid items load ...
    assert kb.translations[sidecar].question == "How do I add a sidecar?"
    assert kb.translations[sidecar].answer == (TextPart(markdown="Use a SidecarSet."),)
    assert kb.known_gaps == {"baking": ["bread"]}
    assert kb.alternates == {sidecar: ["ok"]}
    # ... and each bad one is named with its file and line
    assert sorted(str(w) for w in kb.warnings) == [
        f"alternates.yaml:3: {cpu}: Input should be a valid list; ignored",
        "out_of_scope.yaml:5: 1.examples: List should have at least 1 item after validation, not 0; ignored",
        "out_of_scope.yaml:6: 2: Input should be a valid dictionary or instance of KnownGap; ignored",
        f"translations.yaml:5: {cpu}.question: Field required; ignored",
    ]


def test_a_data_file_that_is_not_yaml_is_named_with_its_line(tiny_data: Path) -> None:
    (tiny_data / "alternates.yaml").write_text('"a":\n  - [unclosed\n', encoding="utf-8")
    kb = KnowledgeBase.load(tiny_data)
    assert kb.alternates == {}
    [warning] = kb.warnings
    assert warning.source == "alternates.yaml" and warning.line > 0 and "cannot parse" in warning.message


def test_every_answer_gets_its_own_id_also_from_the_cache(hash_engine: Engine) -> None:
    ids = {hash_engine.ask(Q_CPU).answer_id for _ in range(3)} | {asyncio.run(hash_engine.ask_async(Q_CPU)).answer_id}
    assert len(ids) == 4 and all(len(i) == 32 for i in ids)
