"""``qa suggest``: the real phrasings worth adding to ``data/alternates.yaml``, read from the records.

Which questions count, and the entry each one is proposed for:

- an alternative **clicked** after the question names the entry directly (the strongest signal of
  what the asker meant; the last click counts when there were several);
- a 👍 on an answer given with low confidence (under ``low_confidence``) confirms its entry;
- a 👎 on an answer: the engine's next candidate (the first alternative shown) — a guess;
- a **refusal**: the engine's best candidate (the first of the nearest questions shown) — a guess;
- an answer given with **low confidence**: the entry it was given — a guess.

A suggestion whose entry no click or 👍 named is marked ``guessed``: the maintainer judges it. A
question with a 👍 and no click is left alone otherwise (the answer, or the refusal, served), and so
is a confident answer without feedback. The questions asked by clicking an alternative (the
entry's own question, sent with ``after``) are not phrasings of the asker's and are skipped.

The same question asked several times is one phrasing; its entry is the one with the most
confirmed votes (clicks, 👍), then the most guesses. Phrasings are grouped by meaning with
:func:`qa.report.group_by_meaning` (the grouping of ``qa report``'s unanswered questions), and a
suggestion is one group's phrasings for one entry, ranked by how often they were asked. A phrasing
that is already a question, alternate or translated question of its entry is not proposed, nor one
that is another entry's or a known gap's (compared as ``qa lint`` compares them).

:func:`accept` writes suggestions into the alternates file with a YAML round-trip (ruamel.yaml):
only lines are added, every other line of the file stays as it was (checked before writing), the
result is validated with the data files' own models, and the file is replaced atomically.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, Field

from qa.errors import QAError
from qa.knowledge import _ALTERNATES, ALTERNATES, KnowledgeBase, _items
from qa.lint import normalise_phrase
from qa.records.recorder import utcnow
from qa.records.schema import clicks, feedback, questions
from qa.report import DEFAULT_SIMILARITY, Grouping, group_by_meaning

if TYPE_CHECKING:
    from qa.encoders import Encoder

LOW_CONFIDENCE = 0.7  # an answer under this confidence (the threshold is 0.5) had a thin margin
# A refused question under this confidence is taken as off-topic for the FAQ (travel, films, Python,
# features it does not cover: 0.00-0.03 in the records of this project's own runs; near misses
# 0.1-0.5); its nearest entry is no suggestion unless a click or a 👍 names it.
GUESS_FLOOR = 0.1
MAX_PHRASINGS = 5  # phrasings a suggestion proposes (its most frequent); the rest are counted
MAX_PHRASING_CHARS = 600  # longer (pasted logs) are not proposed: too long for an alternate


class UnknownSuggestion(QAError, ValueError):
    """A suggestion id that the current listing does not hold, or an ``ID=ENTRY`` naming no entry (bad
    input: ``qa`` exits 2)."""


class AlternatesError(QAError):
    """The alternates file cannot be changed (unreadable, invalid, unwritable, or a collision)."""


# --------------------------------------------------------------------------- the shape


class Evidence(BaseModel):
    """Why a suggestion is made: counts over the questions behind it."""

    questions: int = Field(..., description="questions asked (the suggestion's rank)")
    askers: int = Field(..., description="distinct pseudonymous askers among them (0 when none was known)")
    clicks: int = Field(..., description="alternatives naming the entry clicked after these questions")
    helpful: int = Field(..., description="👍 on a low-confidence answer with the entry")
    unhelpful: int = Field(..., description="👎 on the answers")
    refused: int = Field(..., description="questions the bot refused")
    low_confidence: int = Field(..., description="questions answered with a confidence under the low mark")


class Phrasing(BaseModel):
    """A wording to add, with the times it was asked."""

    text: str
    count: int


class LeftOut(BaseModel):
    """A phrasing not proposed, and why."""

    text: str
    entry_id: str
    reason: str


class Suggestion(BaseModel):
    """Phrasings to add to one entry's alternates."""

    id: str = Field(..., description="what `qa suggest --accept` takes")
    entry_id: str
    entry_question: str
    guessed: bool = Field(..., description="no click or 👍 named the entry: it is the engine's best candidate "
                                           "for these questions, which the maintainer must judge")
    count: int = Field(..., description="questions asked (evidence.questions)")
    evidence: Evidence
    phrasings: list[Phrasing] = Field(..., description="what --accept writes, most frequent first")
    more: int = Field(0, description="further distinct wordings of the group, not proposed")


