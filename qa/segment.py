"""Text normalisation and mixed Chinese/English segmentation with jieba.

A :class:`Segmenter` holds its own ``jieba.Tokenizer`` (never the global one) loaded with the
domain dictionary, so product names stay whole; multi-word English terms ("Advanced
StatefulSet") are joined before jieba sees them. A bilingual glossary maps every synonym to a
shared concept token, so "sidecar" and "边车" meet on the lexical side.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jieba

log = logging.getLogger(__name__)
jieba.setLogLevel(logging.WARNING)  # jieba sets its own logger to DEBUG on import, with a stderr handler

Language = Literal["zh", "en", "mixed"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-\.]*")
_WORDLIKE = re.compile(r"[\w\u3400-\u9fff]", re.UNICODE)
_ASCII_WORD = re.compile(r"[a-z0-9](?:[a-z0-9._+#/-]*[a-z0-9+#])?")
_PART_SEP = re.compile(r"[._/-]+")

# Function words in both languages; the FAQ's own vocabulary decides the rest.
DEFAULT_STOPWORDS = frozenset("""
的 了 吗 呢 吧 啊 是 在 有 和 与 及 或 我 我们 你 您 他 它 这 那 这个 那个 一个 一些 什么 怎么 怎样 如何 为什么
哪些 哪个 可以 能 能否 是否 会 要 需要 应该 进行 使用 用 把 被 对 从 到 中 上 下 里 时 时候 后 之后 等 也 都 就 还 又
请问 一下 么 嘛 呀 过 着 给 让 其 及其 以及 而 但 但是 如果 因为 所以 没有 不 没 很 更 最 吧 哦 嗯 个
a an the is are was were be been being am do does did doing done have has had having i me my we our you your
he she it its they them their this that these those what which who whom whose when where why how can could
should would will shall may might must to of in on at by for with from as into onto about than then so if or
and but not no any some there here please get got anyone somebody thanks thank hi hello
""".split())


def normalise(text: str) -> str:
    """NFKC (full-width → half-width), zero-width and direction marks removed, controls → spaces, spaces collapsed.

    Args:
        text: raw user or FAQ text.

    Returns:
        The cleaned text.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def detect_language(text: str) -> Language:
    """Tells Chinese, English and mixed questions apart.

    Args:
        text: the question.

    Returns:
        ``"zh"`` when Chinese carries the question (product names and acronyms aside),
        ``"en"`` when there is no Chinese, ``"mixed"`` when both carry it.
    """
    cjk = len(_CJK.findall(text))
    words = [w for w in _LATIN_WORD.findall(text) if not w.isupper() and len(w) > 1]
    if cjk == 0:
        return "en"
    # Only ordinary lower-case words count as English prose; CamelCase names are terms.
    prose = [w for w in words if w.islower()]
    share = len(prose) / (len(prose) + cjk / 2)
    return "mixed" if share >= 0.2 and len(prose) >= 2 else "zh"


@dataclass
class Glossary:
    """Synonym groups; each term maps to the concept token of its group."""

    groups: list[list[str]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None) -> Glossary:
        """Reads ``term | term | …`` lines (``#`` comments allowed).

        Args:
            path: the glossary file, or None for an empty glossary.

        Returns:
            The glossary.
        """
        groups: list[list[str]] = []
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.split("#", 1)[0].strip()
                terms = [normalise(t).lower() for t in line.split("|") if t.strip()]
                if len(terms) >= 2:
                    groups.append(terms)
        return cls(groups)


def read_terms(path: Path | None) -> list[str]:
    """Reads a one-term-a-line dictionary file (``#`` comments allowed)."""
    if path is None or not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


_TOKENIZERS: weakref.WeakValueDictionary[frozenset[str], jieba.Tokenizer] = weakref.WeakValueDictionary()
_TOKENIZERS_LOCK = threading.Lock()


