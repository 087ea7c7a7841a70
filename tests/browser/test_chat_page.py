"""The chat page in headless Chromium, against the real engine on the real FAQ."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import ANSWER_TIMEOUT, CHROMIUM, SKIP_REASON, BrowserPage, ask, screenshot

if not CHROMIUM.exists():
    pytest.skip(SKIP_REASON, allow_module_level=True)

from playwright.sync_api import expect

PLACEHOLDER_EN = "Ask a question about OpenKruise…"
PLACEHOLDER_ZH = "输入关于 OpenKruise 的问题…"


def expected(chat: BrowserPage, question: str) -> dict[str, Any]:
    """What the engine answers (the same engine the server uses), as JSON."""
    return dict(chat.server.engine.ask(question).model_dump(mode="json"))


def commands_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The command parts of an answer's match, in order."""
    return [p for p in answer["match"]["answer"] if p["type"] == "command"]


def test_chinese_question_answered_with_the_faq_question(new_page: Callable[..., BrowserPage]) -> None:
    chat = new_page(locale="zh-CN")
    chat.open()
    page = chat.page
    box = page.locator("#question")
    # a Chinese browser gets the Chinese interface
    expect(box).to_have_attribute("placeholder", PLACEHOLDER_ZH)
    expect(box).to_be_focused()

    question = "原地升级能改 CPU 和内存吗？"
    bot = ask(page, question)

    expect(bot).to_have_attribute("data-state", "answer")
    expect(bot.locator(".match-question")).to_have_text("原地更新有哪些限制？")
    expect(page.locator("#log .msg.user")).to_have_text([question])
    expect(page.locator("#log .msg.user")).to_have_attribute("lang", "zh-CN")
    expect(bot.locator(".answer-body")).to_contain_text("InPlaceWorkloadVerticalScaling")
    expect(bot.locator(".confidence .confidence-label")).to_have_text("置信度")
    expect(bot.locator(".confidence .confidence-value")).to_have_text(re.compile(r"^\d{1,3}%$"))
    expect(page.locator("#empty")).to_be_hidden()
    # the input keeps the focus and is cleared for the next question
    expect(box).to_be_focused()
    expect(box).to_have_value("")
    expect(page.locator("#send")).to_be_enabled()
    screenshot(page, "chat-zh.png")


def test_html_lang_follows_the_interface_language_from_the_start(new_page: Callable[..., BrowserPage]) -> None:
    chat = new_page(locale="zh-CN")
    chat.open()
    page = chat.page
    html = page.locator("html")
    switch = page.locator("#lang-switch")
    expect(page.locator("#question")).to_have_attribute("placeholder", PLACEHOLDER_ZH)
    expect(html).to_have_attribute("lang", "zh-CN")
    # the switch names the other language, in that language
    expect(switch).to_have_attribute("lang", "en")
    switch.click()
    expect(html).to_have_attribute("lang", "en")
    expect(switch).to_have_attribute("lang", "zh")
    switch.click()
    expect(html).to_have_attribute("lang", "zh-CN")


def test_chinese_answer_shows_its_text_and_commands_in_order(new_page: Callable[..., BrowserPage]) -> None:
    """A real entry with Chinese text around a shell block: the parts in the FAQ's order."""
    chat = new_page(locale="zh-CN", viewport={"width": 900, "height": 900})
    chat.open()
    page = chat.page
    question = "用 Helm 卸载 Kruise 报错 kruise-finalizer BackoffLimitExceeded"
    want = expected(chat, question)
    assert want["match"] is not None, "the engine has no answer for the uninstall question"
    parts = want["match"]["answer"]
    assert [p["type"] for p in parts].count("command") >= 1 and parts[0]["type"] == "text"

    bot = ask(page, question)
    expect(bot).to_have_attribute("data-state", "answer")
    expect(bot.locator(".match-question")).to_have_text(want["match"]["question"])
    body = bot.locator(".answer-body")
    expect(body).to_have_attribute("lang", "zh-CN")
    blocks = body.locator(".command")
    expect(blocks).to_have_count(len(commands_of(want)))
    assert [b.locator("pre code").text_content() for b in blocks.all()] == [c["code"] for c in commands_of(want)]
    expect(blocks.first.locator(".command-lang")).to_have_text(commands_of(want)[0]["language"])
    expect(blocks.first.locator("button.copy")).to_have_text("复制")
    # each command sits between the text before it and the text after it, as in the FAQ
    kinds = body.evaluate("b => Array.from(b.children).map(n => n.classList.contains('command') ? 'command' : 'text')")
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1] or k == "command"]
    assert collapsed == [p["type"] for p in parts]
    screenshot(page, "chat-zh-commands.png")


