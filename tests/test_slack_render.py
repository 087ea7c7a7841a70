"""Tests for server.slack_render: the tree → mrkdwn writer, escaping and Slack's payload limits."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import ActionsBlock, Block, ContextBlock, DividerBlock, HeaderBlock, SectionBlock

from qa.contract import Alternative, Answer, CommandPart, Match, TextPart, Translation
from qa.markdown import split_parts
from server.slack_render import MAX_BLOCKS, markdown_to_mrkdwn, render_answer, render_error, render_usage

ZWSP = "\u200b"
BLOCK_CLASSES = {"section": SectionBlock, "header": HeaderBlock, "context": ContextBlock, "divider": DividerBlock,
                 "actions": ActionsBlock}
LINK = re.compile(r"<(?:https?://|mailto:)[^<>|\s]+\|[^<>]*>")


def units(text: str) -> int:
    """Length in UTF-16 code units, as Slack counts."""
    return len(text.encode("utf-16-le")) // 2


def alts(*questions: str) -> tuple[Alternative, ...]:
    return tuple(Alternative(id=f"a{i}", question=q, score=1.0 - i / 100) for i, q in enumerate(questions))


def make_answer(
    answer_md: str = "答案。",
    *,
    parts: tuple[TextPart | CommandPart, ...] | None = None,
    question: str = "原地升级能改 CPU 吗",
    matched: str = "原地升级支持修改容器资源吗？",
    section: str = "性能和扩缩",
    confidence: float = 0.87,
    alternatives: tuple[Alternative, ...] = (),
) -> Answer:
    """An answer whose match holds ``answer_md`` split into parts as the FAQ parser does (or ``parts``)."""
    match = Match(id="e1", section=section, question=matched, answer=split_parts(answer_md) if parts is None else parts,
                  score=12.5, confidence=confidence)
    return Answer(answer_id="a1", question=question, language="zh", match=match, alternatives=alternatives,
                  took_ms=1.5)


def no_match(question: str, alternatives: tuple[Alternative, ...] = ()) -> Answer:
    return Answer(answer_id="a2", question=question, language="zh", match=None, alternatives=alternatives,
                  took_ms=2.0)


def texts(payload: dict[str, Any], kinds: tuple[str, ...] = ("section", "context")) -> list[str]:
    """The mrkdwn texts of a payload's blocks, in order."""
    out: list[str] = []
    for block in payload["blocks"]:
        if block["type"] == "section" and "section" in kinds:
            out.append(block["text"]["text"])
        elif block["type"] == "context" and "context" in kinds:
            out.extend(element["text"] for element in block["elements"])
    return out


def assert_valid(payload: dict[str, Any]) -> None:
    """Checks a payload against Slack's rules: slack_sdk's block models, lengths, block count, escaping."""
    assert set(payload) == {"response_type", "text", "blocks"}
    json.dumps(payload)
    assert payload["response_type"] in ("ephemeral", "in_channel")
    assert isinstance(payload["text"], str) and payload["text"].strip()
    assert units(payload["text"]) <= 3000
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= MAX_BLOCKS
    for block in blocks:
        parsed = Block.parse(block)
        assert isinstance(parsed, BLOCK_CLASSES[block["type"]]), block
        assert parsed.to_dict() == block  # to_dict() runs slack_sdk's validators (lengths, required fields)
        if block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert 0 < units(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < units(block["text"]["text"]) <= 150
        if block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            assert all(0 < units(e["text"]) <= 3000 for e in block["elements"])
        if block["type"] == "actions":
            assert 1 <= len(block["elements"]) <= 25
            ids = [e["action_id"] for e in block["elements"]]
            assert len(set(ids)) == len(ids)
            for e in block["elements"]:
                assert e["type"] == "button" and 0 < units(e["text"]["text"]) <= 75
                assert 0 < len(e["value"]) <= 2000
    for text in texts(payload) + [payload["text"]]:
        # No raw angle bracket except those of generated links; no bare & outside entities.
        stripped = re.sub(r"(?m)^>(?: |$)", "", LINK.sub("", text))  # links and quote markers
        assert "<" not in stripped and ">" not in stripped, text
        assert not re.search(r"&(?!amp;|lt;|gt;)", stripped), text
        assert text.count("```") % 2 == 0, text  # every fence is closed


def test_the_validity_check_has_teeth() -> None:
    good = render_answer(make_answer())
    assert_valid(good)
    too_long = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    with pytest.raises(SlackObjectFormationError):
        Block.parse(too_long).to_dict()  # type: ignore[union-attr]
    for bad in ({**good, "blocks": [*good["blocks"][:2], too_long]},
                {**good, "text": "a < b"},
                {**good, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "```\nopen"}}]}):
        with pytest.raises((AssertionError, SlackObjectFormationError)):
            assert_valid(bad)


