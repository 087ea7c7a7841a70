"""The one markdown reading of the project (markdown-it-py): an answer into parts, and text into a
syntax tree that the chat page and the Slack renderer walk.

CommonMark with tables and strikethrough; raw HTML is text, never markup. Link targets outside
http(s) and mailto are not links: the tree keeps their text only.
"""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from qa.contract import CommandPart, Node, Part, TextPart

SAFE_SCHEMES = ("http://", "https://", "mailto:")


class _Markdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:  # noqa: N802 (markdown-it's name)
        # markdown-it leaves a refused link as literal "[text](url)"; accepting every target here
        # lets the tree keep just the text of an unsafe one (see safe_href).
        return True


_MD = _Markdown("commonmark", {"html": False}).enable(["table", "strikethrough"])

# markdown-it's names → the tree's (kept short and framework-neutral).
_BLOCKS = {"paragraph": "paragraph", "heading": "heading", "bullet_list": "bullet_list",
           "ordered_list": "ordered_list", "list_item": "list_item", "blockquote": "blockquote", "hr": "hr",
           "table": "table", "thead": "thead", "tbody": "tbody", "tr": "tr", "th": "th", "td": "td",
           "strong": "strong", "em": "em", "s": "s", "softbreak": "softbreak", "hardbreak": "hardbreak"}


def safe_href(href: str) -> str | None:
    """The link target when its scheme is one the surfaces may link to, else None."""
    url = href.strip()
    return url if url.lower().startswith(SAFE_SCHEMES) else None


def split_parts(md: str) -> tuple[Part, ...]:
    """Splits answer markdown into text parts and command parts (one per fenced block), in order.

    Text between fences keeps its markdown as written (blank edges trimmed); a fence's language
    is its info string's first word, lowercased, or ``text``.
    """
    lines = md.splitlines()
    parts: list[Part] = []
    at = 0

    def text_until(end: int) -> None:
        chunk = "\n".join(lines[at:end]).strip("\n")
        if chunk.strip():
            parts.append(TextPart(markdown=chunk.rstrip()))

    for tok in _MD.parse(md):
        if tok.type != "fence" or tok.map is None:
            continue
        start, end = tok.map
        text_until(start)
        info = tok.info.split()
        parts.append(CommandPart(language=info[0].lower() if info else "text", code=tok.content.rstrip("\n")))
        at = end
    text_until(len(lines))
    return tuple(parts)


@lru_cache(maxsize=4096)
def tree(md: str) -> tuple[Node, ...]:
    """The markdown as a syntax tree of :class:`~qa.contract.Node` (memoised: answers repeat)."""
    return tuple(n for child in SyntaxTreeNode(_MD.parse(md)).children for n in _nodes(child))


def _nodes(node: SyntaxTreeNode) -> list[Node]:
    kind = node.type
    if kind == "inline":
        return [n for child in node.children for n in _nodes(child)]
    if kind == "text":
        return [Node(type="text", text=node.content)] if node.content else []
    if kind == "html_inline" or kind == "html_block":
        return [Node(type="text", text=node.content)]
    if kind == "code_inline":
        return [Node(type="code", text=node.content)]
    if kind in ("code_block", "fence"):
        return [Node(type="code_block", text=node.content.rstrip("\n"))]
    if kind in ("link", "image"):
        label = [n for child in node.children for n in _nodes(child)]
        if kind == "image":
            label = [Node(type="text", text=str(node.attrs.get("alt", "")) or node.content)]
        href = safe_href(str(node.attrs.get("href" if kind == "link" else "src", "")))
        return [Node(type="link", href=href, children=tuple(label))] if href else label
    children = tuple(n for child in node.children for n in _nodes(child))
    if kind == "heading":
        return [Node(type="heading", level=int(node.tag[1:]), children=children)]
    if kind == "ordered_list":
        start = node.attrs.get("start")
        return [Node(type="ordered_list", start=int(start) if start is not None else None, children=children)]
    name = _BLOCKS.get(kind)
    if name is None or (kind == "paragraph" and node.hidden):  # a tight list's paragraphs: no box of their own
        return list(children)
        return list(children)
    return [Node(type=name, children=children or None)]