def test_copy_button_copies_the_command_verbatim(chat: BrowserPage) -> None:
    page = chat.page
    question = "How do I inject a sidecar into existing pods?"
    want = expected(chat, question)
    assert want["match"] is not None, "the engine has no answer for the sidecar question"
    commands = commands_of(want)
    assert commands, "the sidecar entry is expected to carry a command block"
    code = commands[0]["code"]

    bot = ask(page, question)
    expect(bot).to_have_attribute("data-state", "answer")
    shown = bot.locator(".entry-view:visible")  # an English question: the translation, with the same commands
    expect(shown.locator(".match-question")).to_have_text(want["match"]["translation"]["question"])
    blocks = shown.locator(".command")
    expect(blocks).to_have_count(len(commands))
    first = blocks.first
    expect(first).to_have_attribute("data-language", commands[0]["language"])
    assert first.locator("pre code").text_content() == code

    button = first.locator("button.copy")
    expect(button).to_have_text("Copy")
    button.click()
    expect(button).to_have_text("Copied")
    expect(button).to_have_class(re.compile(r"\bis-copied\b"))
    assert page.evaluate("navigator.clipboard.readText()") == code
    expect(page.locator("#status")).to_have_text("Code copied to the clipboard")
    # the feedback goes away again (after 2 s)
    expect(button).to_have_text("Copy", timeout=5_000)


def test_english_question_about_preparing_update(chat: BrowserPage) -> None:
    page = chat.page
    question = "pod stuck in PreparingUpdate"
    want = expected(chat, question)
    bot = ask(page, question)
    expect(bot).to_have_attribute("data-state", "answer")
    title = bot.locator(".match-question").first
    expect(title).to_contain_text("PreparingUpdate")
    expect(title).to_have_text(want["match"]["translation"]["question"])  # English first: the translation
    expect(page.locator("#log .msg.user")).to_have_attribute("lang", "en")


def test_an_english_answer_shows_the_translation_with_the_original_one_click_away(chat: BrowserPage) -> None:
    page = chat.page
    question = "How do I inject a sidecar into existing pods?"
    want = expected(chat, question)
    translation = want["match"]["translation"]
    assert translation is not None and want["match"]["question"] != translation["question"]
    bot = ask(page, question)
    views = bot.locator(".entry-view")
    expect(views).to_have_count(2)
    shown, original = views.nth(0), views.nth(1)
    expect(shown).to_be_visible()
    expect(original).to_be_hidden()
    expect(shown.locator(".match-question")).to_have_text(translation["question"])
    expect(shown.locator(".answer-body")).to_contain_text("SidecarSet automatically injects")
    # the commands are the original's, in the translation too
    expect(shown.locator("pre code")).to_have_text([p["code"] for p in commands_of(want)])
    toggle = bot.locator(".translation-note button")
    expect(bot.locator(".translation-note")).to_contain_text("Translated from the Chinese FAQ")
    toggle.click()
    expect(shown).to_be_hidden()
    expect(original).to_be_visible()
    expect(original.locator(".match-question")).to_have_text(want["match"]["question"])
    expect(original.locator(".match-question")).to_have_attribute("lang", "zh-CN")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    screenshot(page, "chat-en-original.png")
    toggle.click()
    expect(shown).to_be_visible()
    expect(original).to_be_hidden()
    # a Chinese question shows the original alone
    zh = ask(page, "如何向现有 Pod 注入边车？")
    expect(zh.locator(".entry-view")).to_have_count(1)
    expect(zh.locator(".translation-note")).to_have_count(0)


