"""Markdown FAQ files → :class:`Entry` objects.

A question is a heading whose text starts with a ``Q`` marker (``Q：``, ``Q:``, ``**Q**：``,
``问：``) or, failing that, a heading that ends with a question mark. Every other heading below
level 1 opens a section. The answer is the markdown under the question heading, up to the next
heading, with its ``A：`` / ``**A**：`` marker removed, split once into parts: markdown text and
commands (each fenced code block, with its language).
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from qa.contract import Entry
from qa.errors import FAQError
from qa.markdown import split_parts

log = logging.getLogger(__name__)

_Q_PREFIX = re.compile(r"^\s*(?:\*\*|__)?\s*(?:Q|问|問|Question)\s*(?:\*\*|__)?\s*[：:]\s*", re.I)
_A_PREFIX = re.compile(r"^(\s*(?:>\s*)?)(?:\*\*|__)?\s*(?:A|答|Answer)\s*(?:\*\*|__)?\s*[：:]\s*", re.I | re.M)
_FILE_LINK = re.compile(r"\[([^\]]*)\]\(\s*<?file://[^)]*\)")
_FILE_AUTOLINK = re.compile(r"<file://[^>]*>")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}#{2,6}\s")


@dataclass(frozen=True)
class ParseWarning:
    """A problem found while parsing; the rest of the file still loads."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass
class ParseResult:
    """Entries and warnings from one or more files."""

    entries: list[Entry] = field(default_factory=list)
    warnings: list[ParseWarning] = field(default_factory=list)


def entry_id(question: str) -> str:
    """Returns a stable id for a question: a hash of its normalised text.

    Args:
        question: the plain question text.

    Returns:
        Eight hex digits, the same on every machine and rebuild.
    """
    norm = " ".join(unicodedata.normalize("NFKC", question).split()).lower()
    return hashlib.sha1(norm.encode("utf-8")).hexdigest()[:8]


def _plain(inline: Token) -> str:
    """Inline markdown → plain text (emphasis markers dropped, code kept, links as text)."""
    out: list[str] = []
    for child in inline.children or []:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif child.type == "html_inline":
            continue
    return " ".join("".join(out).split())


def _fence_scan(lines: list[str], start: int) -> tuple[str, int] | None:
    """From line index ``start``, the first fence left open at the end: (marker, index) or None."""
    open_marker: str | None = None
    open_at = 0
    for i in range(start, len(lines)):
        m = _FENCE.match(lines[i])
        if open_marker is None:
            if m:
                open_marker, open_at = m.group(1), i
        elif m and m.group(1)[0] == open_marker[0] and len(m.group(1)) >= len(open_marker) \
                and not lines[i].strip().strip(open_marker[0]):
            open_marker = None
    return (open_marker, open_at) if open_marker is not None else None


def _close_unclosed_fences(lines: list[str], source: str, warnings: list[ParseWarning]) -> list[str]:
    """Closes a fence that is never closed, just before the next ``##`` heading after it.

    Fences that close are left alone (a ``## comment`` inside one is code, not a heading); only
    a fence still open at the end of the file gets this repair, so the entries after it survive.
    """
    lines = list(lines)
    start = 0
    while (found := _fence_scan(lines, start)) is not None:
        marker, at = found
        close = next((i for i in range(at + 1, len(lines)) if _HEADING.match(lines[i])), len(lines))
        where = f"closed before line {close + 1}" if close < len(lines) else "closed at end of file"
        warnings.append(ParseWarning(source, at + 1, f"unclosed code fence; {where}"))
        lines.insert(close, marker)
        start = close + 1
    return lines


