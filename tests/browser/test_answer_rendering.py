"""How the chat page draws an answer: the DOM structure built from the server's syntax tree.

The answers come from ``structure_faq.md`` (served with the HashEncoder, see the
``structure_server`` fixture), whose entries hold every construct the page draws; the last
tests hand the page crafted trees, to check what the server would never send.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import CHROMIUM, SKIP_REASON, BrowserPage, LiveServer, ask, screenshot

if not CHROMIUM.exists():
    pytest.skip(SKIP_REASON, allow_module_level=True)

from playwright.sync_api import Locator, Page, expect

Q_LISTS = "How does the page show lists, emphasis and links?"
Q_ZH = "如何检查原地升级的进度？"
Q_BLOCKS = "Which other blocks can an answer hold?"

# What each child of .answer-body is: its tag, or "command:<language>" for a command block.
CHILDREN = """b => Array.from(b.children).map(n =>
    n.classList.contains('command') ? 'command:' + (n.getAttribute('data-language') || '') : n.tagName.toLowerCase())"""


@pytest.fixture
def page_on(new_page: Callable[..., BrowserPage], structure_server: LiveServer) -> Callable[..., BrowserPage]:
    """Opens the chat page of the structure server."""
    def make(**options: Any) -> BrowserPage:
        bp = new_page(server=structure_server, **options)
        bp.open()
        return bp
    return make


def answer_of(bp: BrowserPage, question: str) -> dict[str, Any]:
    """The structure engine's answer, as JSON."""
    answer = dict(bp.server.engine.ask(question).model_dump(mode="json"))
    assert answer["match"] is not None and answer["match"]["question"] == question, answer
    return answer


def body_of(page: Page, question: str) -> Locator:
    bot = ask(page, question)
    expect(bot).to_have_attribute("data-state", "answer")
    expect(bot.locator(".match-question")).to_have_text(question)
    return bot.locator(".answer-body")