def test_clicking_an_alternative_asks_it(chat: BrowserPage) -> None:
    page = chat.page
    question = "pod stuck in PreparingUpdate"
    want = expected(chat, question)
    assert want["alternatives"], "the engine offers no alternatives for this question"

    bot = ask(page, question)
    expect(bot).to_have_attribute("data-state", "answer")
    alts = bot.locator("button.alt")
    # in the asker's language where a translation is kept (this question is English)
    expect(alts).to_have_text([a["translated_question"] or a["question"] for a in want["alternatives"]])
    expect(bot.locator(".alts-label")).to_have_text("Did you mean:")

    alt = alts.first
    alt_question = want["alternatives"][0]["translated_question"] or want["alternatives"][0]["question"]
    expect(alt).to_have_attribute("data-id", want["alternatives"][0]["id"])
    alt.click()

    users = page.locator("#log .msg.user")
    expect(users).to_have_text([question, alt_question])
    bots = page.locator("#log .msg.bot")
    expect(bots).to_have_count(2)
    second = bots.nth(1)
    expect(second).to_have_attribute("data-state", "answer", timeout=ANSWER_TIMEOUT)
    expect(second.locator(".entry-view:visible .match-question")).to_have_text(alt_question)
    # the first answer is left as it was
    first_shown = (want["match"]["translation"] or want["match"])["question"]
    expect(bot.locator(".entry-view:visible .match-question")).to_have_text(first_shown)


def test_off_topic_question_gets_no_answer_and_the_nearest_questions(chat: BrowserPage) -> None:
    page = chat.page
    question = "how do I bake bread"
    want = expected(chat, question)
    assert want["match"] is None, "the engine answers an off-topic question"
    assert want["alternatives"], "the engine offers no nearest questions"

    bot = ask(page, question)
    expect(bot).to_have_attribute("data-state", "noanswer")
    expect(bot.locator(".match-question")).to_have_count(0)
    expect(bot.locator(".noanswer-title")).to_contain_text("There is no good answer to this in the FAQ.")
    expect(bot.locator(".alts-label")).to_have_text("The nearest questions are:")
    expect(bot.locator("button.alt")).to_have_text([a["translated_question"] or a["question"]
                                                     for a in want["alternatives"]])
    expect(page.locator("#question")).to_be_focused()


def test_html_in_the_question_is_shown_as_text(chat: BrowserPage) -> None:
    page = chat.page
    question = "<script>alert(1)</script><img src=x onerror=alert(1)>"
    bot = ask(page, question)
    expect(bot).to_have_attribute("data-state", re.compile(r"^(answer|noanswer)$"))

    user = page.locator("#log .msg.user")
    expect(user).to_have_count(1)
    assert user.evaluate("n => n.textContent") == question
    assert user.evaluate("n => n.children.length") == 0
    expect(page.locator("#log img")).to_have_count(0)
    expect(page.locator("#log script")).to_have_count(0)
    assert page.locator("script").count() == 1  # the page's own app.js, nothing injected
    page.wait_for_timeout(300)  # give an injected handler the chance to fire
    assert chat.problems.dialogs == []
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_language_switch_changes_the_interface_and_persists(chat: BrowserPage) -> None:
    page = chat.page
    box = page.locator("#question")
    switch = page.locator("#lang-switch")
    expect(box).to_have_attribute("placeholder", PLACEHOLDER_EN)
    expect(switch).to_have_text("中文")
    expect(page.locator("#send .send-label")).to_have_text("Send")
    expect(page.locator("#empty-title")).to_have_text("Ask the OpenKruise FAQ")
    expect(page.locator("html")).to_have_attribute("lang", "en")

    switch.click()
    expect(box).to_have_attribute("placeholder", PLACEHOLDER_ZH)
    expect(switch).to_have_text("English")
    expect(switch).to_have_attribute("aria-label", "Switch to English")
    expect(page.locator("#send .send-label")).to_have_text("发送")
    expect(page.locator("#empty-title")).to_have_text("向 OpenKruise FAQ 提问")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

    page.reload()
    expect(page.locator("#question")).to_have_attribute("placeholder", PLACEHOLDER_ZH)
    expect(page.locator("#lang-switch")).to_have_text("English")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

    # interface text already on screen in a message follows the switch too
    bot = ask(page, "pod stuck in PreparingUpdate")
    expect(bot.locator(".confidence-label")).to_have_text("置信度")
    page.locator("#lang-switch").click()
    expect(bot.locator(".confidence-label")).to_have_text("Confidence")
    expect(page.locator("#question")).to_have_attribute("placeholder", PLACEHOLDER_EN)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.reload()
    expect(page.locator("#question")).to_have_attribute("placeholder", PLACEHOLDER_EN)
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_phone_width_has_no_horizontal_scroll(new_page: Callable[..., BrowserPage]) -> None:
    chat = new_page(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True,
                    device_scale_factor=2)
    chat.open()
    page = chat.page
    assert page.evaluate("window.innerWidth") == 375
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    # the answer with the long YAML block is the widest content there is
    chip = page.locator(".chip", has_text="如何向现有 Pod 注入边车？")
    chip.tap()
    bot = page.locator("#log .msg.bot").first
    expect(bot).to_have_attribute("data-state", "answer", timeout=ANSWER_TIMEOUT)
    expect(bot.locator(".command")).to_have_count(1)
    page.wait_for_timeout(400)  # let the smooth scroll finish before measuring and the screenshot

    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.evaluate("document.body.scrollWidth") <= 375
    # the code block scrolls inside itself instead of widening the page
    box = bot.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    pre = bot.locator(".command pre")
    pre_box = pre.bounding_box()
    assert pre_box is not None and pre_box["x"] + pre_box["width"] <= 375
    assert pre.evaluate("n => getComputedStyle(n).overflowX") in ("auto", "scroll")
    screenshot(page, "chat-phone.png")


