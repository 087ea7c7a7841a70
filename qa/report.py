"""The maintainer's report over the records: one function builds it (:func:`build_report`);
``qa report`` prints it as a table, JSON or CSV, and ``GET /admin/report`` sends the same JSON.

Unanswered questions are grouped by meaning: identical questions (after whitespace and case) are
merged, the rest are encoded as queries and clustered by cosine (agglomerative, average linkage;
two groups merge while their average similarity is at least ``similarity``). The default, 0.92, was
chosen for multilingual-e5-small on data/eval: at 0.92, 51 of its 52 questions on different
uncovered topics stay apart, and 3 of 4 pairs it puts together are paraphrases of one FAQ entry.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pydantic import BaseModel, Field

from qa.records.recorder import utcnow
from qa.records.schema import clicks, feedback, questions

if TYPE_CHECKING:
    from qa.encoders import Encoder

DEFAULT_SINCE = "7d"
DEFAULT_SIMILARITY = 0.92
MAX_CLUSTERED = 2000  # distinct unanswered questions encoded at most (the most frequent): about 20 s with e5

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w``, or a date/time (``2025-06-01``, ISO 8601, read as UTC) → the
    window's start (UTC, no zone).

    Raises:
        ValueError: anything else.
    """
    now = now or utcnow()
    m = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text.lower())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since: expected e.g. 7d, 12h, 30m, 2w or a date like 2025-06-01, got {text!r}") from None
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo is not None else when


# --------------------------------------------------------------------------- the report's shape


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class Totals(BaseModel):
    """Everything in the window. Rates are fractions (0..1); null when there is nothing to divide by."""

    questions: int
    answered: int
    refused: int
    answered_rate: float | None
    refused_rate: float | None
    askers: int = Field(..., description="distinct pseudonymous askers")
    rated: int = Field(..., description="answers with feedback")
    helpful: int
    unhelpful: int
    helpful_rate: float | None = Field(..., description="👍 among the rated answers")
    unhelpful_rate: float | None = Field(..., description="👎 among the rated answers")
    clicks: int = Field(..., description="alternatives clicked")


class Volume(BaseModel):
    """Questions by surface or language."""

    name: str
    questions: int
    answered: int
    refused: int
    answered_rate: float | None
    helpful: int
    unhelpful: int


class EntryStats(BaseModel):
    """One FAQ entry: how often it was the answer, and what people said."""

    entry_id: str
    question: str | None = Field(..., description="the entry's question (null if it is no longer in the FAQ)")
    asked: int
    helpful: int
    unhelpful: int
    alternative_clicks: int = Field(..., description="times an alternative was clicked under this answer")


class UnansweredGroup(BaseModel):
    """Refused questions that mean the same thing."""

    count: int
    examples: list[str] = Field(..., description="the group's most frequent wordings, most frequent first")


class UnhelpfulAnswer(BaseModel):
    """An answer marked 👎."""

    answer_id: str
    asked_at: datetime
    surface: str
    question: str
    entry_id: str | None
    entry_question: str | None
    comment: str | None


class Report(BaseModel):
    """The maintainer's report over one window of time (UTC)."""

    since: datetime
    until: datetime
    similarity: float | None = Field(..., description="the grouping's cosine threshold (null: no encoder, only "
                                                      "identical questions grouped)")
    totals: Totals
    by_surface: list[Volume]
    by_language: list[Volume]
    entries: list[EntryStats]
    unanswered: list[UnansweredGroup]
    unhelpful: list[UnhelpfulAnswer]


# --------------------------------------------------------------------------- building it