class Suggestions(BaseModel):
    """``qa suggest``'s listing."""

    since: datetime
    until: datetime
    similarity: float | None = Field(..., description="the grouping's cosine threshold (null: identical "
                                                      "questions only)")
    low_confidence: float
    suggestions: list[Suggestion]
    left_out: list[LeftOut] = Field(..., description="phrasings not proposed: already the entry's, or "
                                                     "another entry's or a known gap's")

    def filtered(self, *, min_count: int = 1, confirmed: bool = False, top: int | None = None) -> Suggestions:
        """The listing with at least ``min_count`` questions a suggestion (only those a click or 👍
        confirmed with ``confirmed``), the ``top`` first."""
        kept = [s for s in self.suggestions if s.count >= min_count and not (confirmed and s.guessed)]
        return self.model_copy(update={"suggestions": kept[:top] if top is not None else kept})


# --------------------------------------------------------------------------- from the records


@dataclass
class _Row:
    answer_id: str
    text: str
    asker: str | None
    refused: bool
    low: bool
    helpful: bool | None
    clicks: int
    target: str
    confirmed: bool
    order: int  # position in time


def _rows(engine: sa.Engine, kb: KnowledgeBase, since: datetime, until: datetime, low: float,
          floor: float = GUESS_FLOOR) -> list[_Row]:
    """The questions of the window that say something about an entry, each with its proposed entry."""
    q = questions
    in_window = sa.and_(q.c.asked_at >= since, q.c.asked_at < until)
    clicked = sa.select(clicks.c.answer_id)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(q.c.answer_id, q.c.question, q.c.entry_id, q.c.confidence, q.c.alternatives, q.c.asker,
                      feedback.c.helpful)
            .select_from(q.outerjoin(feedback, feedback.c.answer_id == q.c.answer_id))
            .where(in_window, sa.or_(q.c.entry_id.is_(None), q.c.confidence < low,
                                     feedback.c.answer_id.is_not(None), q.c.answer_id.in_(clicked)))
            .order_by(q.c.asked_at, q.c.answer_id)).all()
        click_rows = conn.execute(
            sa.select(clicks.c.answer_id, clicks.c.entry_id, clicks.c.next_answer_id)
            .select_from(clicks.join(q, q.c.answer_id == clicks.c.answer_id)).where(in_window)
            .order_by(clicks.c.clicked_at, clicks.c.id)).all()
    clicked_by: dict[str, list[str]] = {}
    follow_ups = set()
    for answer_id, entry_id, next_answer_id in click_rows:
        clicked_by.setdefault(answer_id, []).append(entry_id)
        if next_answer_id:
            follow_ups.add(next_answer_id)
    out: list[_Row] = []
    for answer_id, text, entry_id, conf, alternatives, asker, helpful in rows:
        if answer_id in follow_ups:
            continue  # the entry's own question, asked by clicking it
        names = [e for e in clicked_by.get(answer_id, []) if e in kb.by_id]
        shown = _ids(alternatives)
        refused, is_low = entry_id is None, entry_id is not None and conf < low
        target: str | None
        if names:
            target, confirmed = names[-1], True
        elif helpful is True:
            target, confirmed = (entry_id, True) if is_low else (None, False)
        elif refused and helpful is not False and (conf or 0.0) < floor:
            continue  # off-topic: its nearest entry is not a guess worth a maintainer's time
        elif helpful is False or refused:
            target, confirmed = (shown[0] if shown else None), False
        else:
            target, confirmed = (entry_id if is_low else None), False
        if target is None or target not in kb.by_id or not str(text).strip():
            continue
        out.append(_Row(answer_id, str(text), asker, refused, is_low, helpful, len(clicked_by.get(answer_id, [])),
                        target, confirmed, len(out)))
    return out


def _ids(raw: object) -> list[str]:
    try:
        value = json.loads(str(raw))
    except ValueError:
        return []
    return [str(x) for x in value] if isinstance(value, list) else []