def test_server_error_is_shown_in_the_chat(chat: BrowserPage) -> None:
    page = chat.page
    chat.problems.allow_failed_request("/api/ask")
    body = {"error": {"code": "rate_limited", "message": "too many requests"}}
    requests: list[Any] = []

    def fulfil(route: Any) -> None:
        requests.append(route.request.post_data_json)
        route.fulfill(status=429, content_type="application/json", headers={"Retry-After": "7"},
                      body=json.dumps(body))

    page.route("**/api/ask", fulfil)
    question = "原地升级能改 CPU 和内存吗？"
    bot = ask(page, question)

    expect(bot).to_have_attribute("data-state", "error")
    expect(bot.locator(".error-prefix")).to_have_text("Error:")
    expect(bot.locator(".error-message")).to_have_text("too many requests")
    expect(bot.locator(".error-detail")).to_have_text("Try again in 7 s.")
    expect(bot.locator(".error-code")).to_have_text("rate_limited")
    expect(bot.locator("button.retry")).to_have_text("Retry")
    user = page.locator("#log .msg.user")
    expect(user).to_have_text([question])
    expect(user).to_be_visible()
    assert requests == [{"question": question, "top_k": 3, "tree": True}]
    expect(page.locator("#send")).to_be_enabled()

    # Retry asks again; this time the server answers
    page.unroute("**/api/ask")
    bot.locator("button.retry").click()
    retried = page.locator("#log .msg.bot").nth(1)
    expect(retried).to_have_attribute("data-state", "answer", timeout=ANSWER_TIMEOUT)
    expect(retried.locator(".match-question")).to_have_text("原地更新有哪些限制？")


def test_page_has_a_content_security_policy_without_inline_scripts(chat: BrowserPage) -> None:
    response = chat.page.goto(chat.server.url + "/")
    assert response is not None and response.status == 200
    csp = response.headers.get("content-security-policy")
    assert csp, "the page is served without a Content-Security-Policy header"
    directives = {}
    for part in csp.split(";"):
        tokens = part.split()
        if tokens:
            directives[tokens[0].lower()] = tokens[1:]
    script_src = directives.get("script-src", directives.get("default-src"))
    assert script_src is not None, f"no script-src nor default-src in {csp!r}"
    assert "'unsafe-inline'" not in script_src, csp
    assert "'unsafe-eval'" not in script_src, csp
    assert "*" not in script_src, csp
    assert directives.get("object-src") == ["'none'"], csp
    # and the page really runs under it: the script is a file, no inline script, no inline handler
    assert chat.page.evaluate(
        "Array.from(document.scripts).every(s => s.src && !s.textContent.trim())") is True
    assert chat.page.locator("[onclick],[onload],[onerror],[onsubmit]").count() == 0


def test_api_docs_render_offline_under_the_csp(new_page: Callable[..., BrowserPage]) -> None:
    """/docs draws Swagger UI from local assets (no CDN), with the examples, and no CSP violation."""
    bp = new_page()
    bp.open("/docs")
    expect(bp.page.locator(".opblock").first).to_be_visible(timeout=ANSWER_TIMEOUT)
    expect(bp.page.locator("#operations-api-post_ask_api_ask_post")).to_be_visible()
    bp.page.click("#operations-api-post_ask_api_ask_post .opblock-summary-control")
    expect(bp.page.locator("#operations-api-post_ask_api_ask_post")).to_contain_text("原地升级能改 CPU 和内存吗")
