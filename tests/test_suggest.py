"""``qa suggest`` (qa/suggest.py): alternates proposed from the records, and written by ``--accept``.

The records are real (qa.records' Recorder on a temporary SQLite file); the FAQ is the tiny one,
with the HashEncoder; the formatting test runs on a copy of the shipped data/alternates.yaml.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tiny_faq import (
    ALT_SIDECAR,
    OOS_Q,
    Q_CLONESET,
    Q_CPU,
    Q_SIDECAR,
    Q_STUCK,
    Q_UNINSTALL,
    REAL_DATA,
    TINY_IDS,
    open_engine,
)

from qa import suggest
from qa.cli import main
from qa.contract import Alternative, Answer, Match, TextPart
from qa.encoders import HashEncoder
from qa.knowledge import KnowledgeBase
from qa.records import Recorder, db
from qa.records.recorder import utcnow

CPU, STUCK, SIDECAR, UNINSTALL, CLONESET = (TINY_IDS[q] for q in (Q_CPU, Q_STUCK, Q_SIDECAR, Q_UNINSTALL, Q_CLONESET))
_n = itertools.count(1)


# --------------------------------------------------------------------------- helpers


def answer(question: str, match: str | None = None, confidence: float | None = None,
           alternatives: tuple[str, ...] = (STUCK, SIDECAR)) -> Answer:
    """An answer as the engine makes it: matched to ``match`` with ``confidence``, or refused."""
    conf = confidence if confidence is not None else (0.95 if match else 0.1)
    m = None if match is None else Match(id=match, section="s", question=f"q of {match}",
                                         answer=(TextPart(markdown="a"),), score=0.9, confidence=conf)
    a = Answer(answer_id=f"{next(_n):032x}", question=question, language="en", match=m,
               alternatives=tuple(Alternative(id=i, question=i, score=0.5) for i in alternatives), took_ms=3.0)
    a._confidence = conf
    return a


@pytest.fixture
def records(tmp_path: Path) -> Iterator[tuple[Recorder, sa.Engine]]:
    """A recorder on an empty SQLite file (tmp_path/state/records.sqlite3, where QA_STATE_DIR finds it)."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'state' / db.SQLITE_FILE}")
    r = Recorder(engine, salt="test", batch_delay=0.0)
    r.start()
    yield r, engine
    r.close(timeout=5)
    engine.dispose()


def ask(r: Recorder, a: Answer, who: str = "ip:192.0.2.1", click: str | None = None,
        helpful: bool | None = None) -> Answer:
    """Records ``a``, then what its asker did: clicked the alternative ``click`` (which asks that
    entry's question, with ``after``), and/or gave 👍/👎."""
    r.record_answer(a, "page", who)
    if click is not None:
        follow = answer(f"q of {click}", match=click)
        r.record_answer(follow, "page", who)
        r.record_click(a.answer_id, click, "page", follow.answer_id)
    if helpful is not None:
        assert r.flush(10)
        r.feedback(a.answer_id, helpful)
    return a


def listing(engine: sa.Engine, kb: KnowledgeBase, **kwargs: object) -> suggest.Suggestions:
    assert isinstance(kwargs.setdefault("since", utcnow() - timedelta(days=1)), object)
    return suggest.build_suggestions(engine, kb, **kwargs)  # type: ignore[arg-type]


def flushed(r: Recorder) -> None:
    assert r.flush(10)


# --------------------------------------------------------------------------- suggestions