def phrasebook(kb: KnowledgeBase) -> dict[str, set[str]]:
    """Normalised phrasing (as ``qa lint`` compares them) → its owners: entry ids (question, alternates,
    translated question) and ``gap:TOPIC`` for known-gap examples."""
    book: dict[str, set[str]] = {}

    def note(text: str, owner: str) -> None:
        if key := normalise_phrase(text):
            book.setdefault(key, set()).add(owner)

    for e in kb.entries:
        note(e.question, e.id)
        for a in kb.alternates.get(e.id, []):
            note(a, e.id)
        if (t := kb.translations.get(e.id)) is not None:
            note(t.question, e.id)
    for topic, examples in kb.known_gaps.items():
        for x in examples:
            note(x, f"gap:{topic}")
    return book


def _owner(owner: str) -> str:
    return f"known gap «{owner[4:]}»" if owner.startswith("gap:") else f"entry {owner}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_suggestions(engine: sa.Engine, kb: KnowledgeBase, *, since: datetime, until: datetime | None = None,
                      encoder: Encoder | Callable[[], Encoder] | None = None,
                      similarity: float = DEFAULT_SIMILARITY, low_confidence: float = LOW_CONFIDENCE,
                      guess_floor: float = GUESS_FLOOR, max_phrasings: int = MAX_PHRASINGS) -> Suggestions:
    """Every suggestion the records of ``[since, until)`` support, ranked (see the module's docstring).

    Args:
        engine: the records database (migrated).
        kb: the FAQ and data files the suggestions are checked against.
        since, until: the window, UTC without a zone (``until`` default: now).
        encoder: groups phrasings by meaning (or a function that loads one, called only when there
            are at least two distinct phrasings); None: identical ones only.
        similarity: cosine threshold of the grouping.
        low_confidence: answers under this confidence count as low-margin.
        guess_floor: refused questions under this confidence are left out unless a click or a 👍 names
            their entry (off-topic questions have no entry to guess).
        max_phrasings: phrasings a suggestion proposes at most.
    """
    until = until or utcnow()
    rows = _rows(engine, kb, since, until, low_confidence, guess_floor)
    grouping: Grouping = group_by_meaning([r.text for r in rows], encoder, similarity) if rows else \
        Grouping([], [], Counter(), {}, None)
    label_of = dict(zip(grouping.keys, grouping.labels))

    # one entry per phrasing: the most confirmed votes, then the most guesses, then the first seen
    by_key: dict[str, list[_Row]] = {}
    for r in rows:
        if (k := grouping.key(r.text)) in label_of:  # (not: beyond the phrasings grouped, report.MAX_CLUSTERED)
            by_key.setdefault(k, []).append(r)
    target_of: dict[str, str] = {}
    for k, rs in by_key.items():
        tally: dict[str, list[int]] = {}
        for r in rs:
            t = tally.setdefault(r.target, [0, 0, -r.order])
            t[0 if r.confirmed else 1] += 1
        target_of[k] = max(tally.items(), key=lambda kv: tuple(kv[1]))[0]

    parts: dict[tuple[int, str], list[str]] = {}
    for k in grouping.keys:
        if k in by_key:
            parts.setdefault((label_of[k], target_of[k]), []).append(k)

    book = phrasebook(kb)
    suggestions: list[Suggestion] = []
    left_out: list[LeftOut] = []
    for (_, entry_id), keys in parts.items():
        rs = [r for k in keys for r in by_key[k]]
        first = min(rs, key=lambda r: r.order)
        phrasings: list[Phrasing] = []
        seen: set[str] = set()
        extra = 0
        for k in sorted(keys, key=lambda k: (-len(by_key[k]), by_key[k][0].order)):
            text = _one_line(grouping.representative(k))
            norm = normalise_phrase(text)
            owners = book.get(norm, set())
            if not norm or norm in seen:
                continue
            if len(text) > MAX_PHRASING_CHARS:
                left_out.append(LeftOut(text=text, entry_id=entry_id, reason=f"longer than {MAX_PHRASING_CHARS} "
                                        "characters (a pasted log): add its telling line by hand"))
            elif entry_id in owners:
                left_out.append(LeftOut(text=text, entry_id=entry_id, reason="already a phrasing of the entry"))
            elif owners:
                left_out.append(LeftOut(text=text, entry_id=entry_id, reason="would collide with the " + ", ".join(
                    f"{_owner(o)}" for o in sorted(owners))))
            elif len(phrasings) < max_phrasings:
                phrasings.append(Phrasing(text=text, count=len(by_key[k])))
            else:
                extra += 1
            seen.add(norm)
        if not phrasings:
            continue
        confirmed = sum(r.confirmed and r.target == entry_id for r in rs)
        evidence = Evidence(questions=len(rs), askers=len({r.asker for r in rs if r.asker}),
                            clicks=sum(r.clicks for r in rs if r.confirmed and r.target == entry_id),
                            helpful=sum(r.helpful is True for r in rs), unhelpful=sum(r.helpful is False for r in rs),
                            refused=sum(r.refused for r in rs), low_confidence=sum(r.low for r in rs))
        digest = hashlib.sha256(f"{entry_id}\0{grouping.key(first.text)}".encode()).hexdigest()
        suggestions.append(Suggestion(id="s" + digest[:6], entry_id=entry_id,
                                      entry_question=kb.by_id[entry_id].question, guessed=confirmed == 0,
                                      count=len(rs), evidence=evidence, phrasings=phrasings, more=extra))
    suggestions.sort(key=lambda s: (-s.count, s.guessed, -(s.evidence.clicks + s.evidence.helpful), s.id))
    _unique_ids(suggestions)
    return Suggestions(since=since, until=until, similarity=grouping.similarity, low_confidence=low_confidence,
                       suggestions=suggestions, left_out=left_out)


