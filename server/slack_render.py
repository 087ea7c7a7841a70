"""FAQ answers → Slack slash-command payloads (Block Kit + mrkdwn).

The module is pure: it turns the public answer JSON (see :func:`render_answer`) into the JSON
body a slash command returns, and never talks to Slack itself.

Slack rules this module enforces
--------------------------------
* ``&``, ``<`` and ``>`` are escaped (``&amp;``, ``&lt;``, ``&gt;``) everywhere user or FAQ
  text goes into mrkdwn, code blocks and the ``text`` fallback included. The only raw angle
  brackets in the output are those of the ``<url|text>`` links generated here. Header blocks are
  ``plain_text``, which Slack shows literally, so their text is not escaped.
* A section's text is at most 3000 characters; a header's at most 150; a message holds at
  most 50 blocks. Lengths are counted in UTF-16 code units, which is never less than Python's
  ``len`` (what ``slack_sdk`` checks), so both counts stay within the limits.
* Code blocks are fenced with bare ``` (Slack ignores a language tag and would show it as
  code). A run of three or more backticks inside code would close the fence early, so every
  such run is replaced by as many ``ˋ`` (U+02CB MODIFIER LETTER GRAVE ACCENT), which looks
  alike but is not a backtick. A single backtick inside inline code is replaced the same way.
* Slack only honours ``*bold*``/``_em_``/``~strike~``/`` `code` `` markers next to a word
  boundary, which Chinese text has none of (``使用*原地更新*实现`` is not bold). When a marker
  touches a character that is neither whitespace nor ASCII punctuation, a zero-width space
  (U+200B) is put between them.
* Links keep only ``http``, ``https`` and ``mailto`` targets; any other target (``javascript:``,
  ``file:``, relative paths …) is dropped and only the link text is kept.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from slack_sdk.models.blocks import (
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

__all__ = [
    "MAX_BLOCKS",
    "MAX_HEADER_CHARS",
    "MAX_SECTION_CHARS",
    "MAX_TEXT_CHARS",
    "escape_mrkdwn",
    "markdown_to_mrkdwn",
    "render_answer",
    "render_error",
    "render_usage",
]

MAX_SECTION_CHARS = 3000
"""Slack's limit on the text of a section block (and of any text object)."""
MAX_HEADER_CHARS = 150
"""Slack's limit on the text of a header block."""
MAX_BLOCKS = 50
"""Slack's limit on the number of blocks in one message."""
MAX_TEXT_CHARS = 3000
"""Upper bound this module keeps the top-level ``text`` fallback under."""

MAX_ALTERNATIVES = 5
"""How many "did you mean" questions are listed."""
_MAX_QUESTION_CHARS = 300
"""Cut-off for a user's question or an alternative question quoted in a block."""
_FALLBACK_LINES = 3
"""How many lines of the answer the ``text`` fallback carries."""

_CODE_OPEN = "```\n"
_CODE_CLOSE = "\n```"
_SAFE_BACKTICK = "\u02cb"  # ˋ
_ZWSP = "\u200b"
_ELLIPSIS = "…"
# Placeholders for formatting characters, resolved by _resolve_markers. markdown-it replaces NUL
# with U+FFFD and this module strips other C0 controls from text, so they never come from text.
_OPEN = "\x00"
_CLOSE = "\x01"
_MARKER_RUN = re.compile("(?:[\x00\x01].)+", re.S)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BACKTICK_RUN = re.compile(r"`{3,}")
_ALLOWED_SCHEMES = ("http://", "https://", "mailto:")
_BULLETS = ("•", "◦", "▪\ufe0e")
_INDENT = "\u2007\u2007\u2007"  # figure spaces: Slack does not strip them from line starts
_BOUNDARY_OK = set(string.whitespace) | set(string.punctuation)


class _FAQMarkdown(MarkdownIt):
    """CommonMark + tables + strikethrough, raw HTML off, every link target accepted.

    markdown-it refuses ``javascript:``/``file:`` targets by leaving the whole ``[text](url)``
    as literal text; accepting them here lets the renderer keep just the link text instead.
    """

    def validateLink(self, url: str) -> bool:  # noqa: N802 (markdown-it's name)
        """Accepts every URL; :func:`_link_target` decides what becomes a Slack link.

        Args:
            url: The link target as written.

        Returns:
            Always ``True``.
        """
        return True


_MD = _FAQMarkdown("commonmark", {"html": False}).enable(["table", "strikethrough"])