def build_report(engine: sa.Engine, *, since: datetime, until: datetime | None = None,
                 encoder: Encoder | Callable[[], Encoder] | None = None, titles: Mapping[str, str] | None = None,
                 similarity: float = DEFAULT_SIMILARITY, top: int = 20, examples: int = 3,
                 unhelpful_limit: int = 50) -> Report:
    """The report over questions asked in ``[since, until)`` (feedback and clicks on those questions).

    Args:
        engine: the records database (migrated).
        since, until: the window, UTC without a zone (``until`` default: now).
        encoder: groups unanswered questions by meaning (or a function that loads one, called only
            when there are at least two distinct unanswered questions); None: identical ones only.
        titles: entry id → its question, to show the entries by name.
        similarity: cosine threshold of the grouping.
        top: unanswered groups listed at most.
        examples: wordings shown a group.
        unhelpful_limit: unhelpful answers listed at most (newest first).
    """
    until = until or utcnow()
    titles = titles or {}
    q = questions
    in_window = sa.and_(q.c.asked_at >= since, q.c.asked_at < until)
    answered = sa.func.sum(sa.case((q.c.entry_id.is_not(None), 1), else_=0))
    helpful = sa.func.sum(sa.case((feedback.c.helpful.is_(True), 1), else_=0))
    unhelpful = sa.func.sum(sa.case((feedback.c.helpful.is_(False), 1), else_=0))
    joined = q.outerjoin(feedback, feedback.c.answer_id == q.c.answer_id)

    with engine.connect() as conn:
        row = conn.execute(sa.select(sa.func.count(), answered, sa.func.count(sa.distinct(q.c.asker)),
                                     sa.func.count(feedback.c.answer_id), helpful, unhelpful)
                           .select_from(joined).where(in_window)).one()
        n, n_answered, askers, rated, n_helpful, n_unhelpful = (int(v or 0) for v in row)
        n_clicks = int(conn.execute(sa.select(sa.func.count()).select_from(
            clicks.join(q, q.c.answer_id == clicks.c.answer_id)).where(in_window)).scalar() or 0)

        def volume(column: sa.ColumnElement[str]) -> list[Volume]:
            rows = conn.execute(sa.select(column, sa.func.count(), answered, helpful, unhelpful)
                                .select_from(joined).where(in_window).group_by(column)).all()
            out = [Volume(name=str(name), questions=int(c), answered=int(a or 0), refused=int(c) - int(a or 0),
                          answered_rate=_rate(int(a or 0), int(c)), helpful=int(h or 0), unhelpful=int(u or 0))
                   for name, c, a, h, u in rows]
            return sorted(out, key=lambda v: (-v.questions, v.name))

        by_surface, by_language = volume(q.c.surface), volume(q.c.language)

        click_counts: dict[str, int] = dict(conn.execute(
            sa.select(q.c.entry_id, sa.func.count()).select_from(clicks.join(q, q.c.answer_id == clicks.c.answer_id))
            .where(in_window, q.c.entry_id.is_not(None)).group_by(q.c.entry_id)).all())
        entries = [EntryStats(entry_id=str(e), question=titles.get(str(e)), asked=int(c), helpful=int(h or 0),
                              unhelpful=int(u or 0), alternative_clicks=int(click_counts.get(e, 0)))
                   for e, c, h, u in conn.execute(
                       sa.select(q.c.entry_id, sa.func.count(), helpful, unhelpful).select_from(joined)
                       .where(in_window, q.c.entry_id.is_not(None)).group_by(q.c.entry_id)).all()]
        entries.sort(key=lambda e: (-e.asked, e.entry_id))

        refused_texts = [str(t) for t in conn.execute(
            sa.select(q.c.question).where(in_window, q.c.entry_id.is_(None))
            .order_by(q.c.asked_at, q.c.answer_id)).scalars().all()]

        unhelpful_rows = conn.execute(
            sa.select(q.c.answer_id, q.c.asked_at, q.c.surface, q.c.question, q.c.entry_id, feedback.c.comment)
            .select_from(q.join(feedback, feedback.c.answer_id == q.c.answer_id))
            .where(in_window, feedback.c.helpful.is_(False))
            .order_by(q.c.asked_at.desc(), q.c.answer_id).limit(unhelpful_limit)).all()

    groups, used = group_questions(refused_texts, encoder, similarity, top, examples)
    return Report(
        since=since, until=until, similarity=used,
        totals=Totals(questions=n, answered=n_answered, refused=n - n_answered, answered_rate=_rate(n_answered, n),
                      refused_rate=_rate(n - n_answered, n), askers=askers, rated=rated, helpful=n_helpful,
                      unhelpful=n_unhelpful, helpful_rate=_rate(n_helpful, rated),
                      unhelpful_rate=_rate(n_unhelpful, rated), clicks=n_clicks),
        by_surface=by_surface, by_language=by_language, entries=entries, unanswered=groups,
        unhelpful=[UnhelpfulAnswer(answer_id=a, asked_at=t, surface=s, question=text, entry_id=e,
                                   entry_question=titles.get(e) if e else None, comment=c)
                   for a, t, s, text, e, c in unhelpful_rows])


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def group_questions(texts: list[str], encoder: Encoder | Callable[[], Encoder] | None,
                    similarity: float = DEFAULT_SIMILARITY, top: int = 20, examples: int = 3
                    ) -> tuple[list[UnansweredGroup], float | None]:
    """Groups questions by meaning; returns the ``top`` groups (largest first) and the threshold used
    (None when there was no encoder, or nothing to compare)."""
    if not texts:
        return [], None
    g = group_by_meaning(texts, encoder, similarity)
    members: dict[int, list[str]] = {}
    for k, label in zip(g.keys, g.labels):
        members.setdefault(label, []).append(k)
    out = []
    for ks in members.values():
        words: Counter[str] = Counter()
        for k in ks:
            words.update(g.wording[k])
        ranked = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append(UnansweredGroup(count=sum(g.counts[k] for k in ks), examples=[w for w, _ in ranked[:examples]]))
    out.sort(key=lambda x: (-x.count, x.examples[0]))
    return out[:top], g.similarity