def test_suggestions_from_records_ranked_with_their_evidence(records: tuple[Recorder, sa.Engine],
                                                            tiny_data: Path) -> None:
    r, engine = records
    kb = KnowledgeBase.load(tiny_data)
    # refused three times by two askers, and one of them clicked the stuck entry: confirmed, count 3
    ask(r, answer("pod hangs while updating"), who="ip:192.0.2.1", click=STUCK)
    ask(r, answer("pod hangs while updating"), who="ip:192.0.2.2")
    ask(r, answer("Pod hangs  while updating"), who="ip:192.0.2.2")
    # a wrong confident answer with a click on the right entry (and a 👎): names the uninstall entry
    ask(r, answer("remove kruise", match=CLONESET, alternatives=(UNINSTALL, CPU)), click=UNINSTALL, helpful=False)
    # refused, nothing else: the engine's best candidate (the first alternative shown) is a guess
    ask(r, answer("kruise 资源 怎么改", alternatives=(CPU, STUCK)))
    ask(r, answer("kruise 资源 怎么改", alternatives=(CPU, STUCK)))
    # a 👎 on a confident answer, no click: the next candidate, a guess
    ask(r, answer("sidecar for old pods", match=CLONESET, alternatives=(SIDECAR, CPU)), helpful=False)
    # low confidence, no feedback: its own entry, a guess; with a 👍: confirmed
    ask(r, answer("cloneset or deployment?", match=CLONESET, confidence=0.6, alternatives=(CPU,)))
    ask(r, answer("resize cpu in place", match=CPU, confidence=0.55, alternatives=(CLONESET,)), helpful=True)
    # left alone: a confident answer; a 👍 on a confident answer; a 👍 on a refusal
    ask(r, answer("how to change cpu in place", match=CPU))
    ask(r, answer("in place resources", match=CPU), helpful=True)
    ask(r, answer(OOS_Q + "?", alternatives=(CPU,)), helpful=True)
    # not proposed: already an alternate of its entry; another entry's alternate (a collision)
    ask(r, answer(ALT_SIDECAR, alternatives=(SIDECAR,)))
    ask(r, answer("Add a sidecar to running pods!", alternatives=(STUCK,)), click=STUCK)
    flushed(r)

    got = listing(engine, kb, encoder=None)
    by_text = {s.phrasings[0].text: s for s in got.suggestions}
    assert set(by_text) == {"pod hangs while updating", "remove kruise", "kruise 资源 怎么改", "sidecar for old pods",
                            "cloneset or deployment?", "resize cpu in place"}
    hang = by_text["pod hangs while updating"]
    assert (hang.entry_id, hang.guessed, hang.count) == (STUCK, False, 3)
    assert hang.evidence.model_dump() == {"questions": 3, "askers": 2, "clicks": 1, "helpful": 0, "unhelpful": 0,
                                          "refused": 3, "low_confidence": 0}
    assert hang.phrasings[0].count == 3  # the three wordings are one phrasing (white space and case)
    remove = by_text["remove kruise"]
    assert (remove.entry_id, remove.guessed, remove.evidence.clicks, remove.evidence.unhelpful) == (UNINSTALL, False,
                                                                                                    1, 1)
    assert (by_text["kruise 资源 怎么改"].entry_id, by_text["kruise 资源 怎么改"].guessed) == (CPU, True)
    assert (by_text["sidecar for old pods"].entry_id, by_text["sidecar for old pods"].guessed) == (SIDECAR, True)
    assert (by_text["cloneset or deployment?"].entry_id, by_text["cloneset or deployment?"].guessed,
            by_text["cloneset or deployment?"].evidence.low_confidence) == (CLONESET, True, 1)
    assert (by_text["resize cpu in place"].entry_id, by_text["resize cpu in place"].guessed) == (CPU, False)
    # ranked by how often asked; at equal counts a confirmed one before a guess
    assert [s.count for s in got.suggestions] == sorted((s.count for s in got.suggestions), reverse=True)
    assert got.suggestions[0] is hang and got.suggestions[1].phrasings[0].text == "kruise 资源 怎么改"
    assert got.suggestions.index(remove) < got.suggestions.index(by_text["sidecar for old pods"])
    left = {x.text: x.reason for x in got.left_out}
    assert left[ALT_SIDECAR] == "already a phrasing of the entry"
    assert left["Add a sidecar to running pods!"] == f"would collide with the entry {SIDECAR}"
    # the questions asked by clicking (the entries' own questions) are not phrasings
    assert not any(p.text.startswith("q of ") for s in got.suggestions for p in s.phrasings)
    # filters
    assert [s.phrasings[0].text for s in got.filtered(min_count=2).suggestions] == ["pod hangs while updating",
                                                                                    "kruise 资源 怎么改"]
    assert all(not s.guessed for s in got.filtered(confirmed=True).suggestions)
    assert len(got.filtered(confirmed=True).suggestions) == 3 and len(got.filtered(top=2).suggestions) == 2
    # ids are stable from one run to the next, and a window without these questions has none
    assert [s.id for s in listing(engine, kb).suggestions] == [s.id for s in got.suggestions]
    assert listing(engine, kb, since=utcnow() + timedelta(minutes=1)).suggestions == []