def test_lists_emphasis_code_and_links_render_as_elements(page_on: Callable[..., BrowserPage]) -> None:
    bp = page_on(viewport={"width": 1000, "height": 1100})
    body = body_of(bp.page, Q_LISTS)

    # the parts in order: text, bash, text, yaml, text — each text part as its blocks
    assert body.evaluate(CHILDREN) == ["p", "p", "ul", "p", "command:bash", "p", "ol", "command:yaml", "p"]

    # a bullet list is ul > li, with its nested list inside the item
    items = body.locator(":scope > ul > li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_text("a point")
    expect(items.nth(1).locator(":scope > code")).to_have_text("kubectl")
    expect(items.nth(1).locator(":scope > strong")).to_have_text("bold")
    expect(items.nth(1).locator(":scope > ul > li")).to_have_text(["a nested point"])
    # a tight list has no paragraph boxes in its items
    expect(body.locator("li > p")).to_have_count(0)

    # an ordered list keeps its start number
    ol = body.locator(":scope > ol")
    expect(ol).to_have_attribute("start", "3")
    expect(ol.locator(":scope > li")).to_have_text(["Get the pods", "Watch the rollout"])
    expect(ol.locator("li > strong")).to_have_text("rollout")

    # inline marks
    first = body.locator(":scope > p").first
    expect(first.locator(":scope > strong")).to_have_text("bold words")
    expect(first.locator(":scope > em")).to_have_text("emphasis")
    expect(first.locator(":scope > s")).to_have_text("struck text")
    expect(first.locator(":scope > code")).to_have_text("inline-code")
    # a wrapped line reads as one line with a space, not a break
    expect(first).to_contain_text("from the server's tree. Read the OpenKruise docs")
    expect(first.locator("br")).to_have_count(0)

    # links: only http(s) and mailto, opened apart from the page
    links = body.locator("a")
    expect(links).to_have_count(2)
    docs = first.locator("a", has_text="the OpenKruise docs")
    expect(docs).to_have_attribute("href", "https://openkruise.io/docs/")
    expect(docs).to_have_attribute("rel", "noopener noreferrer")
    expect(docs).to_have_attribute("target", "_blank")
    expect(first.locator("a[href='mailto:faq@example.com']")).to_have_text("faq@example.com")
    # the javascript: link is its text, not a link
    expect(first).to_contain_text("a hostile link stays text.")
    expect(body.locator("a", has_text="hostile link")).to_have_count(0)
    expect(bp.page.locator("a[href^='javascript' i]")).to_have_count(0)
    # nothing in the answer came from parsing HTML
    assert body.evaluate("b => b.querySelectorAll('script, img, iframe, [style], [onclick], [onerror]').length") == 0
    bp.page.wait_for_timeout(400)  # let the smooth scroll finish before the screenshot
    screenshot(bp.page, "answer-en-structure.png")


def test_command_parts_are_copyable_blocks_in_the_answers_order(page_on: Callable[..., BrowserPage]) -> None:
    bp = page_on()
    page = bp.page
    commands = [p for p in answer_of(bp, Q_LISTS)["match"]["answer"] if p["type"] == "command"]
    body = body_of(page, Q_LISTS)

    blocks = body.locator(".command")
    expect(blocks).to_have_count(2)
    assert [b.locator("pre code").text_content() for b in blocks.all()] == [c["code"] for c in commands]
    expect(blocks.locator(".command-lang")).to_have_text(["bash", "yaml"])
    # "Install it:" comes right before the bash block, "Then check it:" right after it
    assert blocks.nth(0).evaluate("n => n.previousElementSibling.textContent") == "Install it:"
    assert blocks.nth(0).evaluate("n => n.nextElementSibling.textContent") == "Then check it:"
    assert blocks.nth(1).evaluate("n => n.nextElementSibling.textContent") == "Done."

    button = blocks.nth(1).locator("button.copy")
    expect(button).to_have_text("Copy")
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == commands[1]["code"]
    # the code is a keyboard-reachable region, named by its language
    expect(blocks.nth(0).locator("pre")).to_have_attribute("tabindex", "0")
    expect(blocks.nth(0).locator("pre")).to_have_attribute("aria-label", "bash")


def test_chinese_answer_with_commands(page_on: Callable[..., BrowserPage]) -> None:
    bp = page_on(locale="zh-CN", viewport={"width": 900, "height": 800})
    page = bp.page
    body = body_of(page, Q_ZH)

    expect(body).to_have_attribute("lang", "zh-CN")
    assert body.evaluate(CHILDREN) == ["p", "ul", "p", "command:bash", "p"]
    first = body.locator(":scope > p").first
    expect(first.locator("strong")).to_have_text("CloneSet")
    # a line wrapped between two Chinese characters joins without a space
    expect(first).to_have_text("先确认 CloneSet 的状态，再看 Pod 的事件。原地升级不会重建 Pod，所以 Pod 名字和 IP 都不变。")
    expect(body.locator(":scope > ul > li > code")).to_have_text(["status.updatedReplicas",
                                                                 "status.updatedReadyReplicas"])
    block = body.locator(".command")
    expect(block.locator(".command-lang")).to_have_text("bash")
    expect(block.locator("button.copy")).to_have_text("复制")
    expect(body.locator("a")).to_have_attribute("href", "https://openkruise.io/zh/docs/core-concepts/inplace-update")
    expect(body.locator("a")).to_have_text("原地升级文档")
    page.wait_for_timeout(400)  # let the smooth scroll finish before the screenshot
    screenshot(page, "answer-zh-structure.png")


def test_quote_table_rule_and_unnamed_code(page_on: Callable[..., BrowserPage]) -> None:
    bp = page_on(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = bp.page
    body = body_of(page, Q_BLOCKS)

    assert body.evaluate(CHILDREN) == ["p", "blockquote", "div", "hr", "command:", "command:text"]
    expect(body.locator("blockquote > p")).to_have_text("Deleting the CRDs deletes every workload.")
    table = body.locator(".md-table > table")
    expect(table.locator("thead > tr > th")).to_have_text(["Field", "Meaning"])
    expect(table.locator("tbody > tr")).to_have_count(2)
    expect(table.locator("tbody td > code")).to_have_text("partition")
    expect(table.locator("tbody td > strong")).to_have_text("maxUnavailable")
    # code without a language (indented, or a bare fence) is still a copyable block, labelled "code"
    blocks = body.locator(".command")
    expect(blocks.locator(".command-lang")).to_have_text(["code", "code"])
    expect(blocks.locator("pre code")).to_have_text(["indented code line", "plain fence without a language"])
    expect(blocks.locator("button.copy")).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.wait_for_timeout(400)
    screenshot(page, "answer-blocks-phone.png")


# -- crafted trees: what the page does with what the server never sends ----------------------------


def crafted(parts: list[dict[str, Any]]) -> str:
    return json.dumps({"question": "crafted", "language": "en", "alternatives": [], "took_ms": 1.0,
                       "match": {"id": "c0ffee00", "section": "Crafted", "question": "A crafted answer",
                                 "answer": parts, "score": 1.0, "confidence": 0.9}})


def text_part(markdown: str) -> dict[str, Any]:
    """A text part with the server's own tree of the markdown."""
    from qa.markdown import tree

    return {"type": "text", "markdown": markdown, "tree": [n.model_dump(mode="json") for n in tree(markdown)]}


def answer_with(bp: BrowserPage, parts: list[dict[str, Any]]) -> Locator:
    """Asks on a page whose /api/ask answers with these parts; returns the answer's body."""
    bp.page.route("**/api/ask", lambda route: route.fulfill(status=200, content_type="application/json",
                                                            body=crafted(parts)))
    bot = ask(bp.page, "crafted")
    expect(bot).to_have_attribute("data-state", "answer")
    return bot.locator(".answer-body")


def test_headings_render_below_the_question_heading(page_on: Callable[..., BrowserPage]) -> None:
    # (an FAQ answer cannot hold a heading: the FAQ's headings end answers; the tree may still have one)
    bp = page_on()
    body = answer_with(bp, [text_part("# Top heading\n\nText.\n\n### Third *level*\n\n###### Sixth"),
                            {"type": "command", "language": "bash", "code": "kubectl get pods"},
                            text_part("> quoted\n\n---\n\nAfter the rule.")])
    assert body.evaluate(CHILDREN) == ["h3", "p", "h5", "h6", "command:bash", "blockquote", "hr", "p"]
    expect(body.locator("h3.md-h")).to_have_text("Top heading")
    expect(body.locator("h5.md-h > em")).to_have_text("level")
    expect(body.locator("h6.md-h")).to_have_text("Sixth")
    bp.page.wait_for_timeout(400)
    screenshot(bp.page, "answer-headings.png")


def test_unsafe_links_and_markup_in_a_tree_stay_text(page_on: Callable[..., BrowserPage]) -> None:
    bp = page_on()
    page = bp.page

    def link(href: str, text: str) -> dict[str, Any]:
        return {"type": "link", "href": href, "children": [{"type": "text", "text": text}]}

    tree: list[dict[str, Any]] = [{"type": "paragraph", "children": [
        link("javascript:alert(1)", "js"), {"type": "text", "text": " "},
        link(" JaVaScRiPt:alert(2)", "js2"), {"type": "text", "text": " "},
        link("data:text/html,<script>alert(3)</script>", "data"), {"type": "text", "text": " "},
        link("https://ok.example/a b", "spaced"), {"type": "text", "text": " "},
        link("HTTPS://openkruise.io/", "fine"), {"type": "text", "text": " "},
        {"type": "text", "text": "<img src=x onerror=\"window.__xss=1\"><b>not bold</b>"},
        {"type": "code", "text": "<script>window.__xss=2</script>"},
    ]}, {"type": "spoiler", "children": [{"type": "strong", "children": [{"type": "text", "text": "kept"}]}]},
        {"type": "widget", "text": "a leaf of an unknown type"},
        {"type": "code_block", "text": "echo from an indented block"}]
    parts: list[dict[str, Any]] = [{"type": "text", "markdown": "(ignored when there is a tree)", "tree": tree},
             {"type": "command", "language": "bash", "code": "kubectl get pods"},
             {"type": "text", "markdown": "A part **without** a tree is shown as its text."}]
    body = answer_with(bp, parts)

    links = body.locator("a")
    expect(links).to_have_count(1)
    expect(links).to_have_text("fine")
    expect(links).to_have_attribute("href", "HTTPS://openkruise.io/")
    p = body.locator(":scope > p").first
    expect(p).to_contain_text("js js2 data spaced fine <img src=x onerror=\"window.__xss=1\"><b>not bold</b>")
    expect(p.locator("code")).to_have_text("<script>window.__xss=2</script>")
    assert body.evaluate("b => b.querySelectorAll('img, b, script').length") == 0
    # unknown nodes: their children, or their text
    expect(body.locator(":scope > strong")).to_have_text("kept")
    expect(body).to_contain_text("a leaf of an unknown type")
    assert body.evaluate(CHILDREN) == ["p", "strong", "command:", "command:bash", "p"]
    expect(body.locator(".command pre code")).to_have_text(["echo from an indented block", "kubectl get pods"])
    expect(body.locator(":scope > p").last).to_have_text("A part **without** a tree is shown as its text.")
    page.wait_for_timeout(200)
    assert page.evaluate("typeof window.__xss") == "undefined"