@dataclass(frozen=True)
class _Seg:
    """A run of answer output: mrkdwn text, or the raw (unescaped) text of a code block."""

    kind: Literal["text", "code"]
    body: str


# --------------------------------------------------------------------------- text helpers


def escape_mrkdwn(text: str) -> str:
    """Escapes the three characters Slack reserves for control sequences.

    Args:
        text: Any text (user question, FAQ text, code).

    Returns:
        ``text`` with ``&``, ``<`` and ``>`` replaced by ``&amp;``, ``&lt;`` and ``&gt;``.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _units(text: str) -> int:
    """Counts ``text`` the way Slack's limits do, in UTF-16 code units.

    Args:
        text: Any text.

    Returns:
        The number of UTF-16 code units (an emoji counts 2, a CJK character 1).
    """
    return len(text.encode("utf-16-le")) // 2


def _prefix_within(text: str, limit: int) -> int:
    """Finds how many characters of ``text`` fit in ``limit`` UTF-16 units.

    Args:
        text: Any text.
        limit: The budget in UTF-16 code units.

    Returns:
        The largest ``n`` with ``_units(text[:n]) <= limit``.
    """
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return i
    return len(text)


def _safe_cut(text: str, cut: int) -> int:
    """Moves a cut point back so that it does not split an entity or a generated link.

    Args:
        text: Escaped mrkdwn.
        cut: The proposed cut (characters of ``text`` kept before it).

    Returns:
        A cut point ``<= cut``; it stays ``cut`` when nothing would be split or when backing
        off would leave nothing.
    """
    head = text[:cut]
    amp = head.rfind("&", max(0, cut - 5))
    if amp > 0 and ";" not in head[amp:]:
        cut = amp
        head = text[:cut]
    lt = head.rfind("<")
    if lt > 0 and lt > head.rfind(">"):
        cut = lt
    return cut


def _fit(text: str, limit: int) -> str:
    """Truncates escaped text to ``limit`` UTF-16 units, ending it with "…" when cut.

    Args:
        text: Escaped text.
        limit: The budget in UTF-16 code units (at least 2).

    Returns:
        ``text`` itself when it fits, else its longest safe prefix followed by "…".
    """
    if _units(text) <= limit:
        return text
    cut = _safe_cut(text, _prefix_within(text, limit - _units(_ELLIPSIS)))
    return text[:cut].rstrip() + _ELLIPSIS


def _clip(text: str, limit: int) -> str:
    """Collapses whitespace of raw (unescaped) text and truncates it to ``limit`` characters.

    Args:
        text: Raw text such as a question.
        limit: Maximum number of characters kept, "…" included.

    Returns:
        The single-line, possibly truncated text.
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + _ELLIPSIS


def _hard_split(line: str, limit: int) -> list[str]:
    """Splits one over-long line into pieces of at most ``limit`` units.

    Prefers to cut after a space in the second half of a piece and never cuts inside an
    entity or a generated ``<url|text>`` link (unless the link alone exceeds the limit).

    Args:
        line: Escaped mrkdwn without newlines.
        limit: The budget per piece in UTF-16 code units.

    Returns:
        The pieces, in order; joined with "" they give ``line`` back.
    """
    pieces: list[str] = []
    rest = line
    while _units(rest) > limit:
        cut = _prefix_within(rest, limit)
        space = rest.rfind(" ", 0, cut)
        if space >= cut // 2:
            cut = space + 1
        cut = _safe_cut(rest, cut) or cut
        if cut <= 0:
            cut = max(1, _prefix_within(rest, limit))
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        pieces.append(rest)
    return pieces


def _pack_lines(text: str, limit: int, *, keep_blank_edges: bool = False) -> list[str]:
    """Packs the lines of ``text`` greedily into chunks of at most ``limit`` units.

    Args:
        text: Escaped mrkdwn or escaped code.
        limit: The budget per chunk in UTF-16 code units.
        keep_blank_edges: Keep blank lines at the start/end of a chunk (code); otherwise they
            are dropped and empty chunks are skipped.

    Returns:
        The chunks, in order. Lines are only broken when one line alone exceeds ``limit``.
    """
    chunks: list[str] = []
    current: list[str] = []
    size = 0

    def flush() -> None:
        body = "\n".join(current)
        if not keep_blank_edges:
            body = body.strip("\n")
        if body.strip() or (keep_blank_edges and current):
            chunks.append(body)

    for raw in text.split("\n"):
        for line in _hard_split(raw, limit) if _units(raw) > limit else [raw]:
            extra = _units(line) + (1 if current else 0)
            if current and size + extra > limit:
                flush()
                current, size = [], 0
                extra = _units(line)
            current.append(line)
            size += extra
    if current:
        flush()
    return chunks