def test_an_off_topic_refusal_is_no_guess_unless_a_click_names_its_entry(records: tuple[Recorder, sa.Engine],
                                                                         tiny_data: Path) -> None:
    r, engine = records
    kb = KnowledgeBase.load(tiny_data)
    ask(r, answer("how do I reverse a linked list", confidence=0.002, alternatives=(CPU,)))
    ask(r, answer("will it rain tomorrow", confidence=0.01, alternatives=(STUCK,)), click=STUCK)
    ask(r, answer("kruise pods do not get new sidecar", confidence=0.2, alternatives=(SIDECAR,)))
    ask(r, answer("weather for kruise", confidence=0.03, alternatives=(SIDECAR,)), helpful=False)
    flushed(r)
    texts = {s.phrasings[0].text for s in listing(engine, kb, encoder=None).suggestions}
    assert texts == {"will it rain tomorrow", "kruise pods do not get new sidecar", "weather for kruise"}
    texts = {s.phrasings[0].text for s in listing(engine, kb, encoder=None, guess_floor=0.0).suggestions}
    assert "how do I reverse a linked list" in texts
    texts = {s.phrasings[0].text for s in listing(engine, kb, encoder=None, guess_floor=0.5).suggestions}
    assert texts == {"will it rain tomorrow", "weather for kruise"}


def test_similar_phrasings_are_grouped_and_a_click_outranks_guesses(records: tuple[Recorder, sa.Engine],
                                                                   tiny_data: Path) -> None:
    r, engine = records
    kb = KnowledgeBase.load(tiny_data)
    for text in ["How do I roll back a CloneSet?", "How do I roll back a CloneSet", "how do I roll back a cloneset??",
                 "how do i roll back the CloneSet", "weather in Berlin"]:
        ask(r, answer(text, alternatives=(CLONESET, CPU)))
    # the same wording refused twice (guess: sidecar) and once clicked to the stuck entry: it means stuck
    for click in (None, None, STUCK):
        ask(r, answer("my pod does not update", alternatives=(SIDECAR, STUCK)), click=click)
    flushed(r)

    grouped = listing(engine, kb, encoder=HashEncoder(), similarity=0.8)
    assert grouped.similarity == 0.8
    rollback = grouped.suggestions[0]
    assert (rollback.entry_id, rollback.count, rollback.guessed) == (CLONESET, 4, True)
    assert rollback.phrasings[0].text == "How do I roll back a CloneSet?"  # the most frequent wording first
    # "?" and "??" normalise alike (as qa lint compares): written once
    assert [p.text for p in rollback.phrasings] == ["How do I roll back a CloneSet?", "how do i roll back the CloneSet"]
    stuck = next(s for s in grouped.suggestions if s.entry_id == STUCK)
    assert (stuck.count, stuck.guessed, stuck.evidence.clicks, stuck.evidence.refused) == (3, False, 1, 3)
    assert not any(s.entry_id == SIDECAR for s in grouped.suggestions)
    alone = listing(engine, kb, encoder=None)  # without an encoder only identical questions are grouped
    assert alone.similarity is None and sum(s.entry_id == CLONESET for s in alone.suggestions) == 5


# --------------------------------------------------------------------------- accepting


def suggestion(entry_id: str, *texts: str, sid: str = "s000001") -> suggest.Suggestion:
    ev = suggest.Evidence(questions=len(texts), askers=1, clicks=1, helpful=0, unhelpful=0, refused=1,
                          low_confidence=0)
    return suggest.Suggestion(id=sid, entry_id=entry_id, entry_question="?", guessed=False, count=len(texts),
                              evidence=ev, phrasings=[suggest.Phrasing(text=t, count=1) for t in texts])


@pytest.fixture
def real_data(tmp_path: Path) -> Path:
    """A copy of the shipped FAQ and data files (never the shipped ones themselves)."""
    d = tmp_path / "real"
    shutil.copytree(REAL_DATA / "faq", d / "faq")
    for name in ("alternates.yaml", "translations.yaml", "out_of_scope.yaml", "glossary.tsv", "terms.txt",
                 "common_names.txt"):
        shutil.copy(REAL_DATA / name, d / name)
    return d