def _tokenizer(words: frozenset[str]) -> jieba.Tokenizer:
    """A jieba tokenizer with these domain words, shared by every segmenter that asks for the same ones.

    jieba's dictionary takes about 50 MiB a tokenizer; a server reload builds a new engine while
    the old one serves, and with a tokenizer each, every reload held two and left the process
    larger (glibc and Python keep much of what is freed). Tokenizing only reads the dictionary,
    so engines share it; it is freed with the last segmenter that uses it.
    """
    with _TOKENIZERS_LOCK:
        tok = _TOKENIZERS.get(words)
        if tok is None:
            tok = jieba.Tokenizer()
            for word in words:
                tok.add_word(word, freq=2_000_000)
            _TOKENIZERS[words] = tok
        return tok


class Segmenter:
    """Turns text into lexical tokens: domain terms whole, stop words out, synonyms unified."""

    def __init__(self, terms: Iterable[str] = (), glossary: Glossary | None = None,
                 stopwords: Iterable[str] = DEFAULT_STOPWORDS) -> None:
        """Builds a jieba tokenizer with the given dictionary.

        Args:
            terms: domain terms to keep whole (any case; multi-word allowed).
            glossary: synonym groups for concept tokens.
            stopwords: tokens to drop.
        """
        self.glossary = glossary or Glossary()
        self.stopwords = frozenset(s.lower() for s in stopwords)
        all_terms = {normalise(t).lower() for t in terms}
        for group in self.glossary.groups:
            all_terms.update(group)
        # Multi-word terms are joined so jieba, which splits on spaces, keeps them whole.
        self._phrases = sorted((t for t in all_terms if " " in t), key=len, reverse=True)
        self._phrase_re = (re.compile("|".join(r"(?<![a-z0-9])" + re.escape(p) + r"(?![a-z0-9])"
                                               for p in self._phrases)) if self._phrases else None)
        self._concept: dict[str, str] = {}
        for i, group in enumerate(self.glossary.groups):
            for term in group:
                self._concept.setdefault(_stem(self._join(term)), f"§{i}")
        # ASCII words never reach jieba (see tokens)
        self._jieba = _tokenizer(frozenset(self._join(t) for t in all_terms if not t.isascii()))

    @staticmethod
    def _join(term: str) -> str:
        return term.replace(" ", "")

    def tokens(self, text: str) -> list[str]:
        """Segments text for BM25.

        English and other ASCII words are taken whole (with the parts of hyphenated or dotted
        names as extra tokens); only the runs between them go through jieba, so a dictionary
        word can never split an English word ("change" never yields "hang").

        Args:
            text: any text, Chinese, English or mixed.

        Returns:
            Lower-case tokens: words, their search sub-words, and glossary concept tokens.
        """
        text = normalise(text).lower()
        if self._phrase_re is not None:
            text = self._phrase_re.sub(lambda m: self._join(m.group(0)), text)
        out: list[str] = []
        pos = 0
        for m in _ASCII_WORD.finditer(text):
            self._cut(text[pos:m.start()], out)
            word = m.group(0)
            self._emit(word, out)
            if _PART_SEP.search(word):
                for part in _PART_SEP.split(word):
                    if part != word:
                        self._emit(part, out)
            pos = m.end()
        self._cut(text[pos:], out)
        return out

    def concept(self, token: str) -> str | None:
        """The glossary concept token of a token, if it belongs to a synonym group."""
        return self._concept.get(token)

    def _cut(self, chunk: str, out: list[str]) -> None:
        if chunk.strip():
            for tok in self._jieba.cut_for_search(chunk, HMM=True):
                self._emit(tok, out)

    def _emit(self, tok: str, out: list[str]) -> None:
        tok = tok.strip(" .-:/_")
        if not tok or not _WORDLIKE.search(tok) or tok in self.stopwords or (len(tok) == 1 and tok.isascii()):
            return
        tok = _stem(tok)
        out.append(tok)
        concept = self._concept.get(tok)
        if concept:
            out.append(concept)


def _stem(tok: str) -> str:
    """Folds a plain English plural ("pods" → "pod"); leaves everything else alone."""
    if len(tok) > 3 and tok.isascii() and tok.isalpha() and tok.endswith("s") and not tok.endswith("ss"):
        return tok[:-1]
    return tok