def _safe_code(code: str) -> str:
    """Makes code safe to put between ``` fences and escapes it.

    Args:
        code: Raw code.

    Returns:
        The code with runs of 3+ backticks replaced by ``ˋ`` and ``&<>`` escaped, trailing
        newlines removed.
    """
    code = _BACKTICK_RUN.sub(lambda m: _SAFE_BACKTICK * len(m.group(0)), code.rstrip("\n"))
    return escape_mrkdwn(code)


def _code_chunks(code: str, limit: int = MAX_SECTION_CHARS) -> list[str]:
    """Renders code as one or more fenced mrkdwn code blocks of at most ``limit`` units each.

    Args:
        code: Raw code.
        limit: The budget per fenced block, fences included.

    Returns:
        Fenced blocks (each ````` ```\\n…\\n``` `````); empty when the code is blank.
    """
    body = _safe_code(code)
    if not body.strip():
        return []
    budget = limit - _units(_CODE_OPEN) - _units(_CODE_CLOSE)
    return [f"{_CODE_OPEN}{chunk}{_CODE_CLOSE}" for chunk in _pack_lines(body, budget, keep_blank_edges=True)]


def _resolve_markers(text: str) -> str:
    """Turns marker placeholders into mrkdwn markers, adding zero-width spaces where needed.

    A zero-width space goes before a run of opening markers, and after a run of closing
    markers, when the neighbouring character is neither whitespace nor ASCII punctuation.

    Args:
        text: Rendered mrkdwn in which every opening formatting character is written
            ``\\x00<char>`` and every closing one ``\\x01<char>``.

    Returns:
        The final mrkdwn.
    """

    def repl(m: re.Match[str]) -> str:
        run = m.group(0)
        markers = run[1::2]
        before = m.string[m.start() - 1] if m.start() > 0 else " "
        after = m.string[m.end()] if m.end() < len(m.string) else " "
        if _OPEN in run[0::2] and before not in _BOUNDARY_OK:
            markers = _ZWSP + markers
        if _CLOSE in run[0::2] and after not in _BOUNDARY_OK:
            markers += _ZWSP
        return markers

    return _MARKER_RUN.sub(repl, text)


# --------------------------------------------------------------------------- markdown → mrkdwn


def _link_target(href: str) -> str | None:
    """Returns the Slack-safe form of a link target, or None when it must not be linked.

    Args:
        href: The (markdown-it normalised) link target.

    Returns:
        The URL with ``|``, ``<``, ``>`` and spaces percent-encoded and ``&`` escaped, or
        ``None`` for schemes other than http, https and mailto.
    """
    url = href.strip()
    if not url.lower().startswith(_ALLOWED_SCHEMES):
        return None
    for ch, enc in (("|", "%7C"), ("<", "%3C"), (">", "%3E"), (" ", "%20")):
        url = url.replace(ch, enc)
    return url.replace("&", "&amp;")


def _plain_inline(node: SyntaxTreeNode) -> str:
    """Collects the raw text of an inline subtree, without any markup.

    Args:
        node: An inline node or one of its descendants.

    Returns:
        The text, with line breaks turned into spaces.
    """
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(_plain_inline(child) for child in node.children)


def _inline(node: SyntaxTreeNode, *, plain_style: bool = False) -> str:
    """Renders an inline subtree as mrkdwn with ``\\x00``-marked formatting characters.

    Args:
        node: An ``inline`` node or one of its descendants.
        plain_style: Drop bold/italic markers (used inside headings, which are bold already).

    Returns:
        Escaped mrkdwn; pass it through :func:`_resolve_markers` before use.
    """
    kind = node.type
    if kind in ("text", "html_inline"):
        return escape_mrkdwn(_BACKTICK_RUN.sub(lambda m: _SAFE_BACKTICK * len(m.group(0)), node.content))
    if kind == "softbreak" or kind == "hardbreak":
        return "\n"
    if kind == "code_inline":
        code = escape_mrkdwn(node.content.replace("`", _SAFE_BACKTICK))
        return f"{_OPEN}`{code}{_CLOSE}`" if code.strip() else code
    if kind in ("link", "image"):
        label = _plain_inline(node).strip()
        href = str(node.attrs.get("href" if kind == "link" else "src", ""))
        url = _link_target(href)
        if url is None:
            return escape_mrkdwn(label)
        label = label or href
        return f"<{url}|{escape_mrkdwn(label).replace('|', '¦')}>"
    inner = "".join(_inline(child, plain_style=plain_style) for child in node.children)
    marker = {"strong": "*", "em": "_", "s": "~"}.get(kind)
    if marker is None or not inner.strip():
        return inner
    if plain_style and marker != "~":
        return inner
    return f"{_OPEN}{marker}{inner}{_CLOSE}{marker}"