# --------------------------------------------------------------------------- markdown → mrkdwn


def test_bold_italic_strike_and_inline_code() -> None:
    assert markdown_to_mrkdwn("a **bold** b") == "a *bold* b"
    assert markdown_to_mrkdwn("a __bold__ b") == "a *bold* b"
    assert markdown_to_mrkdwn("a *em* and _em2_ b") == "a _em_ and _em2_ b"
    assert markdown_to_mrkdwn("a ~~gone~~ b") == "a ~gone~ b"
    assert markdown_to_mrkdwn("run `kubectl get pods` now") == "run `kubectl get pods` now"
    assert markdown_to_mrkdwn("a ***both*** b") in ("a _*both*_ b", "a *_both_* b")


def test_markers_next_to_chinese_get_zero_width_spaces_outside_only() -> None:
    assert markdown_to_mrkdwn("使用**原地更新**实现") == f"使用{ZWSP}*原地更新*{ZWSP}实现"
    assert markdown_to_mrkdwn("**支持的字段有限**：仅 image") == f"*支持的字段有限*{ZWSP}：仅 image"
    assert markdown_to_mrkdwn("开启`InPlaceWorkloadVerticalScaling`特性") == (
        f"开启{ZWSP}`InPlaceWorkloadVerticalScaling`{ZWSP}特性")
    assert markdown_to_mrkdwn("删除~~旧的~~新的") == f"删除{ZWSP}~旧的~{ZWSP}新的"
    # Next to spaces, ASCII punctuation and other markers nothing is added.
    assert ZWSP not in markdown_to_mrkdwn("use **in-place** update, `kubectl`. **a**_b_ (*c*)")


def test_links_keep_only_safe_schemes() -> None:
    assert markdown_to_mrkdwn("见[官网](https://openkruise.io/docs)") == "见<https://openkruise.io/docs|官网>"
    assert markdown_to_mrkdwn("[x](http://a.b/c)") == "<http://a.b/c|x>"
    assert markdown_to_mrkdwn("[mail](mailto:a@b.c)") == "<mailto:a@b.c|mail>"
    assert markdown_to_mrkdwn("<https://a.b/x>") == "<https://a.b/x|https://a.b/x>"
    assert markdown_to_mrkdwn("[](https://a.b/?x=1&y=2)") == "<https://a.b/?x=1&amp;y=2|https://a.b/?x=1&amp;y=2>"
    # & in the URL is escaped, | cannot break out of the link.
    assert markdown_to_mrkdwn("[q](https://a.b/?x=1&y=2|3)") == "<https://a.b/?x=1&amp;y=2%7C3|q>"
    for bad in ("javascript:alert(1)", "file:///Users/me/control-plane.md#L36-L36", "/docs/relative", "data:text/html,x"):
        out = markdown_to_mrkdwn(f"检查 [kruise-manager]({bad}) 状态")
        assert out == "检查 kruise-manager 状态", out


