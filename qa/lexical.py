"""BM25 over jieba tokens, one document per FAQ entry."""

from __future__ import annotations

from typing import Sequence

import bm25s
import numpy as np

from qa.segment import Segmenter


class LexicalIndex:
    """A BM25 index over entries. Small enough to rebuild at start-up in milliseconds."""

    def __init__(self, segmenter: Segmenter, documents: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        """Tokenises and indexes the documents.

        Args:
            segmenter: the tokenizer shared with queries.
            documents: one text per entry, in entry order.
            k1: BM25 term-frequency saturation.
            b: BM25 length normalisation.
        """
        self.segmenter = segmenter
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        corpus = [segmenter.tokens(d) or ["∅"] for d in documents]
        self._vocab = {t for doc in corpus for t in doc}
        self._bm25.index(corpus, show_progress=False)
        self.size = len(documents)

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
