"""Evaluation behind ``qa eval``: labelled questions in, metrics per language and kind out.

An evaluation file is JSON Lines, one ``{"q": str, "id": str | null, "lang": str, "kind": str}``
a line; ``id`` null means the question must be rejected (no match).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from qa.search import Engine

log = logging.getLogger(__name__)

RANK_DEPTH = 10


@dataclass(frozen=True)
class Example:
    """One labelled question."""

    q: str
    id: str | None
    lang: str = ""
    kind: str = ""


@dataclass(frozen=True)
class Outcome:
    """What the engine did with one example."""

    q: str
    expected: str | None
    lang: str
    kind: str
    matched: str | None  # the match id, None when rejected
    ranking: tuple[str, ...]  # candidate ids, best first, regardless of the threshold
    confidence: float  # the confidence of the best candidate
    score: float  # fused score of the best candidate

    @property
    def in_domain(self) -> bool:
        return self.expected is not None

    @property
    def correct(self) -> bool:
        """Answered with the right entry, or rightly rejected."""
        return self.matched == self.expected

    @property
    def rank(self) -> int | None:
        """1-based rank of the expected entry in the ranking, None when absent."""
        if self.expected in self.ranking:
            return self.ranking.index(self.expected) + 1
        return None


def read_examples(paths: Iterable[Path]) -> list[Example]:
    """Reads evaluation files (JSON Lines; blank lines and ``#`` lines skipped).

    Args:
        paths: files or folders (folders: every ``*.jsonl`` inside, sorted).

    Returns:
        The examples.

    Raises:
        ValueError: on a line that is not a valid example, naming file and line.
    """
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        files.extend(sorted(p.glob("*.jsonl")) if p.is_dir() else [p])
    out = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read evaluation file {f}: {exc}") from None
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                raw = json.loads(line)
                out.append(Example(q=str(raw["q"]), id=raw.get("id"), lang=str(raw.get("lang", "")),
                                   kind=str(raw.get("kind", ""))))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{f}:{n}: not an evaluation example ({exc})") from exc
    return out


def run(engine: Engine, examples: Sequence[Example]) -> list[Outcome]:
    """Asks every example (candidates to :data:`RANK_DEPTH`) and records the outcome."""
    outcomes = []
    for x in examples:
        a = engine.ask(x.q, top_k=RANK_DEPTH)
        outcomes.append(Outcome(x.q, x.id, x.lang, x.kind, a.match.id if a.match else None, tuple(a.ranking),
                                a.confidence, a.score))
    return outcomes


def metrics(outcomes: Sequence[Outcome]) -> dict[str, float | int]:
    """Top-1, MRR, recall@3, false rejection, and rejection of the null-id questions.

    Args:
        outcomes: results of :func:`run`.

    Returns:
        ``n``, ``top1`` (answered with the right entry), ``rank1`` (right entry first, threshold
        ignored), ``mrr``, ``recall@3``, ``false_reject``, ``wrong`` (answered, confidently, with
        another entry) over in-domain questions; ``rejected`` over the null-id questions. A rate
        with no questions behind it is absent.
    """
    ind = [o for o in outcomes if o.in_domain]
    neg = [o for o in outcomes if not o.in_domain]
    m: dict[str, float | int] = {"n": len(outcomes)}
    if ind:
        m["top1"] = sum(o.matched == o.expected for o in ind) / len(ind)
        m["rank1"] = sum(o.rank == 1 for o in ind) / len(ind)
        m["mrr"] = sum(1 / o.rank for o in ind if o.rank) / len(ind)
        m["recall@3"] = sum(bool(o.rank and o.rank <= 3) for o in ind) / len(ind)
        m["false_reject"] = sum(o.matched is None for o in ind) / len(ind)
        m["wrong"] = sum(o.matched is not None and o.matched != o.expected for o in ind) / len(ind)
    if neg:
        m["rejected"] = sum(o.matched is None for o in neg) / len(neg)
    return m


def report(outcomes: Sequence[Outcome]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Metrics overall, per language and per kind of question.

    Returns:
        ``{"all": {"all": m}, "lang": {lang: m}, "kind": {kind: m}}``.
    """
    by_lang: dict[str, list[Outcome]] = {}
    by_kind: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_lang.setdefault(o.lang or "?", []).append(o)
        by_kind.setdefault(o.kind or "?", []).append(o)
    return {"all": {"all": metrics(outcomes)},
            "lang": {k: metrics(v) for k, v in sorted(by_lang.items())},
            "kind": {k: metrics(v) for k, v in sorted(by_kind.items())}}


def failures(outcomes: Sequence[Outcome]) -> list[dict[str, object]]:
    """The examples the engine got wrong, for reading."""
    return [asdict(o) for o in outcomes if not o.correct]