def _merge(parts: Sequence[Sequence[_Seg]], sep: str) -> list[_Seg]:
    """Concatenates segment lists, joining touching text segments with ``sep``.

    Args:
        parts: Rendered children, in order.
        sep: Separator between two text segments ("\\n" in lists, "\\n\\n" between paragraphs).

    Returns:
        The merged segments.
    """
    out: list[_Seg] = []
    for part in parts:
        for seg in part:
            if seg.kind == "text" and out and out[-1].kind == "text":
                out[-1] = _Seg("text", out[-1].body + sep + seg.body)
            else:
                out.append(seg)
    return out


def _prefix_lines(segs: list[_Seg], first: str, rest: str) -> list[_Seg]:
    """Prefixes the text lines of a container's segments (list marker, quote marker).

    Args:
        segs: The container's rendered content.
        first: Prefix of the very first line.
        rest: Prefix of every other text line.

    Returns:
        New segments; code segments are left as they are.
    """
    out: list[_Seg] = []
    pending = first
    if not segs or segs[0].kind == "code":
        out.append(_Seg("text", first.rstrip() or first))
        pending = rest
    for seg in segs:
        if seg.kind == "code":
            out.append(seg)
            continue
        lines = seg.body.split("\n")
        fixed = []
        for line in lines:
            fixed.append((pending + line) if line else pending.rstrip())
            pending = rest
        out.append(_Seg("text", "\n".join(fixed)))
    return out


def _blocks(node: SyntaxTreeNode, depth: int) -> list[_Seg]:
    """Renders a block node (or the root) to segments.

    Args:
        node: A block-level syntax tree node.
        depth: Current list nesting depth.

    Returns:
        The node's segments in document order.
    """
    kind = node.type
    if kind == "root":
        return _merge([_blocks(child, depth) for child in node.children], "\n\n")
    if kind == "paragraph":
        text = "".join(_inline(child) for child in node.children)
        return [_Seg("text", text)] if text.strip() else []
    if kind == "heading":
        text = "".join(_inline(child, plain_style=True) for child in node.children).strip()
        return [_Seg("text", f"{_OPEN}*{text}{_CLOSE}*")] if text else []
    if kind in ("fence", "code_block"):
        return [_Seg("code", node.content)] if node.content.strip() else []
    if kind == "html_block":
        text = escape_mrkdwn(node.content.strip("\n"))
        return [_Seg("text", text)] if text.strip() else []
    if kind == "hr":
        return [_Seg("text", "──────────")]
    if kind == "blockquote":
        inner = _merge([_blocks(child, depth) for child in node.children], "\n")
        return _prefix_lines(inner, "> ", "> ")
    if kind in ("bullet_list", "ordered_list"):
        start = int(str(node.attrs.get("start", 1)))
        items = []
        for i, item in enumerate(node.children):
            if kind == "ordered_list":
                marker = f"{start + i}. "
            else:
                marker = f"{_BULLETS[min(depth, len(_BULLETS) - 1)]} "
            content = _merge([_blocks(child, depth + 1) for child in item.children], "\n")
            items.append(_prefix_lines(content, marker, _INDENT))
        return _merge(items, "\n")
    if kind == "table":
        rows = []
        for section in node.children:
            for row in section.children:
                cells = ["".join(_inline(c) for c in cell.children).strip() for cell in row.children]
                line = " | ".join(cells)
                rows.append(f"{_OPEN}*{line}{_CLOSE}*" if section.type == "thead" and line.strip() else line)
        return [_Seg("text", "\n".join(rows))] if rows else []
    # Unknown container: render what it holds.
    return _merge([_blocks(child, depth) for child in node.children], "\n\n")


