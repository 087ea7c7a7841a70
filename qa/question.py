"""A question as the bot takes it in: what is echoed back, and what goes to the model.

Two rules, one per function, applied by :class:`qa.search.Engine` on every surface:

- :func:`as_asked` is the question shown back to the asker (API ``question``, Slack replies,
  the CLI): as typed, minus control characters and bidirectional overrides, which could make
  the echoed text read differently from what it is, or drive a terminal.
- :func:`for_model` is what the encoder and BM25 see. A question people type goes whole (up to
  :data:`WHOLE_BUDGET` estimated tokens: every question of data/eval, data/holdout and
  data/real). A longer one (a pasted log, a long story) is cut down to the lines that carry its
  matter — the ones that ask, the ones that carry an error, the first one — with timestamps,
  ids, addresses and repeated lines dropped, within :data:`MODEL_BUDGET` estimated tokens.

Encoding time grows with the number of tokens (about 0.6 ms a token: 1 s for 2,000 characters
whole, 8-15 ms for a short question), so a 2,000-character question now costs about 2.5 times a short one,
and the noise of a log does not drown the words that match. Why two budgets: cutting every
question to a 64-token budget lost four questions of data/eval and two of data/holdout (long,
typed questions whose matter is spread over every sentence); the questions between the two
budgets cost up to about 6 times a short one, and the rate limit counts that
(``server.ratelimit.question_cost``).
"""

from __future__ import annotations

import math
import re

__all__ = ["MODEL_BUDGET", "WHOLE_BUDGET", "as_asked", "estimate_tokens", "for_model"]

# In estimated tokens (estimate_tokens). A question up to WHOLE_BUDGET goes whole (the longest of
# data/eval, data/holdout and data/real is 138); a longer one is cut to its matter within MODEL_BUDGET.
WHOLE_BUDGET = 144
MODEL_BUDGET = 40  # 64 measured 4.2-4.3x a short question at p50 on some runs, 48 about 2.8-3x, 40 about 2.5x
_SCAN_CHARS = 20_000  # a longer question is read no further (the API refuses over 2,000 characters anyway)

# C0 controls but tab and line breaks, DEL, C1 controls; bidirectional embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def as_asked(question: str) -> str:
    """The question as asked, minus what must never be shown back.

    Removes NUL and the other control characters (tab and line breaks stay) and the
    bidirectional embeddings, overrides and isolates U+202A–U+202E and U+2066–U+2069.

    Args:
        question: the question as received.

    Returns:
        The question to echo.
    """
    return _UNSAFE.sub("", question)