def _unique_ids(suggestions: list[Suggestion]) -> None:
    """Two suggestions with one id (a 24-bit clash) get a suffix, in rank order."""
    seen: Counter[str] = Counter()
    for s in suggestions:
        seen[s.id] += 1
        if seen[s.id] > 1:
            s.id = f"{s.id}-{seen[s.id]}"


def select(listing: Suggestions, ids: Iterable[str]) -> list[tuple[Suggestion, str]]:
    """The suggestions named ``ID`` or ``ID=ENTRY`` (to file a guessed one under another entry), with
    the entry each goes to.

    Raises:
        UnknownSuggestion: an id the listing does not hold.
    """
    by_id = {s.id: s for s in listing.suggestions}
    out = []
    for raw in ids:
        sid, _, entry = raw.strip().partition("=")
        s = by_id.get(sid.strip())
        if s is None:
            raise UnknownSuggestion(f"no suggestion with id {sid.strip()!r} in the records since "
                                    f"{listing.since:%Y-%m-%d %H:%M} UTC; 'qa suggest' (with the same --since) "
                                    "lists the current ids (accepted ones are not listed again)")
        out.append((s, entry.strip() or s.entry_id))
    return out


# --------------------------------------------------------------------------- writing them


@dataclass
class Accepted:
    """What :func:`accept` did."""

    path: Path
    added: list[tuple[str, str, str]] = field(default_factory=list)  # (suggestion id, entry id, phrasing)
    skipped: list[tuple[str, str, str, str]] = field(default_factory=list)  # (… , reason)
    written: bool = False

    def to_json(self) -> str:
        return json.dumps({"file": str(self.path), "written": self.written,
                           "added": [{"suggestion": s, "entry_id": e, "text": t} for s, e, t in self.added],
                           "skipped": [{"suggestion": s, "entry_id": e, "text": t, "reason": r}
                                       for s, e, t, r in self.skipped]}, ensure_ascii=False, indent=2)