@functools.lru_cache(maxsize=256)
def _segments(md: str) -> tuple[_Seg, ...]:
    """Parses markdown into text and code segments (memoised: the same answers come back often).

    Args:
        md: Markdown text.

    Returns:
        Segments in document order; text is final mrkdwn, code is raw.
    """
    segs = _blocks(SyntaxTreeNode(_MD.parse(_CONTROL.sub("", md))), 0)
    out = []
    for seg in segs:
        if seg.kind == "text":
            body = _resolve_markers(seg.body).strip("\n")
            if body.strip():
                out.append(_Seg("text", body))
        else:
            out.append(seg)
    return tuple(out)


def markdown_to_mrkdwn(md: str) -> str:
    """Converts FAQ markdown to Slack mrkdwn.

    ``**b**``/``__b__`` → ``*b*``; ``*e*``/``_e_`` → ``_e_``; ``~~s~~`` → ``~s~``;
    ``[t](url)`` → ``<url|t>`` for http/https/mailto, plain ``t`` otherwise; inline code stays
    `` `code` ``; list items become ``• item`` / ``1. item`` (nested ones indented); quotes
    ``> line``; headings bold lines; tables ``a | b`` rows. Text is escaped (``&<>``). Fenced
    code, which answers normally hand over separately, is rendered as a ``` block.

    Args:
        md: Markdown text.

    Returns:
        The mrkdwn text (not length-limited; :func:`render_answer` splits it for Slack).
    """
    parts = []
    for seg in _segments(md):
        if seg.kind == "text":
            parts.append(seg.body)
        else:
            parts.append(f"{_CODE_OPEN}{_safe_code(seg.body)}{_CODE_CLOSE}")
    return "\n\n".join(parts)


@functools.lru_cache(maxsize=256)
def _plain_lines(md: str) -> tuple[str, ...]:
    """Extracts the non-empty prose lines of markdown as plain text (code blocks skipped; memoised).

    Args:
        md: Markdown text.

    Returns:
        Raw (unescaped) lines, markup removed.
    """
    lines: list[str] = []

    def walk(node: SyntaxTreeNode) -> None:
        if node.type == "inline":
            text = "".join(
                "\n" if c.type in ("softbreak", "hardbreak") else _plain_inline(c) for c in node.children
            )
            lines.extend(line.strip() for line in text.split("\n") if line.strip())
            return
        if node.type in ("fence", "code_block"):
            return
        for child in node.children:
            walk(child)

    walk(SyntaxTreeNode(_MD.parse(md)))
    return tuple(lines)


# --------------------------------------------------------------------------- block builders


def _section(text: str, *, verbatim: bool = False) -> dict[str, Any]:
    """Builds a mrkdwn section block (validated by slack_sdk).

    Args:
        text: Escaped mrkdwn, at most 3000 units.
        verbatim: Ask Slack not to auto-link URLs or channel names (used for user text).

    Returns:
        The block as a dict.
    """
    text_obj = MarkdownTextObject(text=text, verbatim=True) if verbatim else MarkdownTextObject(text=text)
    return SectionBlock(text=text_obj).to_dict()


def _context(*texts: str, verbatim: bool = False) -> dict[str, Any]:
    """Builds a context block of mrkdwn elements (validated by slack_sdk).

    Args:
        texts: Escaped mrkdwn strings, one element each (1–10); each is cut to 3000 units.
        verbatim: Ask Slack not to auto-link URLs or channel names.

    Returns:
        The block as a dict.
    """
    elements = [
        MarkdownTextObject(text=_fit(t, MAX_SECTION_CHARS), verbatim=True)
        if verbatim
        else MarkdownTextObject(text=_fit(t, MAX_SECTION_CHARS))
        for t in texts[:10]
    ]
    return ContextBlock(elements=elements).to_dict()


def _header(text: str) -> dict[str, Any]:
    """Builds a header block, truncating the text to 150 units with "…".

    Args:
        text: Raw text (plain_text is not escaped: Slack shows it literally).

    Returns:
        The block as a dict.
    """
    flat = " ".join(text.split()) or "OpenKruise FAQ"
    if _units(flat) > MAX_HEADER_CHARS:
        flat = flat[: _prefix_within(flat, MAX_HEADER_CHARS - _units(_ELLIPSIS))].rstrip() + _ELLIPSIS
    return HeaderBlock(text=PlainTextObject(text=flat, emoji=True)).to_dict()