def test_link_text_is_escaped_and_flattened() -> None:
    assert markdown_to_mrkdwn("[a <b> & c](https://x.io)") == "<https://x.io|a &lt;b&gt; &amp; c>"
    assert markdown_to_mrkdwn("[**bold** a|b](https://x.io)") == "<https://x.io|bold a¦b>"


def test_escaping_text_and_inline_code() -> None:
    out = markdown_to_mrkdwn("a < b > c & d <script>alert(1)</script> `x<y && z>w`")
    assert out == "a &lt; b &gt; c &amp; d &lt;script&gt;alert(1)&lt;/script&gt; `x&lt;y &amp;&amp; z&gt;w`"
    assert markdown_to_mrkdwn("<!channel> <@U123>") == "&lt;!channel&gt; &lt;@U123&gt;"


def test_lists_quotes_headings() -> None:
    md = "## 标题 **加粗**\n\n说明：\n- **原地更新**\n- 第二项\n  - 嵌套\n\n1. 一\n2. 二\n\n> 注意：\n> 谨慎操作"
    out = markdown_to_mrkdwn(md)
    lines = out.split("\n")
    assert lines[0] == "*标题 加粗*"  # no nested bold markers inside the heading
    assert "• *原地更新*" in lines
    assert "• 第二项" in lines
    assert any(line.strip().startswith("◦ 嵌套") and line.startswith("\u2007") for line in lines)
    assert lines.index("1. 一") + 1 == lines.index("2. 二")
    assert "> 注意：\n> 谨慎操作" in out
    assert "**" not in out and "##" not in out


def test_loose_list_items_keep_their_paragraphs_indented() -> None:
    out = markdown_to_mrkdwn("- 第一段\n\n  第二段\n\n- 下一项")
    assert out == "• 第一段\n\u2007\u2007\u2007第二段\n• 下一项"


def test_ordered_list_keeps_start_number() -> None:
    assert markdown_to_mrkdwn("3. c\n4. d") == "3. c\n4. d"
    assert markdown_to_mrkdwn("0. a\n1. b") == "0. a\n1. b"


def test_table_rows() -> None:
    out = markdown_to_mrkdwn("| 字段 | 说明 |\n|---|---|\n| `image` | **可以** 改 |\n| a<b | c |")
    assert out == "*字段 | 说明*\n`image` | *可以* 改\na&lt;b | c"


def test_backticks_cannot_open_a_fence_from_text() -> None:
    assert "```" not in markdown_to_mrkdwn("literal \\`\\`\\` here and ``a`b``")


def test_indented_code_in_a_text_part_gets_its_own_fenced_section() -> None:
    payload = render_answer(make_answer(parts=(TextPart(markdown="运行：\n\n    kubectl get pods\n\n然后检查。"),)))
    assert_valid(payload)
    assert texts(payload, ("section",)) == ["运行：", "```\nkubectl get pods\n```", "然后检查。"]


# --------------------------------------------------------------------------- render_answer


def test_default_is_ephemeral_and_share_is_in_channel() -> None:
    answer = make_answer()
    assert render_answer(answer)["response_type"] == "ephemeral"
    assert render_answer(answer, share=True)["response_type"] == "in_channel"
    assert render_answer(answer, share=False)["response_type"] == "ephemeral"