def accept(chosen: Sequence[tuple[Suggestion, str]], data_dir: Path, faq_dir: Path | None = None, *,
           dry_run: bool = False) -> Accepted:
    """Adds the chosen suggestions' phrasings to ``data_dir/alternates.yaml``.

    A phrasing that is already one of its entry's is skipped; one that is another entry's or a known
    gap's refuses the whole change (nothing is written). The new file keeps every line of the old one
    (comments, order, quoting, blank lines), in place; it is validated with the data files' models
    before it atomically replaces the old one.

    Raises:
        AlternatesError: the file is invalid, unwritable, changed meanwhile, or a phrasing collides.
        UnknownSuggestion: an ``ID=ENTRY`` names no entry.
    """
    path = Path(data_dir) / ALTERNATES
    kb = KnowledgeBase.load(data_dir, faq_dir)
    problems = [w for w in kb.warnings if Path(w.source).name == ALTERNATES]
    if problems:
        raise AlternatesError(f"{path} has problems; fix them first ({'; '.join(map(str, problems[:3]))})")
    book = phrasebook(kb)
    result = Accepted(path)
    additions: dict[str, list[str]] = {}
    collisions = []
    for s, entry_id in chosen:
        if entry_id not in kb.by_id:
            raise UnknownSuggestion(f"no FAQ entry with id {entry_id!r} (for suggestion {s.id}); 'qa list' shows "
                                    "the ids")
        for p in s.phrasings:
            key = normalise_phrase(p.text)
            owners = book.get(key, set())
            if entry_id in owners:
                result.skipped.append((s.id, entry_id, p.text, "already a phrasing of the entry"))
            elif owners:
                collisions.append(f"{p.text!r} ({s.id}) is already the {', '.join(map(_owner, sorted(owners)))}'s")
            else:
                additions.setdefault(entry_id, []).append(p.text)
                result.added.append((s.id, entry_id, p.text))
                book[key] = {entry_id}
    if collisions:
        raise AlternatesError(f"nothing written: {len(collisions)} phrasing(s) would collide with another owner, "
                              f"which the bot could then not tell apart: {'; '.join(collisions[:3])}")
    if not additions or dry_run:
        return result
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise AlternatesError(f"cannot read {path}: {exc.__class__.__name__}: {exc}") from None
    new = add_to_text(old, additions, {e: kb.by_id[e].question for e in additions})
    expected = {k: list(v) for k, v in kb.alternates.items()}
    for e, texts in additions.items():
        expected.setdefault(e, []).extend(texts)
    _write(path, old, new, expected, set(kb.by_id))
    result.written = True
    return result