def _payload(blocks: list[dict[str, Any]], text: str, *, share: bool = False) -> dict[str, Any]:
    """Assembles a slash-command response.

    Args:
        blocks: Block dicts (at most 50).
        text: Escaped fallback text; cut to 3000 units, never empty.
        share: Post to the channel (``in_channel``) instead of only to the user (``ephemeral``).

    Returns:
        ``{"response_type", "text", "blocks"}``.
    """
    return {
        "response_type": "in_channel" if share else "ephemeral",
        "text": _fit(text.strip() or "OpenKruise FAQ", MAX_TEXT_CHARS),
        "blocks": blocks[:MAX_BLOCKS],
    }


def _answer_segments(match: Mapping[str, Any]) -> list[_Seg]:
    """Returns the answer's segments, appending ``commands`` if the answer holds no code.

    Args:
        match: The ``match`` object of an answer.

    Returns:
        Text and code segments in document order.
    """
    segs = list(_segments(str(match.get("answer") or "")))
    if not any(seg.kind == "code" for seg in segs):
        for cmd in match.get("commands") or []:
            code = str(cmd.get("code") or "") if isinstance(cmd, Mapping) else ""
            if code.strip():
                segs.append(_Seg("code", code))
    return segs


def _segment_blocks(segs: Sequence[_Seg]) -> list[dict[str, Any]]:
    """Turns segments into ≤3000-unit section blocks (long text/code split, code fenced).

    Args:
        segs: Answer segments.

    Returns:
        Section blocks in document order.
    """
    blocks: list[dict[str, Any]] = []
    for seg in segs:
        chunks = _code_chunks(seg.body) if seg.kind == "code" else _pack_lines(seg.body, MAX_SECTION_CHARS)
        blocks.extend(_section(chunk) for chunk in chunks)
    return blocks


def _alternative_lines(alternatives: Any, skip_id: Any = None) -> list[str]:
    """Formats up to :data:`MAX_ALTERNATIVES` alternative questions as escaped bullet lines.

    Args:
        alternatives: The ``alternatives`` list of an answer (anything else gives no lines).
        skip_id: An id not to list (the matched entry).

    Returns:
        Lines ``• question``.
    """
    lines: list[str] = []
    if not isinstance(alternatives, (list, tuple)):
        return lines
    seen: set[str] = set()
    for alt in alternatives:
        if not isinstance(alt, Mapping):
            continue
        question = _clip(str(alt.get("question") or ""), _MAX_QUESTION_CHARS)
        if not question or question in seen or (skip_id is not None and alt.get("id") == skip_id):
            continue
        seen.add(question)
        lines.append(f"• {escape_mrkdwn(question)}")
        if len(lines) == MAX_ALTERNATIVES:
            break
    return lines


