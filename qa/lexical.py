"""BM25 over jieba tokens, one document per FAQ entry."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence

import bm25s
import numpy as np

from qa.segment import Segmenter

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG

_CAMEL = re.compile(r"\b[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+\b")


def _spellable(word: str) -> bool:
    return len(word) >= 5 and word.isascii() and word.isalpha()


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


class LexicalIndex:
    """A BM25 index over entries. Small enough to rebuild at start-up in milliseconds."""

    def __init__(self, segmenter: Segmenter, documents: Sequence[str], k1: float = 1.2, b: float = 0.75,
                 common_names: Sequence[str] = ()) -> None:
        """Tokenises and indexes the documents.

        Args:
            segmenter: the tokenizer shared with queries.
            documents: one text per entry, in entry order.
            k1: BM25 term-frequency saturation.
            b: BM25 length normalisation.
            common_names: names (``*`` as a wildcard) that :meth:`unknown_names` never reports.
        """
        self.segmenter = segmenter
        self._common = re.compile("|".join(
            re.escape(n.lower()).replace(r"\*", "[a-z]*") for n in common_names) or "(?!)")
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        corpus = [segmenter.tokens(d) or ["∅"] for d in documents]
        self._vocab = {t for doc in corpus for t in doc}
        self._documents_with: Counter[str] = Counter(t for doc in corpus for t in set(doc))
        self._bm25.index(corpus, show_progress=False)
        self.size = len(documents)
        # Spelling: every vocabulary word under each of its one-letter deletions (SymSpell style),
        # so a query word one edit away (insertion, deletion, substitution, swap) finds it in O(len).
        self._near: dict[str, set[str]] = {}
        for word in self._vocab:
            if _spellable(word):
                for key in _deletes(word) | {word}:
                    self._near.setdefault(key, set()).add(word)

    def correct(self, tokens: Sequence[str]) -> list[str]:
        """Replaces unknown English words by a vocabulary word one edit away, when there is one.

        Args:
            tokens: query tokens.

        Returns:
            The tokens, misspellings ("clonset", "updaet") corrected, with their concept tokens.
        """
        out: list[str] = []
        for tok in tokens:
            fixed = self._nearest(tok) if tok not in self._vocab else None
            if fixed is None:
                out.append(tok)
                continue
            out.append(fixed)
            concept = self.segmenter.concept(fixed)
            if concept:
                out.append(concept)
        return out

    def _nearest(self, tok: str) -> str | None:
        if not _spellable(tok):
            return None
        found: set[str] = set()
        for key in _deletes(tok) | {tok}:
            found |= self._near.get(key, set())
        return min(found, key=lambda w: (abs(len(w) - len(tok)), w)) if found else None

    def unknown_names(self, text: str) -> list[str]:
        """Product-style names in the text (CamelCase) that the FAQ never mentions.

        A question about ``BroadcastJob`` or ``SidecarTerminator`` is about something this FAQ
        does not cover, however close the rest of its wording is to an entry.

        Args:
            text: the question.

        Returns:
            The unknown names, lower-cased.
        """
        names = {m.group(0).lower() for m in _CAMEL.finditer(text)}
        return sorted(n for n in names if n not in self._vocab and not self._common.fullmatch(n)
                      and self._nearest(n) is None)

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for query tokens (zeros when none is known).

        Args:
            tokens: the query's tokens (from the same segmenter).

        Returns:
            A float array, one score per document.
        """
        known = [t for t in tokens if t in self._vocab]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(known), dtype=np.float32)

    def rarest_share(self, tokens: Sequence[str]) -> float | None:
        """Share of the documents that contain the query's most specific known token.

        A question whose every known word occurs in most entries (``OpenKruise``, ``pod``, ``use``)
        points to none of them in particular, however close it comes to each.

        Args:
            tokens: the query's tokens.

        Returns:
            A number in (0, 1], or None when no token (markers ``§…`` aside) is known.
        """
        counts = [self._documents_with[t] for t in set(tokens) if not t.startswith("§") and t in self._vocab]
        return min(counts) / self.size if counts else None

    def coverage(self, tokens: Sequence[str]) -> float:
        """Share of the distinct query tokens that occur in the indexed documents.

        Args:
            tokens: the query's tokens.

        Returns:
            A number in [0, 1]; 0 for no tokens.
        """
        distinct = {t for t in tokens if not t.startswith("§")}
        if not distinct:
            return 0.0
        return len(distinct & self._vocab) / len(distinct)