@dataclass
class Grouping:
    """Questions grouped by meaning (:func:`group_by_meaning`)."""

    keys: list[str]  # the distinct questions (white space and case folded), most frequent first
    labels: list[int]  # each key's group
    counts: Counter[str]  # key → times asked
    wording: dict[str, Counter[str]]  # key → its wordings as asked (stripped), with their counts
    similarity: float | None  # the threshold used (None: no encoder, or one distinct question)

    @staticmethod
    def key(text: str) -> str:
        """The distinct question ``text`` counts as."""
        return _key(text)

    def representative(self, key: str) -> str:
        """The key's most frequent wording."""
        return max(self.wording[key].items(), key=lambda kv: (kv[1], kv[0]))[0]


def group_by_meaning(texts: list[str], encoder: Encoder | Callable[[], Encoder] | None,
                     similarity: float = DEFAULT_SIMILARITY) -> Grouping:
    """The grouping behind :func:`group_questions` (and ``qa suggest``): identical questions (after
    white space and case) are merged, then the :data:`MAX_CLUSTERED` most frequent distinct ones are
    clustered by :func:`cluster` on their most frequent wording (the rest are left out)."""
    counts: Counter[str] = Counter()
    wording: dict[str, Counter[str]] = {}
    for t in texts:
        k = _key(t)
        counts[k] += 1
        wording.setdefault(k, Counter())[t.strip()] += 1
    keys = [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:MAX_CLUSTERED]
    g = Grouping(keys, list(range(len(keys))), counts, wording, None)
    if encoder is not None and len(keys) > 1:
        enc = encoder if hasattr(encoder, "encode") else encoder()  # type: ignore[operator]
        g.labels = cluster([g.representative(k) for k in keys], enc, similarity)  # type: ignore[arg-type]
        g.similarity = similarity
    return g


def cluster(texts: list[str], encoder: Encoder, similarity: float) -> list[int]:
    """A group label for each text: agglomerative clustering (average linkage) of their query vectors,
    cutting where the cosine falls under ``similarity``."""
    if len(texts) < 2:
        return [0] * len(texts)
    import numpy as np
    from sklearn.cluster import AgglomerativeClustering

    vectors = np.vstack([encoder.encode(texts[i:i + 64], "query") for i in range(0, len(texts), 64)])
    model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                    distance_threshold=max(1e-9, 1.0 - similarity))
    return [int(v) for v in model.fit_predict(vectors)]