def _clean_answer(md: str) -> str:
    md = _FILE_LINK.sub(lambda m: m.group(1), md)
    md = _FILE_AUTOLINK.sub(lambda m: m.group(0)[1:-1].removeprefix("file://"), md)
    # The A marker is looked for outside code only: up to the first fence, then between fences.
    parts = re.split(r"(^ {0,3}(?:`{3,}|~{3,}).*$)", md, flags=re.M)
    inside = False
    for i, part in enumerate(parts):
        if i % 2 == 1:
            inside = not inside
            continue
        if not inside and _A_PREFIX.search(part):
            parts[i] = _A_PREFIX.sub(lambda m: m.group(1), part, count=1)
            break
    md = "".join(parts)
    return md.strip("\n").rstrip() + "\n" if md.strip() else ""


def parse_markdown(text: str, source: str = "<string>") -> ParseResult:
    """Parses one FAQ markdown document.

    Args:
        text: the markdown source.
        source: a name for warnings and provenance (usually the file name).

    Returns:
        The entries in document order and any warnings.
    """
    result = ParseResult()
    lines = _close_unclosed_fences(text.splitlines(), source, result.warnings)
    tokens = MarkdownIt("commonmark").parse("\n".join(lines))

    headings: list[tuple[int, int, Token]] = []  # (token index, level, inline)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            headings.append((i, int(tok.tag[1:]), tokens[i + 1]))

    sections: dict[int, str] = {}
    for n, (i, level, inline) in enumerate(headings):
        raw = inline.content
        plain = _plain(inline)
        is_q = bool(_Q_PREFIX.match(raw)) or (level > 1 and plain.endswith(("?", "？")))
        if not is_q:
            if level > 1:
                sections = {lv: t for lv, t in sections.items() if lv < level}
                sections[level] = plain
            continue
        question = _Q_PREFIX.sub("", plain, count=1).strip()
        start = (tokens[i].map or [0, 0])[1]
        end_tok = headings[n + 1][0] if n + 1 < len(headings) else len(tokens)
        end = (tokens[end_tok].map or [len(lines), 0])[0] if end_tok < len(tokens) else len(lines)
        line_no = (tokens[i].map or [0])[0] + 1
        answer = _clean_answer("\n".join(lines[start:end]))
        if not question:
            result.warnings.append(ParseWarning(source, line_no, "question heading with no text"))
            continue
        if not answer.strip():
            result.warnings.append(ParseWarning(source, line_no, f"question has no answer: {question[:60]}"))
            continue
        path = tuple(sections[lv] for lv in sorted(sections))
        result.entries.append(_entry(entry_id(question), " / ".join(path), question, answer, source, line_no))
    return result


def _entry(id_: str, section: str, question: str, answer: object, source: str, line: int) -> Entry:
    entry = Entry(id=id_, section=section, question=question,
                  answer=split_parts(answer) if isinstance(answer, str) else answer)
    entry._source, entry._line = source, line
    return entry


def load_faq(paths: Iterable[Path]) -> ParseResult:
    """Loads every markdown file in the given files or folders.

    Args:
        paths: files or folders (folders are searched for ``*.md``, sorted by name).

    Returns:
        All entries, with duplicate ids disambiguated, and all warnings.

    Raises:
        FAQError: when no file could be read or no entry was found.
    """
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        files.extend(sorted(p.rglob("*.md")) if p.is_dir() else [p])
    result = ParseResult()
    seen: dict[str, int] = {}
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            result.warnings.append(ParseWarning(str(f), 0, f"cannot read: {exc}"))
            continue
        part = parse_markdown(text, source=f.name)
        result.warnings.extend(part.warnings)
        for e in part.entries:
            if e.id in seen:
                seen[e.id] += 1
                new_id = f"{e.id}-{seen[e.id]}"
                result.warnings.append(ParseWarning(e.source_file, e.line, f"duplicate question; id {new_id}"))
                e = _entry(new_id, e.section, e.question, e.answer, e.source_file, e.line)
            else:
                seen[e.id] = 1
            result.entries.append(e)
    for w in result.warnings:
        log.warning("%s", w)
    if not result.entries:
        raise FAQError(f"no FAQ entries found in {', '.join(str(p) for p in paths) or 'no path'}")
    return result