def test_match_layout_header_context_parts_in_order_alternatives() -> None:
    answer = make_answer(
        "**A**：支持。\n\n```bash\nkubectl get cloneset\n```\n\n之后检查 `status`。",
        alternatives=(
            Alternative(id="e1", question="原地升级支持修改容器资源吗？", score=12.5),
            Alternative(id="e2", question="CloneSet 如何原地升级？", score=7.0),
            Alternative(id="e3", question="Advanced StatefulSet 和原生 StatefulSet 有什么区别？", score=3.0),
        ),
    )
    assert answer.match is not None
    assert [p.type for p in answer.match.answer] == ["text", "command", "text"]
    payload = render_answer(answer)
    assert_valid(payload)
    blocks = payload["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "原地升级支持修改容器资源吗？", "emoji": True}}
    meta = " ".join(e["text"] for e in blocks[1]["elements"])
    assert "性能和扩缩" in meta and "Confidence 87%" in meta and "原地升级能改 CPU 吗" in meta
    sections = texts(payload, ("section",))
    # Parts in order: text, the command (own section, fence without a language), text.
    assert sections == [f"*A*{ZWSP}：支持。", "```\nkubectl get cloneset\n```", f"之后检查 `status`{ZWSP}。"]
    assert [b["type"] for b in blocks[-4:]] == ["divider", "context", "actions", "actions"]
    alt = blocks[-3]["elements"][0]["text"]
    assert "Did you mean" in alt
    assert "• CloneSet 如何原地升级？" in alt and "Advanced StatefulSet" in alt
    assert "原地升级支持修改容器资源吗" not in alt  # the match itself is not suggested again
    assert payload["text"].startswith("原地升级支持修改容器资源吗？\n")
    assert "A：支持。" in payload["text"] and "kubectl" not in payload["text"]


def test_fallback_text_is_the_title_and_three_lines_of_prose() -> None:
    payload = render_answer(make_answer("说明 **a** & b：\n- 一\n- 二\n- 三\n\n```bash\necho x\n```"))
    assert payload["text"] == "原地升级支持修改容器资源吗？\n说明 a &amp; b：\n一\n二"


def test_command_part_alone_and_after_text() -> None:
    payload = render_answer(make_answer(parts=(TextPart(markdown="执行下面的命令："),
                                               CommandPart(language="bash", code="helm list -A\n"))))
    assert_valid(payload)
    assert texts(payload, ("section",)) == ["执行下面的命令：", "```\nhelm list -A\n```"]
    payload = render_answer(make_answer(parts=(CommandPart(language="text", code="   \n"),)))
    assert texts(payload, ("section",)) == ["_（该条目没有答案内容 / This entry has no answer text.）_"]


def test_escaping_in_question_answer_and_code() -> None:
    nasty = "<script>alert('x')</script> & a < b > c <!channel>"
    payload = render_answer(
        make_answer(
            f"答：{nasty}\n\n```bash\necho '<b>' && test 1 < 2 > /dev/null\n```",
            question=nasty,
            matched=f"问 {nasty}",
            section="A & B <s>",
            alternatives=alts("x < y & z"),
        )
    )
    assert_valid(payload)
    joined = "\n".join(texts(payload)) + "\n" + payload["text"]
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; a &lt; b &gt; c &lt;!channel&gt;" in joined
    assert "```\necho '&lt;b&gt;' &amp;&amp; test 1 &lt; 2 &gt; /dev/null\n```" in texts(payload, ("section",))
    assert "A &amp; B &lt;s&gt;" in joined
    assert "x &lt; y &amp; z" in joined
    assert "<script>" not in joined and "<!channel>" not in joined
    # plain_text is shown literally by Slack, so the header keeps the raw characters.
    assert payload["blocks"][0]["text"]["text"] == f"问 {nasty}"


def test_backticks_inside_code_do_not_break_the_fence() -> None:
    code = "cat <<'EOF' > README.md\n```yaml\nkey: value\n```\nEOF"
    payload = render_answer(make_answer(parts=(TextPart(markdown="示例："), CommandPart(language="bash", code=code))))
    assert_valid(payload)
    block = texts(payload, ("section",))[1]
    assert block.startswith("```\n") and block.endswith("\n```")
    assert block.count("```") == 2
    assert "ˋˋˋyaml" in block and "&lt;&lt;'EOF' &gt; README.md" in block


def test_long_yaml_command_is_split_into_fenced_sections() -> None:
    lines = [f"  - name: container-{i:03d}  # <comment> & more padding text" for i in range(400)]
    yaml = "apiVersion: apps.kruise.io/v1alpha1\nkind: CloneSet\nspec:\n" + "\n".join(lines)
    payload = render_answer(make_answer(f"完整示例：\n\n```yaml\n{yaml}\n```\n\n以上。"))
    assert_valid(payload)
    sections = texts(payload, ("section",))
    code = [s for s in sections if s.startswith("```")]
    assert len(code) >= 6
    for chunk in code:
        assert chunk.startswith("```\n") and chunk.endswith("\n```")
        assert chunk.count("```") == 2
        assert units(chunk) <= 3000
    # The chunks are split at line boundaries and together hold every line, in order.
    rebuilt = "\n".join(chunk[4:-4] for chunk in code)
    assert rebuilt == yaml.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert sections[0] == "完整示例：" and sections[-1] == "以上。"


def test_long_text_is_split_at_line_boundaries() -> None:
    para = "\n".join(f"第 {i} 行：说明文字 a < b，" + "很长" * 20 for i in range(200))
    payload = render_answer(make_answer(para))
    assert_valid(payload)
    sections = texts(payload, ("section",))
    assert len(sections) > 3
    assert "\n".join(sections) == para.replace("<", "&lt;")
    assert all(units(s) <= 3000 for s in sections)


def test_single_huge_line_is_hard_split() -> None:
    line = "x" * 7000
    payload = render_answer(make_answer(line))
    assert_valid(payload)
    assert "".join(texts(payload, ("section",))) == line


def test_hard_split_prefers_spaces_and_never_cuts_an_entity_or_a_link() -> None:
    line = " ".join(["a&b", "[l](https://openkruise.io/docs/very/long/path)"] * 200)
    payload = render_answer(make_answer(line))
    assert_valid(payload)  # a cut inside "&amp;" or "<url|label>" would fail the escaping check
    sections = texts(payload, ("section",))
    assert len(sections) >= 2
    assert all(s.endswith(" ") for s in sections[:-1])  # cut after a space, not inside a word
    assert "".join(sections).count("<https://openkruise.io/docs/very/long/path|l>") == 200


def test_a_long_line_is_cut_between_words() -> None:
    line = "abcdef " * 1000
    payload = render_answer(make_answer(line))
    sections = texts(payload, ("section",))
    assert len(sections) == 3 and all(s.endswith(" ") for s in sections[:-1])
    assert "".join(sections) == line.rstrip()


def test_a_cut_without_spaces_backs_off_before_a_link() -> None:
    line = "x" * 2990 + "[label](https://openkruise.io/docs)" + "y" * 100
    payload = render_answer(make_answer(line))
    assert_valid(payload)
    assert texts(payload, ("section",)) == ["x" * 2990, "<https://openkruise.io/docs|label>" + "y" * 100]


def test_code_chunks_fill_up_to_the_limit_with_their_fences() -> None:
    code = "\n".join("x" for _ in range(5000))
    payload = render_answer(make_answer(parts=(CommandPart(language="text", code=code),)))
    assert_valid(payload)
    chunks = texts(payload, ("section",))
    assert max(units(c) for c in chunks) > 2990
    assert "\n".join(c[4:-4] for c in chunks) == code


def test_lengths_are_counted_in_utf16_units() -> None:
    emoji = "😀" * 2000  # 4000 UTF-16 units in 2000 characters
    payload = render_answer(make_answer(emoji, matched="🚀" * 100))
    assert_valid(payload)
    header = payload["blocks"][0]["text"]["text"]
    assert units(header) <= 150 and header.endswith("…") and len(header) == 75
    sections = texts(payload, ("section",))
    assert len(sections) == 2 and "".join(sections) == emoji


def test_huge_answer_is_capped_at_50_blocks_with_notice() -> None:
    parts = []
    for i in range(80):
        parts.append(f"步骤 {i}：" + "说明" * 1400)
        parts.append(f"```bash\necho step-{i}\n```")
    payload = render_answer(make_answer("\n\n".join(parts), alternatives=alts("相关问题？")))
    assert_valid(payload)
    blocks = payload["blocks"]
    assert len(blocks) == MAX_BLOCKS
    notice = blocks[-1]
    assert notice["type"] == "context"
    assert "截断" in notice["elements"][0]["text"] and "shortened" in notice["elements"][0]["text"]
    assert any("相关问题？" in t for t in texts(payload, ("context",)))
    assert blocks[0]["type"] == "header"
    assert "步骤 0：" in texts(payload, ("section",))[0]
    assert units(payload["text"]) <= 3000


def test_short_answer_has_no_truncation_notice() -> None:
    payload = render_answer(make_answer("短答案。"))
    assert not any("shortened" in t for t in texts(payload))


def test_header_is_truncated_to_150() -> None:
    long_q = "如何" + "配置 CloneSet 的原地升级策略" * 20
    payload = render_answer(make_answer(matched=long_q))
    assert_valid(payload)
    header = payload["blocks"][0]["text"]["text"]
    assert len(header) == 150
    assert header.endswith("…")
    assert header[:-1] == long_q[:149].rstrip()


def test_header_short_is_untouched() -> None:
    assert render_answer(make_answer(matched="短问题？"))["blocks"][0]["text"]["text"] == "短问题？"


def test_many_alternatives_are_capped_and_deduplicated() -> None:
    questions = [f"问题 {i}？" for i in range(12)]
    payload = render_answer(make_answer(alternatives=alts(questions[0], questions[0], *questions[1:])))
    assert_valid(payload)
    listed = payload["blocks"][-3]["elements"][0]["text"].split("\n")[1:]
    assert listed == [f"• {q}" for q in questions[:5]]
    assert [b["text"]["text"] for b in payload["blocks"][-2]["elements"]] == questions[:5]


def test_long_alternative_question_is_clipped() -> None:
    payload = render_answer(no_match("x", alts("为什么" * 400)))
    assert_valid(payload)
    nearest = texts(payload, ("section",))[1].split("\n")[1]
    assert nearest.endswith("…") and len(nearest) <= 302


def test_no_match_lists_alternatives() -> None:
    answer = no_match("怎么煮咖啡 <b> & 牛奶", alts("如何从 Deployment 迁移到 CloneSet？", "什么时候应该使用 CloneSet 而不是 Deployment？"))
    payload = render_answer(answer)
    assert_valid(payload)
    assert payload["response_type"] == "ephemeral"
    assert not any(b["type"] == "header" for b in payload["blocks"])
    first = payload["blocks"][0]["text"]
    assert first.get("verbatim") is True
    assert "没有找到" in first["text"] and "No good answer" in first["text"]
    assert "怎么煮咖啡 &lt;b&gt; &amp; 牛奶" in first["text"]
    nearest = texts(payload, ("section",))[1].split("\n")
    assert nearest == ["*最接近的问题 / Nearest questions:*", "• 如何从 Deployment 迁移到 CloneSet？",
                       "• 什么时候应该使用 CloneSet 而不是 Deployment？"]
    assert "怎么煮咖啡 &lt;b&gt; &amp; 牛奶" in payload["text"]
    assert render_answer(answer, share=True)["response_type"] == "in_channel"


def test_no_match_without_alternatives() -> None:
    payload = render_answer(no_match("???"))
    assert_valid(payload)
    assert "Nearest" not in "\n".join(texts(payload))


def test_realistic_answer_renders_valid() -> None:
    md = (
        "检查 kruise-system 下的 [kruise-controller-manager](file:///Users/x/control-plane.md#L36-L36) pod"
        " 是否处于健康状态。\n解决方案是临时删除名为 `kruise-validating-webhook-configuration` 的配置。\n\n"
        "在需要以下功能时使用 CloneSet：\n- **原地更新**，实现更快的部署\n- **PVC 支持**\n\n"
        "> 卸载将导致删除 Kruise 下的所有资源。请谨慎操作！\n\n"
        "```yaml\n" + "\n".join(f"key{i}: value{i}" for i in range(25)) + "\n```\n\n"
        "```shell\nkubectl get clone -A\nkubectl get asts -A\n```\n"
    )
    payload = render_answer(make_answer(md), share=True)
    assert_valid(payload)
    sections = texts(payload, ("section",))
    assert len(sections) == 3
    assert "file://" not in sections[0] and "kruise-controller-manager pod" in sections[0]
    assert f"• *原地更新*{ZWSP}，实现更快的部署" in sections[0]
    assert "> 卸载将导致删除" in sections[0]
    assert sections[1].startswith("```\nkey0: value0")
    assert sections[2] == "```\nkubectl get clone -A\nkubectl get asts -A\n```"


@pytest.mark.parametrize("confidence, shown", [(0.874, "87%"), (1.0, "100%"), (0.0, "0%")])
def test_confidence_percentage(confidence: float, shown: str) -> None:
    payload = render_answer(make_answer(confidence=confidence))
    assert f"Confidence {shown}" in payload["blocks"][1]["elements"][0]["text"]


# --------------------------------------------------------------------------- usage / error


def test_render_usage() -> None:
    payload = render_usage()
    assert_valid(payload)
    assert payload["response_type"] == "ephemeral"
    body = "\n".join(texts(payload))
    assert "`/kruise-faq 原地升级能改 CPU 吗`" in body
    assert "/kruise-faq share &lt;" in body and "频道" in body and "channel" in body
    assert "/kruise-faq help" in body
    other = "\n".join(texts(render_usage("/faq")))
    assert "`/faq help`" in other and "/kruise-faq" not in other


def test_render_error_escapes() -> None:
    payload = render_error("索引加载失败: <index> & retry")
    assert_valid(payload)
    assert payload["response_type"] == "ephemeral"
    assert "索引加载失败: &lt;index&gt; &amp; retry" in payload["blocks"][0]["text"]["text"]
    assert "&lt;index&gt;" in payload["text"]


def test_render_error_long_and_empty() -> None:
    long = render_error("x & " * 3000)
    assert_valid(long)
    assert long["blocks"][0]["text"]["text"].endswith("…")
    empty = render_error("")
    assert_valid(empty)
    assert "Something went wrong" in empty["blocks"][0]["text"]["text"]


def test_an_english_question_reads_the_translation_first_and_the_original_in_one_block() -> None:
    original = make_answer("开启功能门后可以**原地**修改资源：\n\n```bash\nkubectl get cloneset\n```\n")
    assert original.match is not None
    translation = Translation(language="en", question="Can in-place update change resources?",
                              answer=split_parts("With the feature gate, **yes**:\n\n```bash\nkubectl get cloneset\n```\n"))
    answer = original.model_copy(update={"question": "can in-place update change cpu", "language": "en",
                                         "match": original.match.model_copy(update={"translation": translation})})
    payload = render_answer(answer)
    assert_valid(payload)
    blocks = payload["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["text"] == "Can in-place update change resources?"
    assert "Translated from the Chinese FAQ" in texts(payload, ("context",))[0]
    body = texts(payload, ("section",))
    assert body[0].startswith("With the feature gate, *yes*") and body[1] == "```\nkubectl get cloneset\n```"
    originals = [t for t in texts(payload, ("context",)) if t.startswith("*原文 / Original:*")]
    assert len(originals) == 1  # the original is one block away: its question and text, not its commands again
    assert "原地升级支持修改容器资源吗？" in originals[0] and "开启功能门后可以原地修改资源" in originals[0]
    assert "kubectl" not in originals[0]
    assert payload["text"].startswith("Can in-place update change resources?")
    # the same answer asked in Chinese shows the original only
    zh = render_answer(original)
    assert zh["blocks"][0]["text"]["text"] == "原地升级支持修改容器资源吗？"
    assert not any(t.startswith("*原文") for t in texts(zh, ("context",)))


# --------------------------------------------------------------------------- buttons


def test_every_reply_to_a_question_ends_with_feedback_buttons_carrying_its_answer_id() -> None:
    for answer in (make_answer(), no_match("???"), no_match("x", alts("相关问题？"))):
        payload = render_answer(answer)
        assert_valid(payload)
        last = payload["blocks"][-1]
        assert last["type"] == "actions" and last["block_id"] == "feedback"
        assert [(e["action_id"], e["value"]) for e in last["elements"]] == [
            ("feedback_yes", answer.answer_id), ("feedback_no", answer.answer_id)]
        assert "👍" in last["elements"][0]["text"]["text"] and "👎" in last["elements"][1]["text"]["text"]


def test_alternatives_are_buttons_that_carry_the_answer_and_the_entry() -> None:
    answer = make_answer(alternatives=(Alternative(id="e1", question="匹配本身？", score=9.0),
                                       Alternative(id="e2", question="CloneSet 如何原地升级？", score=7.0),
                                       Alternative(id="e3", question="<b>&amp; " + "很长的问题" * 40, score=3.0)))
    payload = render_answer(answer)
    assert_valid(payload)
    [block] = [b for b in payload["blocks"] if b.get("block_id") == "alternatives"]
    assert [e["action_id"] for e in block["elements"]] == ["ask_alternative_0", "ask_alternative_1"]
    assert [json.loads(e["value"]) for e in block["elements"]] == [{"answer_id": "a1", "entry_id": "e2"},
                                                                   {"answer_id": "a1", "entry_id": "e3"}]
    long_label = block["elements"][1]["text"]
    assert long_label["type"] == "plain_text" and units(long_label["text"]) == 75  # plain text: not escaped
    assert long_label["text"].startswith("<b>&amp; 很长") and long_label["text"].endswith("…")


def test_an_alternative_with_a_translation_is_shown_and_asked_in_english() -> None:
    answer = make_answer(alternatives=(Alternative(id="e2", question="CloneSet 如何原地升级？", score=7.0,
                                                   translated_question="How does CloneSet update in place?"),
                                       Alternative(id="e3", question="如何卸载？", score=3.0)))
    payload = render_answer(answer)
    assert_valid(payload)
    [block] = [b for b in payload["blocks"] if b.get("block_id") == "alternatives"]
    assert [e["text"]["text"] for e in block["elements"]] == ["How does CloneSet update in place?", "如何卸载？"]
    assert [json.loads(e["value"]) for e in block["elements"]] == [
        {"answer_id": "a1", "entry_id": "e2", "lang": "en"}, {"answer_id": "a1", "entry_id": "e3"}]


def test_no_match_nearest_questions_are_buttons_too() -> None:
    payload = render_answer(no_match("x", alts("如何从 Deployment 迁移到 CloneSet？")))
    assert_valid(payload)
    [block] = [b for b in payload["blocks"] if b.get("block_id") == "alternatives"]
    assert json.loads(block["elements"][0]["value"]) == {"answer_id": "a2", "entry_id": "a0"}
    assert block["elements"][0]["text"]["text"] == "如何从 Deployment 迁移到 CloneSet？"


def test_a_huge_answer_keeps_its_buttons_within_50_blocks() -> None:
    parts = [f"步骤 {i}：" + "说明" * 1400 for i in range(80)]
    payload = render_answer(make_answer("\n\n".join(parts), alternatives=alts("相关问题？")))
    assert_valid(payload)
    assert len(payload["blocks"]) == MAX_BLOCKS
    kinds = [b.get("block_id") for b in payload["blocks"] if b["type"] == "actions"]
    assert kinds == ["alternatives", "feedback"]