# --------------------------------------------------------------------------- rendering


def to_json(report: Report) -> str:
    """The report as JSON (what ``GET /admin/report`` sends)."""
    return report.model_dump_json(indent=2)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _table(headers: list[str], rows: list[list[object]]) -> list[str]:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(_width(r[i]) for r in cells) for i in range(len(headers))]
    return ["  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths)).rstrip() for r in cells]


def _width(text: str) -> int:
    """Columns a string takes on a terminal (CJK characters take two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _clip(text: str | None, n: int = 80) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[:n - 1] + "…"


def to_table(report: Report) -> str:
    """The report for a terminal."""
    t = report.totals
    out = [f"Questions from {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC",
           f"  {t.questions} questions from {t.askers} askers: {t.answered} answered ({_pct(t.answered_rate)}), "
           f"{t.refused} refused ({_pct(t.refused_rate)})",
           f"  {t.rated} rated: {t.helpful} 👍 ({_pct(t.helpful_rate)}), {t.unhelpful} 👎 ({_pct(t.unhelpful_rate)}); "
           f"{t.clicks} alternatives clicked", ""]
    for title, volumes in (("By surface", report.by_surface), ("By language", report.by_language)):
        out.append(title)
        out += ["  " + line for line in _table(
            ["", "questions", "answered", "refused", "answered %", "👍", "👎"],
            [[v.name, v.questions, v.answered, v.refused, _pct(v.answered_rate), v.helpful, v.unhelpful]
             for v in volumes])]
        out.append("")
    out.append("By entry")
    out += ["  " + line for line in _table(
        ["entry", "asked", "👍", "👎", "alt. clicked", "question"],
        [[e.entry_id, e.asked, e.helpful, e.unhelpful, e.alternative_clicks, _clip(e.question, 60)]
         for e in report.entries])]
    out.append("")
    how = (f"grouped by meaning, cosine ≥ {report.similarity}" if report.similarity is not None
           else "identical questions grouped")
    out.append(f"Most frequent unanswered questions ({how})")
    out += [f"  {g.count:>5}  " + " | ".join(_clip(x, 60) for x in g.examples) for g in report.unanswered] or ["  none"]
    out.append("")
    out.append("Answers marked unhelpful (newest first)")
    out += [f"  {a.asked_at:%Y-%m-%d %H:%M}  {a.surface:<5}  {a.entry_id or '-':<8}  {_clip(a.question, 60)}"
            + (f"\n      comment: {_clip(a.comment, 200)}" if a.comment else "")
            for a in report.unhelpful] or ["  none"]
    return "\n".join(out)


CSV_HEADER = ["section", "name", "metric", "value"]


def to_csv(report: Report) -> str:
    """The report as one long CSV table: section, name, metric, value (one figure a row)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    w.writerow(["window", "", "since", report.since.isoformat()])
    w.writerow(["window", "", "until", report.until.isoformat()])
    for metric, value in report.totals.model_dump().items():
        w.writerow(["totals", "", metric, "" if value is None else value])
    for section, volumes in (("surface", report.by_surface), ("language", report.by_language)):
        for v in volumes:
            for metric, value in v.model_dump(exclude={"name"}).items():
                w.writerow([section, v.name, metric, "" if value is None else value])
    for e in report.entries:
        for metric, value in e.model_dump(exclude={"entry_id"}).items():
            w.writerow(["entry", e.entry_id, metric, "" if value is None else value])
    for i, g in enumerate(report.unanswered, 1):
        w.writerow(["unanswered", i, "count", g.count])
        w.writerow(["unanswered", i, "examples", json.dumps(g.examples, ensure_ascii=False)])
    for a in report.unhelpful:
        for metric, value in a.model_dump(mode="json", exclude={"answer_id"}).items():
            w.writerow(["unhelpful", a.answer_id, metric, "" if value is None else value])
    return buf.getvalue()


def render(report: Report, fmt: str) -> str:
    """``table``, ``json`` or ``csv``."""
    return {"table": to_table, "json": to_json, "csv": to_csv}[fmt](report)
