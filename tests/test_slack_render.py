"""Tests for server.slack_render: mrkdwn conversion, escaping and Slack's payload limits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, SectionBlock

from server.slack_render import (
    MAX_BLOCKS,
    markdown_to_mrkdwn,
    render_answer,
    render_error,
    render_usage,
)

ZWSP = "\u200b"
BLOCK_CLASSES = {"section": SectionBlock, "header": HeaderBlock, "context": ContextBlock, "divider": DividerBlock}
LINK = re.compile(r"<(?:https?://|mailto:)[^<>|\s]+\|[^<>]*>")


def units(text: str) -> int:
    """Length in UTF-16 code units, as Slack counts."""
    return len(text.encode("utf-16-le")) // 2


def make_answer(
    answer_md: str = "答案。",
    *,
    question: str = "原地升级能改 CPU 吗",
    matched: str = "原地升级支持修改容器资源吗？",
    section: str = "性能和扩缩",
    confidence: float = 0.87,
    commands: list[dict[str, str]] | None = None,
    alternatives: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An answer dict in the public JSON shape."""
    return {
        "question": question,
        "language": "zh",
        "match": {
            "id": "e1",
            "section": section,
            "question": matched,
            "answer": answer_md,
            "commands": commands or [],
            "score": 12.5,
            "confidence": confidence,
        },
        "alternatives": alternatives if alternatives is not None else [],
        "took_ms": 1.5,
    }


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
    """Checks a payload against Slack's rules: types, lengths, block count, round trip."""
    assert payload["response_type"] in ("ephemeral", "in_channel")
    assert isinstance(payload["text"], str) and payload["text"].strip()
    assert units(payload["text"]) <= 3000
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= MAX_BLOCKS
    for block in blocks:
        cls = BLOCK_CLASSES[block["type"]]
        parsed = Block.parse(block)
        assert isinstance(parsed, cls)
        assert parsed.to_dict() == block  # to_dict() runs slack_sdk's length validators
        assert cls(**{k: v for k, v in block.items() if k != "type"}).to_dict() == block
        if block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert 0 < units(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < units(block["text"]["text"]) <= 150
        if block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            assert all(0 < units(e["text"]) <= 3000 for e in block["elements"])
    for text in texts(payload) + [payload["text"]]:
        # No raw angle bracket except those of generated links; no bare & outside entities.
        stripped = re.sub(r"(?m)^>(?: |$)", "", LINK.sub("", text))  # links and quote markers
        assert "<" not in stripped and ">" not in stripped, text
        assert not re.search(r"&(?!amp;|lt;|gt;)", stripped), text
        # Every fence is closed.
        assert text.count("```") % 2 == 0, text


# --------------------------------------------------------------------------- markdown_to_mrkdwn


def test_bold_italic_strike_and_inline_code() -> None:
    assert markdown_to_mrkdwn("a **bold** b") == "a *bold* b"
    assert markdown_to_mrkdwn("a __bold__ b") == "a *bold* b"
    assert markdown_to_mrkdwn("a *em* and _em2_ b") == "a _em_ and _em2_ b"
    assert markdown_to_mrkdwn("a ~~gone~~ b") == "a ~gone~ b"
    assert markdown_to_mrkdwn("run `kubectl get pods` now") == "run `kubectl get pods` now"
    assert markdown_to_mrkdwn("a ***both*** b") in ("a _*both*_ b", "a *_both_* b")


def test_markers_next_to_chinese_get_zero_width_spaces_outside_only() -> None:
    out = markdown_to_mrkdwn("使用**原地更新**实现")
    assert out == f"使用{ZWSP}*原地更新*{ZWSP}实现"
    # Next to spaces/ASCII punctuation nothing is added.
    assert ZWSP not in markdown_to_mrkdwn("use **in-place** update, `kubectl`.")


def test_links_keep_only_safe_schemes() -> None:
    assert markdown_to_mrkdwn("见[官网](https://openkruise.io/docs)") == "见<https://openkruise.io/docs|官网>"
    assert markdown_to_mrkdwn("[x](http://a.b/c)") == "<http://a.b/c|x>"
    assert markdown_to_mrkdwn("[mail](mailto:a@b.c)") == "<mailto:a@b.c|mail>"
    # & in the URL is escaped, | cannot break out of the link.
    out = markdown_to_mrkdwn("[q](https://a.b/?x=1&y=2|3)")
    assert out == "<https://a.b/?x=1&amp;y=2%7C3|q>"
    for bad in ("javascript:alert(1)", "file:///Users/me/control-plane.md#L36-L36", "/docs/relative", "data:text/html,x"):
        out = markdown_to_mrkdwn(f"检查 [kruise-manager]({bad}) 状态")
        assert out == "检查 kruise-manager 状态", out


def test_link_text_is_escaped() -> None:
    assert markdown_to_mrkdwn("[a <b> & c](https://x.io)") == "<https://x.io|a &lt;b&gt; &amp; c>"


def test_escaping_text_and_inline_code() -> None:
    out = markdown_to_mrkdwn("a < b > c & d <script>alert(1)</script> `x<y && z>w`")
    assert out == (
        "a &lt; b &gt; c &amp; d &lt;script&gt;alert(1)&lt;/script&gt; `x&lt;y &amp;&amp; z&gt;w`"
    )


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


def test_ordered_list_keeps_start_number() -> None:
    assert markdown_to_mrkdwn("3. c\n4. d") == "3. c\n4. d"


def test_backticks_cannot_open_a_fence_from_text() -> None:
    out = markdown_to_mrkdwn("literal \\`\\`\\` here and ``a`b``")
    assert "```" not in out


# --------------------------------------------------------------------------- render_answer


def test_default_is_ephemeral_and_share_is_in_channel() -> None:
    answer = make_answer()
    assert render_answer(answer)["response_type"] == "ephemeral"
    assert render_answer(answer, share=True)["response_type"] == "in_channel"
    assert render_answer(answer, share=False)["response_type"] == "ephemeral"


def test_match_layout_header_context_answer_alternatives() -> None:
    answer = make_answer(
        "**A**：支持。\n\n```bash\nkubectl get cloneset\n```\n\n之后检查 `status`。",
        commands=[{"language": "bash", "code": "kubectl get cloneset\n"}],
        alternatives=[
            {"id": "e1", "question": "原地升级支持修改容器资源吗？", "score": 12.5},
            {"id": "e2", "question": "CloneSet 如何原地升级？", "score": 7.0},
            {"id": "e3", "question": "Advanced StatefulSet 和原生 StatefulSet 有什么区别？", "score": 3.0},
        ],
    )
    payload = render_answer(answer)
    assert_valid(payload)
    blocks = payload["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "原地升级支持修改容器资源吗？", "emoji": True}}
    meta = " ".join(e["text"] for e in blocks[1]["elements"])
    assert "性能和扩缩" in meta and "87%" in meta and "原地升级能改 CPU 吗" in meta
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    # Document order: text, code (own section, language-less fence), text; code not duplicated.
    assert sections == [f"*A*{ZWSP}：支持。", "```\nkubectl get cloneset\n```", f"之后检查 `status`{ZWSP}。"]
    alt = blocks[-1]["elements"][0]["text"]
    assert "Did you mean" in alt
    assert "• CloneSet 如何原地升级？" in alt and "Advanced StatefulSet" in alt
    assert "原地升级支持修改容器资源吗" not in alt  # the match itself is not suggested again
    assert payload["text"].startswith("原地升级支持修改容器资源吗？\n")
    assert "支持。" in payload["text"]


def test_commands_are_rendered_when_answer_has_no_fence() -> None:
    payload = render_answer(make_answer("执行下面的命令：", commands=[{"language": "bash", "code": "helm list -A"}]))
    assert_valid(payload)
    assert texts(payload, ("section",)) == ["执行下面的命令：", "```\nhelm list -A\n```"]


def test_escaping_in_question_answer_and_code() -> None:
    nasty = "<script>alert('x')</script> & a < b > c <!channel>"
    payload = render_answer(
        make_answer(
            f"答：{nasty}\n\n```bash\necho '<b>' && test 1 < 2 > /dev/null\n```",
            question=nasty,
            matched=f"问 {nasty}",
            section="A & B <s>",
            alternatives=[{"id": "z", "question": "x < y & z", "score": 1.0}],
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
    payload = render_answer(make_answer("示例：", commands=[{"language": "bash", "code": code}]))
    assert_valid(payload)
    block = texts(payload, ("section",))[1]
    assert block.startswith("```\n") and block.endswith("\n```")
    assert block.count("```") == 2
    assert "ˋˋˋyaml" in block and "&lt;&lt;'EOF' &gt; README.md" in block


def test_long_yaml_code_block_is_split_into_fenced_sections() -> None:
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
    expected = yaml.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert rebuilt == expected
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


def test_huge_answer_is_capped_at_50_blocks_with_notice() -> None:
    parts = []
    for i in range(80):
        parts.append(f"步骤 {i}：" + "说明" * 1400)
        parts.append(f"```bash\necho step-{i}\n```")
    payload = render_answer(
        make_answer("\n\n".join(parts), alternatives=[{"id": "e9", "question": "相关问题？", "score": 2.0}])
    )
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
    payload = render_answer(make_answer(matched="短问题？"))
    assert payload["blocks"][0]["text"]["text"] == "短问题？"


def test_no_match_lists_alternatives() -> None:
    answer = {
        "question": "怎么煮咖啡 <b> & 牛奶",
        "language": "zh",
        "match": None,
        "alternatives": [
            {"id": "a", "question": "如何从 Deployment 迁移到 CloneSet？", "score": 1.2},
            {"id": "b", "question": "什么时候应该使用 CloneSet 而不是 Deployment？", "score": 0.9},
        ],
        "took_ms": 2.0,
    }
    payload = render_answer(answer)
    assert_valid(payload)
    assert payload["response_type"] == "ephemeral"
    first = payload["blocks"][0]["text"]["text"]
    assert "没有找到" in first and "No good answer" in first
    assert "怎么煮咖啡 &lt;b&gt; &amp; 牛奶" in first
    joined = "\n".join(texts(payload))
    assert "• 如何从 Deployment 迁移到 CloneSet？" in joined
    assert "• 什么时候应该使用 CloneSet 而不是 Deployment？" in joined
    assert "怎么煮咖啡 &lt;b&gt; &amp; 牛奶" in payload["text"]
    assert render_answer(answer, share=True)["response_type"] == "in_channel"


def test_no_match_without_alternatives() -> None:
    payload = render_answer({"question": "???", "language": "en", "match": None, "alternatives": [], "took_ms": 0.1})
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
    assert "• *原地更新*，实现更快的部署" in sections[0] or f"• *原地更新*{ZWSP}，实现更快的部署" in sections[0]
    assert "> 卸载将导致删除" in sections[0]
    assert sections[1].startswith("```\nkey0: value0") and sections[2] == "```\nkubectl get clone -A\nkubectl get asts -A\n```"


@pytest.mark.parametrize("confidence, shown", [(0.874, "87%"), (1.7, "100%"), (0.0, "0%")])
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
    other = render_usage("/faq")
    assert "`/faq help`" in "\n".join(texts(other)) and "/kruise-faq" not in "\n".join(texts(other))


def test_render_error_escapes() -> None:
    payload = render_error("索引加载失败: <index> & retry")
    assert_valid(payload)
    assert payload["response_type"] == "ephemeral"
    assert "索引加载失败: &lt;index&gt; &amp; retry" in payload["blocks"][0]["text"]["text"]
    assert "&lt;index&gt;" in payload["text"]


def test_render_error_long_and_empty() -> None:
    assert_valid(render_error("x" * 10000))
    empty = render_error("")
    assert_valid(empty)
    assert "Something went wrong" in empty["blocks"][0]["text"]["text"]