_CJK_LIKE = re.compile(r"[\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
_ASCII_WORD = re.compile(r"[A-Za-z0-9]+")
_MIXED = re.compile(r"[a-z][0-9]|[0-9][a-z]", re.IGNORECASE)  # ids and hashes: about 3 tokens per 4 characters
_ASCII_MARK = re.compile(r"[!-/:-@\[-`{-~]")
_OTHER = re.compile(r"[^\x00-\x7f\s\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    """A cheap, slightly generous estimate of the encoder's tokens for ``text`` (no tokenizer call).

    Each Chinese, Japanese or Korean character counts one (XLM-R averages about 0.65 on the
    FAQ's Chinese), each ASCII word one per 3.5 characters begun (English prose averages about
    one per 4), a word mixing letters and digits (an id, a hash) three per four characters, each
    ASCII punctuation mark and other character one.
    """
    words = sum(len(w) - len(w) // 4 if _MIXED.search(w) else math.ceil(len(w) / 3.5)
                for w in _ASCII_WORD.findall(text))
    return len(_CJK_LIKE.findall(text)) + words + len(_ASCII_MARK.findall(text)) + len(_OTHER.findall(text))


# Noise that never helps a match: it is dropped from the lines of a long question.
_NOISE = [re.compile(p, re.IGNORECASE) for p in (
    r"\b[IWEF]\d{4} \d{2}:\d{2}:\d{2}(?:\.\d+)?(?:\s+\d+)?\s+[\w.-]+:\d+\]",  # klog: I0102 15:04:05.1 7 x.go:12]
    r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?\b",  # dates, ISO times
    r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b",  # times of day
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",  # UUIDs
    r"\b(?:sha256:)?[0-9a-f]{12,}\b",  # digests, container ids
    r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b",  # IPv4 addresses and ports
    r"\b\d{5,}\b",  # long numbers: resource versions, pids, sizes
    r"(?<=[a-z0-9])-[a-z0-9]{8,10}-[a-z0-9]{5}\b",  # a Deployment pod's hash suffixes: web-7d9f8b6c5-x7k2p
)]
_ASKS = re.compile(r"[?？]|\b(?:how|why|what|which|when|where|whether|can|could|should|is there|does|do i)\b"
                   r"|如何|为什么|为何|怎么|怎样|是否|能否|可否|能不能|吗|呢|请问|求助", re.IGNORECASE)
_ERRORS = re.compile(r"\b(?:error|err|errors|fail|failed|failing|failure|fatal|panic|exception|denied|forbidden|"
                     r"refused|timeout|timed out|unable|cannot|can't|couldn't|invalid|not found|no such|"
                     r"unknown|backoff|crashloopbackoff|oomkilled|evicted|unhealthy|rejected|conflict|"
                     r"exceeded|stuck|warning)\b|报错|错误|失败|异常|无法|不能|超时|拒绝|找不到|不存在|冲突|卡住|卡在",
                     re.IGNORECASE)
_MIN_PART = 12  # estimated tokens: less of a line is not worth keeping
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|(?<=\.)\s+")


def _units(text: str) -> list[str]:
    """The lines of ``text``, a long line split into sentences; noise dropped, spaces collapsed."""
    out = []
    for line in text.splitlines():
        for part in _SENTENCE_END.split(line) if len(line) > 2 * MODEL_BUDGET else [line]:
            for noise in _NOISE:
                part = noise.sub(" ", part)
            part = " ".join(part.split()).strip(" -|:,;")
            if part:
                out.append(part)
    return out


def _cut(text: str, budget: int) -> str:
    """The longest prefix of ``text`` within ``budget`` estimated tokens (at a space when there is one)."""
    lo, hi = 0, len(text)
    while lo < hi:  # binary search on the prefix length
        mid = (lo + hi + 1) // 2
        if estimate_tokens(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    head = text[:lo]
    space = head.rfind(" ")
    return head[:space] if lo < len(text) and space > lo // 2 else head


_CLAUSE_END = re.compile(r"(?<=[:;,])\s+|(?<=[，；：])")


def _telling_part(line: str, budget: int) -> str:
    """What of a telling ``line`` too long for ``budget`` is kept: its clauses that ask or carry an
    error first (an error chain such as ``failed to list x: y is forbidden: user z cannot list``
    keeps its failing clauses), then the others, in their order; a clause too long keeps its
    beginning."""
    clauses = [c for c in _CLAUSE_END.split(line) if c.strip()]
    telling = [bool(_ASKS.search(c) or _ERRORS.search(c)) for c in clauses]
    chosen: set[int] = set()
    left = budget
    for want in (True, False):
        for i, clause in enumerate(clauses):
            if telling[i] == want and i not in chosen:
                cost = estimate_tokens(clause) + 1
                if cost <= left:
                    chosen.add(i)
                    left -= cost
                elif want and left >= _MIN_PART and not chosen:  # the first telling clause alone is too long
                    return _cut(clause, budget)
    return " ".join(clauses[i].strip() for i in sorted(chosen)) or _cut(line, budget)


def for_model(question: str, budget: int = MODEL_BUDGET, whole: int = WHOLE_BUDGET) -> str:
    """What of a question goes to the model (and to BM25): a typed one whole, a long one cut to its matter.

    A question within ``whole`` estimated tokens is returned as it is. A longer one is split
    into lines (a long line into sentences); timestamps, dates, UUIDs, digests, IP addresses,
    long numbers and pod-name hashes are dropped, and repeated lines kept once. Lines that ask
    (a question mark, "how", "为什么", …) and lines that carry an error ("failed", "forbidden",
    "报错", …) come first, then the first line, then the others in order, while they fit; such a
    telling line longer than what is left of the budget keeps its clauses that ask or fail first.
    The kept lines are joined in their original order.

    Args:
        question: the question as asked (line breaks matter: a pasted log is read line by line).
        budget: estimated tokens (:func:`estimate_tokens`) at most in what is kept of a long question.
        whole: estimated tokens up to which a question is kept whole.

    Returns:
        The text to encode and search.
    """
    text = question[:_SCAN_CHARS]
    if estimate_tokens(text) <= whole:
        return text
    units = list(dict.fromkeys(_units(text)))  # in order, each once
    if not units:
        return _cut(" ".join(text.split()), budget)

    score = [2 * bool(_ASKS.search(u)) + 2 * bool(_ERRORS.search(u)) + (i == 0) for i, u in enumerate(units)]
    chosen: list[int] = []
    left = budget
    for level in sorted(set(score), reverse=True):  # the most telling lines first, in their order
        over = []
        for i in (i for i in range(len(units)) if score[i] == level):
            cost = estimate_tokens(units[i]) + 1
            if cost <= left:
                chosen.append(i)
                left -= cost
            else:
                over.append(i)
        if over and left >= _MIN_PART and (level >= 2 or not chosen):  # a telling line too long: its telling part
            units[over[0]] = _telling_part(units[over[0]], left - 1)
            chosen.append(over[0])
            left -= estimate_tokens(units[over[0]]) + 1
        if left < _MIN_PART:
            break
    return "\n".join(units[i] for i in sorted(chosen))