def test_accept_keeps_every_line_comment_and_quote_of_the_file(real_data: Path) -> None:
    path = real_data / "alternates.yaml"
    before = path.read_text(encoding="utf-8")
    kb = KnowledgeBase.load(real_data)
    first, middle = list(kb.alternates)[0], list(kb.alternates)[5]
    new = ["helm uninstall 卡在 kruise-finalizer 不动了", 'why does "helm uninstall" hang at the pre-delete hook?',
           "原地更新 能改 env 吗"]
    done = suggest.accept([(suggestion(first, new[0], new[1]), first), (suggestion(middle, new[2], sid="s2"), middle)],
                          real_data)
    assert done.written and [t for _, _, t in done.added] == new
    after = path.read_text(encoding="utf-8")
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert added == ['  - "helm uninstall 卡在 kruise-finalizer 不动了"',
                     '  - "why does \\"helm uninstall\\" hang at the pre-delete hook?"', '  - "原地更新 能改 env 吗"']
    # the file without the added lines is the file as it was, byte for byte
    assert "".join(x for x in after.splitlines(keepends=True) if x.rstrip("\n") not in added) == before
    # each lands at the end of its entry's list: before the blank line and the next entry's comment
    lines = after.splitlines()
    i = lines.index(added[1])
    assert lines[i + 1] == "" and lines[i + 2].startswith("# ") and lines[i - 2] == before.splitlines()[i - 2]
    reread = KnowledgeBase.load(real_data)
    assert reread.warnings == [] and reread.alternates[first][-2:] == new[:2] and reread.alternates[middle][-1] == new[2]
    assert {k: v for k, v in reread.alternates.items() if k not in (first, middle)} == \
        {k: v for k, v in kb.alternates.items() if k not in (first, middle)}
    assert reread.data_hash != kb.data_hash  # so the index is stale and the next build or reload takes them
    assert not list(real_data.glob(".alternates.yaml.*"))  # no temporary file left behind


def test_accept_adds_a_block_for_an_entry_without_alternates(tiny_data: Path) -> None:
    path = tiny_data / "alternates.yaml"
    before = path.read_text(encoding="utf-8")
    suggest.accept([(suggestion(STUCK, "pod hangs while updating"), STUCK)], tiny_data)
    after = path.read_text(encoding="utf-8")
    assert after == before + f'\n# {Q_STUCK}\n"{STUCK}":\n  - "pod hangs while updating"\n'
    assert KnowledgeBase.load(tiny_data).alternates[STUCK] == ["pod hangs while updating"]


def test_accept_skips_duplicates_and_refuses_collisions_writing_nothing(tiny_data: Path) -> None:
    path = tiny_data / "alternates.yaml"
    before, mtime = path.read_text(encoding="utf-8"), path.stat().st_mtime_ns
    dup = suggest.accept([(suggestion(SIDECAR, ALT_SIDECAR.rstrip("？") + " ?", Q_SIDECAR.upper()), SIDECAR)], tiny_data)
    assert not done_anything(dup) and [x[3] for x in dup.skipped] == ["already a phrasing of the entry"] * 2
    with pytest.raises(suggest.AlternatesError, match=f"collide.*entry {SIDECAR}"):
        suggest.accept([(suggestion(STUCK, "ok phrasing", "Add a sidecar to running pods"), STUCK)], tiny_data)
    with pytest.raises(suggest.AlternatesError, match="known gap «baking»"):
        suggest.accept([(suggestion(CPU, OOS_Q), CPU)], tiny_data)
    with pytest.raises(suggest.AlternatesError, match="collide"):  # two suggestions, one phrasing, two entries
        suggest.accept([(suggestion(CPU, "same words"), CPU), (suggestion(STUCK, "Same  words?"), STUCK)], tiny_data)
    with pytest.raises(suggest.UnknownSuggestion, match="no FAQ entry with id 'nope'"):
        suggest.accept([(suggestion(CPU, "x y z"), "nope")], tiny_data)
    assert path.read_text(encoding="utf-8") == before and path.stat().st_mtime_ns == mtime


