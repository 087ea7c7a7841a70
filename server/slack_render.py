"""Answers → Slack slash-command replies: Block Kit sections of mrkdwn, built from the answer's parts.

Text parts are read once, by :func:`qa.markdown.tree`, and written out as mrkdwn; command parts
become ``` sections. Slack's ``markdown`` block is not used: Slack introduced it for apps using its
AI features and documents no support for it in slash-command replies (which cannot be tried here),
and Slack would read the markdown a second time, by its own rules for links, mentions and emphasis.

Slack's rules kept here: ``&<>`` escaped in all text (the only raw brackets are generated
``<url|label>`` links); section text ≤ 3000, header ≤ 150, ≤ 50 blocks, counted in UTF-16 code
units (never fewer than ``len``, which slack_sdk checks).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Sequence
from itertools import accumulate, groupby
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from qa.contract import Alternative, Answer, CommandPart, Node, TextPart
from qa.markdown import tree

MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_BLOCKS = 50
MAX_ALTERNATIVES = 5
MAX_BUTTON_TEXT = 75  # Slack: a button's text
MAX_BUTTON_VALUE = 2000  # Slack: a button's value
FEEDBACK_YES = "feedback_yes"  # action ids the interactivity endpoint (server.slack_interactive) reads
FEEDBACK_NO = "feedback_no"
ASK_ALTERNATIVE = "ask_alternative"  # + "_<n>": action ids are unique within a block
_MAX_QUESTION_CHARS = 300

_ZWSP = "\u200b"
_LOOKALIKE_BACKTICK = "\u02cb"  # ˋ: a ``` run inside text or code would open or close a fence
_FENCE_RUN = re.compile(r"`{3,}")
# Slack honours *bold*, _em_, ~strike~ and `code` only next to these; Chinese has no spaces.
_BOUNDARY = frozenset(string.whitespace + string.punctuation + _ZWSP)
_MARKS = {"strong": "*", "em": "_", "s": "~"}
_INLINE = frozenset({"text", "code", "strong", "em", "s", "link", "softbreak", "hardbreak"})
_BULLETS = ("•", "◦", "▪\ufe0e")
_INDENT = "\u2007\u2007\u2007"  # figure spaces: Slack keeps them at a line's start
_Seg = tuple[bool, str]  # (is code, mrkdwn text or raw code)


def escape_mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _clip(text: str, limit: int, mark: str = "…") -> str:
    """``text``, or its longest prefix within ``limit`` UTF-16 units followed by ``mark``.

    The cut never splits an ``&amp;`` entity or a ``<url|label>`` link (unless that leaves nothing).
    """
    if _units(text) <= limit:
        return text
    budget = limit - _units(mark)
    n = next(i for i, used in enumerate(accumulate(2 if ord(c) > 0xFFFF else 1 for c in text)) if used > budget)
    head = text[:n]
    amp = head.rfind("&", max(0, n - 5))
    if amp >= 0 and ";" not in head[amp:]:
        head = head[:amp]
    if head.rfind("<") > head.rfind(">"):
        head = head[: head.rfind("<")]
    head = head or text[:n]
    return head.rstrip() + mark if mark else head


def _flat(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- tree → mrkdwn


def _inline(nodes: Iterable[Node]) -> str:
    """Inline nodes as mrkdwn, with a zero-width space where a marker touches a letter."""
    out, closed = "", False
    for node in nodes:
        piece, marked = _span(node)
        if not piece:
            continue
        if marked and out and out[-1] not in _BOUNDARY:
            piece = _ZWSP + piece
        if closed and piece[0] not in _BOUNDARY:
            piece = _ZWSP + piece
        out, closed = out + piece, marked
    return out


def _unfenced(text: str) -> str:
    return escape_mrkdwn(_FENCE_RUN.sub(lambda m: _LOOKALIKE_BACKTICK * len(m[0]), text))


def _span(node: Node) -> tuple[str, bool]:
    kind = node.type
    if kind == "text":
        return _unfenced(node.text or ""), False
    if kind in ("softbreak", "hardbreak"):
        return "\n", False
    if kind == "code":
        code = escape_mrkdwn((node.text or "").replace("`", _LOOKALIKE_BACKTICK))
        return (f"`{code}`", True) if code.strip() else (code, False)
    if kind == "link":
        label = _flat(_plain(node.children or ()))
        href = escape_mrkdwn(node.href or "")  # the tree keeps http(s) and mailto targets only, %-encoded
        text = escape_mrkdwn(label).replace("|", "¦")
        return (f"<{href}|{text or href}>" if href else text), False
    inner = _inline(node.children or ())
    mark = _MARKS.get(kind)
    return (f"{mark}{inner}{mark}", True) if mark and inner.strip() else (inner, False)


def _plain(nodes: Iterable[Node]) -> str:
    """The text of nodes without markup; blocks on lines of their own, code blocks left out."""
    out = []
    for node in nodes:
        if node.type in ("text", "code"):
            out.append(node.text or "")
        elif node.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif node.type != "code_block":
            inner = _plain(node.children or ())
            out.append(inner if node.type in _INLINE else f"\n{inner}\n")
    return "".join(out)


def _merge(segs: Iterable[_Seg], sep: str) -> list[_Seg]:
    out: list[_Seg] = []
    for is_code, body in segs:
        if not is_code and out and not out[-1][0]:
            out[-1] = (False, out[-1][1] + sep + body)
        else:
            out.append((is_code, body))
    return out


def _prefix(segs: list[_Seg], first: str, rest: str) -> list[_Seg]:
    """Puts ``first`` before the first line of the text and ``rest`` before every other line."""
    out: list[_Seg] = []
    pending = first
    if not segs or segs[0][0]:  # an item that starts with code gets its marker on a line of its own
        out, pending = [(False, first.rstrip())], rest
    for is_code, body in segs:
        if is_code:
            out.append((True, body))
            continue
        lines = []
        for line in body.split("\n"):
            lines.append(pending + line if line else pending.rstrip())
            pending = rest
        out.append((False, "\n".join(lines)))
    return out


def _container(nodes: Sequence[Node], depth: int, sep: str) -> list[_Seg]:
    """Renders block nodes; runs of inline nodes (a tight list item's text) count as a paragraph."""
    segs: list[_Seg] = []
    for inline, group in groupby(nodes, lambda node: node.type in _INLINE):
        for node in [Node(type="paragraph", children=tuple(group))] if inline else group:
            segs.extend(_block(node, depth))
    return _merge(segs, sep)


def _block(node: Node, depth: int) -> list[_Seg]:
    kind, kids = node.type, node.children or ()
    if kind == "code_block":
        return [(True, node.text or "")]
    if kind == "hr":
        return [(False, "──────────")]
    if kind == "paragraph":
        text = _inline(kids)
        return [(False, text)] if text.strip() else []
    if kind == "heading":
        text = escape_mrkdwn(_flat(_plain(kids)))
        return [(False, f"*{text}*")] if text else []
    if kind == "blockquote":
        return _prefix(_container(kids, depth, "\n"), "> ", "> ")
    if kind in ("bullet_list", "ordered_list"):
        items, start = [], 1 if node.start is None else node.start
        for i, item in enumerate(kids):
            marker = f"{start + i}. " if kind == "ordered_list" else f"{_BULLETS[min(depth, 2)]} "
            items.extend(_prefix(_container(item.children or (), depth + 1, "\n"), marker, _INDENT))
        return _merge(items, "\n")
    if kind == "table":
        rows = []
        for section in kids:
            for row in section.children or ():
                cells = row.children or ()
                if section.type == "thead":
                    rows.append(f"*{escape_mrkdwn(' | '.join(_flat(_plain(c.children or ())) for c in cells))}*")
                else:
                    rows.append(" | ".join(_inline(c.children or ()).strip() for c in cells))
        return [(False, "\n".join(rows))]
    return _container(kids, depth, "\n\n")


def _segments(markdown: str) -> list[_Seg]:
    return [(is_code, body.strip("\n")) for is_code, body in _container(tree(markdown), 0, "\n\n")]


def markdown_to_mrkdwn(markdown: str) -> str:
    """A text part as one mrkdwn string (code blocks fenced); not cut to Slack's limits."""
    return "\n\n".join("\n".join(_fenced(body)) if is_code else body for is_code, body in _segments(markdown)
                       if body.strip())


# --------------------------------------------------------------------------- limits and blocks


def _chunks(text: str, limit: int) -> list[str]:
    """Lines packed into chunks of at most ``limit`` units; a line is split only when it alone is longer."""
    chunks: list[list[str]] = [[]]
    size = -1
    for line in text.split("\n"):
        pieces = []
        while _units(line) > limit:
            piece = _clip(line, limit, "")
            space = piece.rfind(" ")
            piece = piece[: space + 1] if space >= len(piece) // 2 else piece
            pieces.append(piece)
            line = line[len(piece):]
        if line or not pieces:
            pieces.append(line)
        for piece in pieces:
            if chunks[-1] and size + 1 + _units(piece) > limit:
                chunks.append([])
                size = -1
            chunks[-1].append(piece)
            size += 1 + _units(piece)
    return ["\n".join(chunk) for chunk in chunks]


def _fenced(code: str) -> list[str]:
    body = _unfenced(code.strip("\n"))
    if not body.strip():
        return []
    return [f"```\n{chunk}\n```" for chunk in _chunks(body, MAX_SECTION_CHARS - 8)]


def _section_texts(part: TextPart | CommandPart) -> list[str]:
    if isinstance(part, CommandPart):
        return _fenced(part.code)
    texts: list[str] = []
    for is_code, body in _segments(part.markdown):
        chunks = _fenced(body) if is_code else [c.strip("\n") for c in _chunks(body, MAX_SECTION_CHARS)]
        texts.extend(c for c in chunks if c.strip())
    return texts


def _mrkdwn(text: str, verbatim: bool) -> MarkdownTextObject:
    return MarkdownTextObject(text=_clip(text, MAX_SECTION_CHARS), verbatim=True if verbatim else None)


def _section(text: str, *, verbatim: bool = False) -> dict[str, Any]:
    return SectionBlock(text=_mrkdwn(text, verbatim)).to_dict()


def _context(*texts: str, verbatim: bool = False) -> dict[str, Any]:
    return ContextBlock(elements=[_mrkdwn(t, verbatim) for t in texts]).to_dict()


def _payload(blocks: list[dict[str, Any]], text: str, *, share: bool = False) -> dict[str, Any]:
    return {"response_type": "in_channel" if share else "ephemeral",
            "text": _clip(text.strip() or "OpenKruise FAQ", MAX_SECTION_CHARS), "blocks": blocks[:MAX_BLOCKS]}


def _alternative_lines(alternatives: Sequence[Alternative], skip: str | None = None) -> list[str]:
    lines: list[str] = []
    for alt in alternatives:
        line = f"• {escape_mrkdwn(_clip(_flat(alt.translated_question or alt.question), _MAX_QUESTION_CHARS))}"
        if alt.id != skip and alt.question.strip() and line not in lines and len(lines) < MAX_ALTERNATIVES:
            lines.append(line)
    return lines


def _button(text: str, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(text=PlainTextObject(text=_clip(_flat(text), MAX_BUTTON_TEXT) or "…", emoji=True),
                         action_id=action_id, value=value[:MAX_BUTTON_VALUE], style=style)


def _alternative_buttons(answer: Answer, skip: str | None = None) -> list[dict[str, Any]]:
    """The alternatives as buttons that ask them (value: the answer's and the entry's ids, as JSON)."""
    buttons: list[ButtonElement] = []
    seen: set[str] = set()
    for alt in answer.alternatives:
        label = _flat(alt.translated_question or alt.question)
        if alt.id == skip or not label or label in seen or len(buttons) >= MAX_ALTERNATIVES:
            continue
        seen.add(label)
        # "lang": the click asks the translated question, so the reply comes in the asker's language too
        value = json_dumps({"answer_id": answer.answer_id, "entry_id": alt.id}
                           | ({"lang": "en"} if alt.translated_question else {}))
        if len(value) <= MAX_BUTTON_VALUE:
            buttons.append(_button(label, f"{ASK_ALTERNATIVE}_{len(buttons)}", value))
    return [ActionsBlock(block_id="alternatives", elements=buttons).to_dict()] if buttons else []


def feedback_block(answer_id: str) -> dict[str, Any]:
    """👍 / 👎 on the answer (value: its ``answer_id``)."""
    return ActionsBlock(block_id="feedback", elements=[
        _button("👍 有帮助 / Helpful", FEEDBACK_YES, answer_id),
        _button("👎 没帮助 / Not helpful", FEEDBACK_NO, answer_id),
    ]).to_dict()


def json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- replies


def render_answer(answer: Answer, *, share: bool = False) -> dict[str, Any]:
    """The reply to a question: the match (header, section and confidence, the parts in order,
    "did you mean"), or, without one, a "not found" with the nearest questions. ``share`` posts it
    in the channel; by default only the asker sees it."""
    asked = _clip(_flat(answer.question), _MAX_QUESTION_CHARS)
    match = answer.match
    if match is None:
        return _render_no_match(asked, answer, share=share)

    shown = match.translation  # English askers read the maintained translation first
    parts = shown.answer if shown else match.answer
    title = _flat(shown.question if shown else match.question) or asked or "OpenKruise FAQ"
    meta = [f"📂 {escape_mrkdwn(_flat(match.section))}"] if match.section.strip() else []
    meta.append(f"置信度 Confidence {round(match.confidence * 100)}%")
    if shown:
        meta.append("Translated from the Chinese FAQ")
    context = [" · ".join(meta)]
    if asked and asked != title:
        context.append(f"你的问题 / You asked: {escape_mrkdwn(asked)}")
    head = [HeaderBlock(text=PlainTextObject(text=_clip(title, MAX_HEADER_CHARS), emoji=True)).to_dict(),
            _context(*context, verbatim=True)]

    body = [_section(text) for part in parts for text in _section_texts(part)]
    body = body or [_section("_（该条目没有答案内容 / This entry has no answer text.）_")]
    tail: list[dict[str, Any]] = []
    if shown:  # the original, one block away (its commands are the ones above)
        original = "\n".join(_plain(tree(p.markdown)).strip() for p in match.answer if isinstance(p, TextPart))
        tail.append(_context(f"*原文 / Original:* {escape_mrkdwn(_flat(match.question))}\n"
                             f"{escape_mrkdwn(original)}", verbatim=True))
    if lines := _alternative_lines(answer.alternatives, match.id):
        tail += [DividerBlock().to_dict(), _context("你是不是想问 / Did you mean:\n" + "\n".join(lines)),
                 *_alternative_buttons(answer, match.id)]
    tail.append(feedback_block(answer.answer_id))
    room = MAX_BLOCKS - len(head) - len(tail)
    if len(body) > room:
        body = body[: room - 1]
        tail.append(_context(f"✂️ 回答过长，已截断（Slack 单条消息最多 {MAX_BLOCKS} 个区块）。"
                             f" / The answer was shortened to fit Slack's {MAX_BLOCKS}-block limit."))

    prose = "\n".join(_plain(tree(p.markdown)) for p in parts if isinstance(p, TextPart))
    summary = [title, *[line.strip() for line in prose.splitlines() if line.strip()][:3]]
    return _payload(head + body + tail, "\n".join(escape_mrkdwn(_clip(s, 500)) for s in summary), share=share)


def _render_no_match(asked: str, answer: Answer, *, share: bool) -> dict[str, Any]:
    quoted = escape_mrkdwn(asked)
    blocks = [_section(f"🤔 在 FAQ 中没有找到与“{quoted}”相符的答案。\n"
                       f"No good answer was found in the FAQ for “{quoted}”.", verbatim=True)]
    if lines := _alternative_lines(answer.alternatives):
        blocks.append(_section("*最接近的问题 / Nearest questions:*\n" + "\n".join(lines)))
        blocks += _alternative_buttons(answer)
    blocks.append(_context("换个说法或换用中/英文关键词再试试 / Try rephrasing or other keywords."))
    blocks.append(feedback_block(answer.answer_id))
    return _payload(blocks, f"没有找到相符的答案 / No good answer found in the FAQ for “{quoted}”.", share=share)


def render_usage(command: str = "/kruise-faq") -> dict[str, Any]:
    cmd = escape_mrkdwn(command.strip() or "/kruise-faq")
    text = (f"*OpenKruise FAQ* — 用 `{cmd}` 提问，中文或英文都可以。 / Ask the OpenKruise FAQ, in Chinese or English.\n"
            f"• `{cmd} 原地升级能改 CPU 吗` — 提问，回答只有你能看到 / ask; only you see the answer\n"
            f"• `{cmd} can in-place update change CPU?` — English works too\n"
            f"• `{cmd} share &lt;问题 question&gt;` — 把回答发到频道，所有人可见 / post the answer to the channel\n"
            f"• `{cmd} help` — 显示本帮助 / show this help")
    return _payload([_section(text)],
                    f"用法 / Usage: {cmd} &lt;问题 question&gt; · {cmd} share &lt;问题&gt; · {cmd} help")


def render_error(message: str) -> dict[str, Any]:
    shown = f"⚠️ {escape_mrkdwn(message.strip() or '出错了 / Something went wrong.')}"
    return _payload([_section(shown, verbatim=True)], shown)



def render_notice(message: str) -> dict[str, Any]:
    """A short message (e.g. the thanks for a feedback), without the warning sign of :func:`render_error`."""
    shown = escape_mrkdwn(message.strip() or "OpenKruise FAQ")
    return _payload([_section(shown, verbatim=True)], shown)