def _confidence(value: Any) -> str | None:
    """Formats a confidence in [0, 1] as a percentage.

    Args:
        value: The confidence (other types give None).

    Returns:
        e.g. ``"87%"``, or None.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return f"{round(min(max(float(value), 0.0), 1.0) * 100)}%"


# --------------------------------------------------------------------------- public payloads


def render_answer(answer: Mapping[str, Any], *, share: bool = False) -> dict[str, Any]:
    """Renders an answer (public JSON shape) as a slash-command response.

    With a match: a header with the matched question (≤150, "…"), a context line with the
    section and the confidence, the answer as mrkdwn sections in document order (each fenced
    code block its own ``` section(s)), then "did you mean" alternatives. Without a match: a
    section saying nothing fitting was found for the (escaped) question, and the nearest
    questions. Every section is ≤3000 units (text split at line boundaries, code split into
    several fenced chunks); over 50 blocks the answer is cut and a final context block says so.

    Args:
        answer: ``{"question", "language", "match": None | {"id", "section", "question",
            "answer", "commands", "score", "confidence"}, "alternatives": [{"id", "question",
            "score"}], "took_ms"}``.
        share: Post the answer to the channel (``in_channel``); default only the asker sees it.

    Returns:
        ``{"response_type": "in_channel" | "ephemeral", "text": <escaped plain summary>,
        "blocks": [...]}``.
    """
    asked = _clip(str(answer.get("question") or ""), _MAX_QUESTION_CHARS)
    match = answer.get("match")
    if not isinstance(match, Mapping):
        return _render_no_match(asked, answer.get("alternatives"), share=share)

    title = str(match.get("question") or asked or "OpenKruise FAQ")
    head: list[dict[str, Any]] = [_header(title)]
    meta = []
    section = " ".join(str(match.get("section") or "").split())
    if section:
        meta.append(f"📂 {escape_mrkdwn(section)}")
    confidence = _confidence(match.get("confidence"))
    if confidence:
        meta.append(f"置信度 Confidence {confidence}")
    context_items = [" · ".join(meta)] if meta else []
    if asked and asked != " ".join(title.split()):
        context_items.append(f"你的问题 / You asked: {escape_mrkdwn(asked)}")
    if context_items:
        head.append(_context(*context_items, verbatim=True))

    body = _segment_blocks(_answer_segments(match))
    if not body:
        body = [_section("_（该条目没有答案内容 / This entry has no answer text.）_")]

    tail: list[dict[str, Any]] = []
    alt_lines = _alternative_lines(answer.get("alternatives"), match.get("id"))
    if alt_lines:
        tail.append(DividerBlock().to_dict())
        tail.append(_context("你是不是想问 / Did you mean:\n" + "\n".join(alt_lines)))

    room = MAX_BLOCKS - len(head) - len(tail)
    if len(body) > room:
        body = body[: room - 1]
        tail.append(
            _context(
                f"✂️ 回答过长，已截断（Slack 单条消息最多 {MAX_BLOCKS} 个区块）。"
                f" / The answer was shortened to fit Slack's {MAX_BLOCKS}-block limit."
            )
        )

    summary = _plain_lines(str(match.get("answer") or ""))[:_FALLBACK_LINES]
    text = "\n".join(escape_mrkdwn(_clip(line, 500)) for line in [title, *summary])
    return _payload(head + body + tail, text, share=share)


def _render_no_match(asked: str, alternatives: Any, *, share: bool) -> dict[str, Any]:
    """Builds the payload for an answer without a match.

    Args:
        asked: The user's question, already clipped (raw).
        alternatives: The answer's ``alternatives``.
        share: Post to the channel.

    Returns:
        The response payload.
    """
    quoted = escape_mrkdwn(asked)
    blocks = [
        _section(
            f"🤔 在 FAQ 中没有找到与“{quoted}”相符的答案。\n"
            f"No good answer was found in the FAQ for “{quoted}”.",
            verbatim=True,
        )
    ]
    alt_lines = _alternative_lines(alternatives)
    if alt_lines:
        blocks.append(_section("*最接近的问题 / Nearest questions:*\n" + "\n".join(alt_lines)))
    blocks.append(_context("换个说法或换用中/英文关键词再试试 / Try rephrasing or other keywords."))
    text = f"没有找到相符的答案 / No good answer found in the FAQ for “{quoted}”."
    return _payload(blocks, text, share=share)


def render_usage(command: str = "/kruise-faq") -> dict[str, Any]:
    """Builds the ephemeral help message.

    Args:
        command: The slash command's name as registered in Slack.

    Returns:
        An ephemeral payload explaining how to ask, ``share <question>`` and ``help``.
    """
    cmd = escape_mrkdwn(command.strip() or "/kruise-faq")
    text = (
        f"*OpenKruise FAQ* — 用 `{cmd}` 提问，中文或英文都可以。"
        " / Ask the OpenKruise FAQ, in Chinese or English.\n"
        f"• `{cmd} 原地升级能改 CPU 吗` — 提问，回答只有你能看到 / ask; only you see the answer\n"
        f"• `{cmd} can in-place update change CPU?` — English works too\n"
        f"• `{cmd} share {escape_mrkdwn('<问题 question>')}` — 把回答发到频道，所有人可见"
        " / post the answer to the channel\n"
        f"• `{cmd} help` — 显示本帮助 / show this help"
    )
    return _payload(
        [_section(text)],
        f"用法 / Usage: {cmd} {escape_mrkdwn('<问题 question>')} · {cmd} share {escape_mrkdwn('<问题>')} · {cmd} help",
    )


def render_error(message: str) -> dict[str, Any]:
    """Builds an ephemeral error message.

    Args:
        message: What went wrong (escaped here; cut to fit a section).

    Returns:
        An ephemeral payload with the message.
    """
    shown = escape_mrkdwn(message.strip() or "出错了 / Something went wrong.")
    return _payload([_section(_fit(f"⚠️ {shown}", MAX_SECTION_CHARS), verbatim=True)], f"⚠️ {shown}")