def add_to_text(old: str, additions: Mapping[str, Sequence[str]], titles: Mapping[str, str]) -> str:
    """The alternates file's text with ``additions`` (entry id → phrasings) appended to each entry's
    list; an entry not in the file gets a new block at the end, under a comment with its question.

    Raises:
        AlternatesError: the file does not parse, or its layout cannot be kept line for line.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString as Quoted
    from ruamel.yaml.util import load_yaml_guess_indent

    yaml = YAML()  # round-trip: comments, key order and quoting are kept
    yaml.preserve_quotes = True
    yaml.width = 1 << 30  # never fold a long phrasing
    try:
        _, indent, dash = load_yaml_guess_indent(old) if old.strip() else (None, 4, 2)  # the file's list layout
        yaml.indent(mapping=2, sequence=indent or 4, offset=dash if dash is not None else 2)
        data = yaml.load(old) if old.strip() else None
    except YAMLError as exc:
        raise AlternatesError(f"cannot parse the alternates file: {exc.__class__.__name__}") from None
    if data is not None and not isinstance(data, CommentedMap):
        raise AlternatesError("the alternates file is not a mapping of entry id → list of phrasings")
    new_blocks = {}
    text = old
    if data is not None:
        existing = {str(k): k for k in data}
        for entry_id, texts in additions.items():
            key = existing.get(entry_id)
            if key is None:
                new_blocks[entry_id] = texts
                continue
            seq = data[key]
            if seq is None:
                data[key] = seq = CommentedSeq()
            if not isinstance(seq, CommentedSeq):
                raise AlternatesError(f"the alternates of {entry_id} are not a list")
            last = len(seq) - 1
            seq.extend(Quoted(t) for t in texts)
            # a comment after the old last item (the next entry's heading) must stay after the list
            if last >= 0 and (comment := seq.ca.items.pop(last, None)) is not None:
                seq.ca.items[len(seq) - 1] = comment
        if any(e not in new_blocks for e in additions):
            buf = io.StringIO()
            yaml.dump(data, buf)
            text = buf.getvalue()
    else:
        new_blocks = dict(additions)
    for entry_id, texts in new_blocks.items():
        block = CommentedMap()
        block[Quoted(entry_id)] = CommentedSeq(Quoted(t) for t in texts)
        buf = io.StringIO()
        yaml.dump(block, buf)
        if text and not text.endswith("\n"):
            text += "\n"
        text += ("\n" if text.strip() else "") + f"# {_one_line(titles.get(entry_id, entry_id))}\n" + buf.getvalue()
    _check_only_added(old, text)
    return text


def _check_only_added(old: str, new: str) -> None:
    """Every line of ``old`` is in ``new``, unchanged and in order; ``new`` only adds lines."""
    a, b = old.splitlines(), new.splitlines()
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    if any(tag not in ("equal", "insert") for tag, *_ in ops):
        changed = next(i1 for tag, i1, *_ in ops if tag not in ("equal", "insert"))
        raise AlternatesError(f"cannot add to the alternates file without changing its line {changed + 1} (an "
                              "unusual layout, e.g. a flow-style list); add the phrasings by hand")


def _write(path: Path, old: str, new: str, expected: dict[str, list[str]], ids: set[str]) -> None:
    """Validates ``new`` as the data files are validated, then replaces ``path`` atomically."""
    if path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222):
        raise AlternatesError(f"cannot write {path}: the file is read-only")  # (root too: its mode says so)
    fd, tmp_name = None, None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise AlternatesError(f"cannot write in {path.parent}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        warnings: list[Any] = []
        loaded = {k: [x.strip() for x in v if x.strip()] for k, v in _items(tmp, _ALTERNATES, warnings, ids)}
        if warnings:
            raise AlternatesError(f"the new alternates file would not validate ({warnings[0]}); nothing written")
        if {k: v for k, v in loaded.items() if v} != {k: v for k, v in expected.items() if v}:
            raise AlternatesError("the new alternates file does not read back as expected; nothing written")
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
            if path.read_text(encoding="utf-8") != old:
                raise AlternatesError(f"{path} changed while the suggestions were being added; run again")
        os.replace(tmp, path)
    except OSError as exc:
        raise AlternatesError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


# --------------------------------------------------------------------------- rendering


def _clip(text: str, n: int = 100) -> str:
    text = _one_line(text)
    return text if len(text) <= n else text[:n - 1] + "…"


def evidence_line(e: Evidence) -> str:
    """``5 questions from 3 askers: 2 clicks, 1 👎, 2 refused``."""
    said = [f"{n} {what}" for n, what in ((e.clicks, "clicked" if e.clicks == 1 else "clicks"),
                                          (e.helpful, "👍"), (e.unhelpful, "👎"), (e.refused, "refused"),
                                          (e.low_confidence, "low confidence")) if n]
    who = f" from {e.askers} asker{'s' if e.askers != 1 else ''}" if e.askers else ""
    return f"{e.questions} question{'s' if e.questions != 1 else ''}{who}: {', '.join(said)}"


def describe(s: Suggestion) -> list[str]:
    """One suggestion for a terminal: its id and entry, the evidence, the phrasings it adds."""
    out = [f"{s.id}  → {s.entry_id}  {_clip(s.entry_question, 70)}", f"    {evidence_line(s.evidence)}"]
    if s.guessed:
        out.append("    guess: no click or 👍 named this entry; it is the engine's best candidate — judge it")
    out += [f"    + {_clip(p.text)}" + (f"  (×{p.count})" if p.count > 1 else "") for p in s.phrasings]
    if s.more:
        out.append(f"    (and {s.more} more wording{'s' if s.more != 1 else ''} of the same meaning)")
    return out


def to_table(listing: Suggestions, *, min_count: int = 1, confirmed: bool = False) -> str:
    """The listing for a terminal."""
    how = (f"grouped by meaning, cosine ≥ {listing.similarity}" if listing.similarity is not None
           else "identical questions grouped")
    out = [f"Suggested alternates from the questions of {listing.since:%Y-%m-%d %H:%M} to "
           f"{listing.until:%Y-%m-%d %H:%M} UTC ({how}; at least {min_count} question{'s' if min_count != 1 else ''}"
           f"{'; confirmed by a click or 👍 only' if confirmed else ''})", ""]
    for s in listing.suggestions:
        out += [*describe(s), ""]
    if not listing.suggestions:
        out += ["  none", ""]
    if listing.left_out:
        out.append(f"{len(listing.left_out)} phrasing(s) not proposed (already the entry's, another's, or too long): "
                   "--format json lists them")
    out.append("Accept with: qa suggest --accept ID [ID…]   (ID=ENTRY files a suggestion under another entry)")
    return "\n".join(out)


def to_json(listing: Suggestions) -> str:
    return listing.model_dump_json(indent=2)