def done_anything(done: suggest.Accepted) -> bool:
    return done.written or bool(done.added)


def test_accept_refuses_a_read_only_file_an_unwritable_folder_and_an_invalid_file(
        tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_data / "alternates.yaml"
    before = path.read_text(encoding="utf-8")
    chosen = [(suggestion(STUCK, "pod hangs"), STUCK)]
    path.chmod(0o444)
    with pytest.raises(suggest.AlternatesError, match="read-only"):
        suggest.accept(chosen, tiny_data)
    path.chmod(0o644)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr(suggest.tempfile, "mkstemp", denied)
        with pytest.raises(suggest.AlternatesError, match="cannot write in .*Permission denied"):
            suggest.accept(chosen, tiny_data)
    with monkeypatch.context() as m:
        m.setattr(suggest.os, "replace", denied)
        with pytest.raises(suggest.AlternatesError, match="cannot write .*Permission denied"):
            suggest.accept(chosen, tiny_data)
    assert path.read_text(encoding="utf-8") == before and not list(tiny_data.glob(".alternates.yaml.*"))
    path.write_text(before + '"deadbeef":\n  - "an unknown id"\n', encoding="utf-8")
    with pytest.raises(suggest.AlternatesError, match="fix them first.*unknown entry id 'deadbeef'"):
        suggest.accept(chosen, tiny_data)


def test_a_layout_that_cannot_be_kept_is_refused(tiny_data: Path) -> None:
    path = tiny_data / "alternates.yaml"
    path.write_text(f'"{SIDECAR}": ["one", "two"]  # flow style\n', encoding="utf-8")
    with pytest.raises(suggest.AlternatesError, match="without changing its line 1"):
        suggest.accept([(suggestion(SIDECAR, "three"), SIDECAR)], tiny_data)
    assert path.read_text(encoding="utf-8") == f'"{SIDECAR}": ["one", "two"]  # flow style\n'


# --------------------------------------------------------------------------- the command, end to end


@pytest.fixture
def qa(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
       capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Runs ``qa --data-dir … --index-dir … --model hash ARGS`` with QA_STATE_DIR=tmp_path/state."""
    for key in list(os.environ):
        if key.startswith("QA_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QA_STATE_DIR", str(tmp_path / "state"))
    base = ["--data-dir", str(tiny_data), "--index-dir", str(tmp_path / "index"), "--model", "hash"]

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main([*base, *args])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def one_line_error(err: str) -> bool:
    return err.startswith("qa: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_an_accepted_suggestion_changes_the_answer_after_a_rebuild(qa: Callable[..., tuple[int, str, str]],
                                                                   records: tuple[Recorder, sa.Engine],
                                                                   tiny_data: Path, tmp_path: Path) -> None:
    r, _ = records
    question = "pod hangs while updating"
    status, out, _ = qa("build")
    assert status == 0 and "(built in" in out
    engine = open_engine(tiny_data, tmp_path / "index")
    before = engine.ask(question)
    assert before.match is None and STUCK in [a.id for a in before.alternatives]  # refused; stuck is shown
    ask(r, before, click=STUCK)  # the asker clicks "stuck"
    ask(r, engine.ask("remove kruise"))  # refused, nobody clicked: a guess
    flushed(r)

    status, out, err = qa("suggest", "--since", "1h")
    assert status == 0 and err == ""
    assert "remove kruise" not in out  # the hash model's refusals have next to no confidence: off-topic
    status, out, err = qa("suggest", "--since", "1h", "--min-confidence", "0")
    assert status == 0 and err == ""
    assert f"→ {STUCK}  {Q_STUCK}" in out and f"+ {question}" in out and "1 clicked, 1 refused" in out
    assert "guess: no click or 👍 named this entry" in out  # the other one
    status, out, _ = qa("suggest", "--format", "json")
    body = json.loads(out)
    sid = next(s["id"] for s in body["suggestions"] if s["entry_id"] == STUCK)
    status, out, _ = qa("suggest", "--accept", sid, "--dry-run")
    assert status == 0 and out.startswith("would add 1 phrasing(s)") and question not in \
        (tiny_data / "alternates.yaml").read_text(encoding="utf-8")

    status, out, err = qa("suggest", "--accept", sid)
    assert status == 0, err
    assert f"added 1 phrasing(s) to {tiny_data / 'alternates.yaml'}:\n  {sid}  {STUCK}  + {question}\n" in out
    status, out, _ = qa("build")
    assert status == 0 and "(built in" in out  # the data changed: the index is rebuilt
    status, out, _ = qa("build")
    assert "already current" in out
    after = open_engine(tiny_data, tmp_path / "index").ask(question)
    assert after.match is not None and after.match.id == STUCK
    # it is an alternate now: no longer proposed, so accepting it again is an unknown id
    status, out, err = qa("suggest", "--accept", sid)
    assert status == 2 and "accepted ones are not listed again" in err
    status, out, _ = qa("suggest")
    assert f"+ {question}" not in out


def test_without_a_records_database_it_says_where_it_looked(qa: Callable[..., tuple[int, str, str]],
                                                            tmp_path: Path) -> None:
    status, _, err = qa("suggest")
    assert status == 1 and one_line_error(err)
    assert f"no records database at {tmp_path / 'state' / db.SQLITE_FILE}" in err
    assert not (tmp_path / "state").exists()  # and made none


def test_the_command_s_errors_are_one_line_with_a_status(qa: Callable[..., tuple[int, str, str]],
                                                         records: tuple[Recorder, sa.Engine], tiny_data: Path) -> None:
    r, _ = records
    ask(r, answer("pod hangs while updating", alternatives=(STUCK,)), click=STUCK)
    flushed(r)
    status, _, err = qa("suggest", "--accept", "s123456")
    assert status == 2 and one_line_error(err) and "no suggestion with id 's123456'" in err
    status, _, err = qa("suggest", "--since", "yesterday")
    assert status == 2 and one_line_error(err)
    status, _, err = qa("suggest", "--min-count", "0")
    assert status == 2 and one_line_error(err)
    status, out, _ = qa("suggest", "--format", "json")
    sid = json.loads(out)["suggestions"][0]["id"]
    (tiny_data / "alternates.yaml").chmod(0o444)
    status, _, err = qa("suggest", "--accept", sid)
    assert status == 1 and one_line_error(err) and "read-only" in err
    status, _, err = qa("suggest", "--accept", f"{sid}=nope")
    assert status == 2 and one_line_error(err) and "no FAQ entry with id 'nope'" in err


def test_accept_all_and_review(qa: Callable[..., tuple[int, str, str]], records: tuple[Recorder, sa.Engine],
                               tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r, _ = records
    ask(r, answer("pod hangs while updating", alternatives=(STUCK,)), click=STUCK)
    ask(r, answer("remove kruise", alternatives=(UNINSTALL,)), click=UNINSTALL)
    ask(r, answer("kruise 资源 怎么改", alternatives=(CPU,)))  # a guess
    flushed(r)
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\ny\n"))
    status, out, _ = qa("suggest", "--review")
    assert status == 0 and "accept? [y/N/q]" in out and "added 1 phrasing(s)" in out
    kb = KnowledgeBase.load(tiny_data)
    assert ("pod hangs while updating" in kb.alternates.get(STUCK, [])) + ("remove kruise" in kb.alternates[UNINSTALL]) == 1
    status, out, _ = qa("suggest", "--confirmed", "--accept-all")
    assert status == 0 and "added 1 phrasing(s)" in out  # the other confirmed one; the guess is not listed
    kb = KnowledgeBase.load(tiny_data)
    assert "pod hangs while updating" in kb.alternates[STUCK] and "remove kruise" in kb.alternates[UNINSTALL]
    assert "kruise 资源 怎么改" not in kb.alternates.get(CPU, [])
    # a guess filed under another entry than the engine's (ID=ENTRY)
    status, out, _ = qa("suggest", "--format", "json")
    (guess,) = json.loads(out)["suggestions"]
    assert (guess["entry_id"], guess["guessed"]) == (CPU, True)
    status, out, _ = qa("suggest", "--accept", f"{guess['id']}={CLONESET}")
    assert status == 0 and f"{guess['id']}  {CLONESET}  + kruise 资源 怎么改" in out
    assert KnowledgeBase.load(tiny_data).alternates[CLONESET] == ["kruise 资源 怎么改"]
