"""qa.faq: markdown FAQ → Entry objects (headings, prefixes, sections, commands, links, ids, warnings)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from tiny_faq import (
    Q_CLONESET,
    Q_CPU,
    Q_SIDECAR,
    Q_STUCK,
    Q_UNINSTALL,
    REAL_DATA,
    SECTION_CLONESET,
    SECTION_CPU,
    SECTION_SIDECAR,
    SECTION_STUCK,
    SECTION_UNINSTALL,
    SIDECAR_YAML,
    STUCK_BASH,
    TINY_MD,
    TINY_QUESTIONS,
)

from qa.contract import CommandPart, Entry
from qa.errors import FAQError
from qa.faq import ParseWarning, entry_id, load_faq, parse_markdown


def md(text: str) -> str:
    return textwrap.dedent(text)


@pytest.fixture
def tiny() -> list[Entry]:
    result = parse_markdown(TINY_MD, source="tiny.md")
    assert result.warnings == []
    return result.entries


def by_question(entries: list[Entry]) -> dict[str, Entry]:
    return {e.question: e for e in entries}


# --------------------------------------------------------------------------- the tiny FAQ


def test_both_heading_styles_parse_in_document_order(tiny: list[Entry]) -> None:
    # Q_CPU and Q_UNINSTALL use "#### Q：", the other three "#### **Q**："
    assert [e.question for e in tiny] == TINY_QUESTIONS


def test_question_text_has_no_prefix_emphasis_or_backticks(tiny: list[Entry]) -> None:
    questions = [e.question for e in tiny]
    # `CPU`, **PreparingUpdate** and *sidecar* are written with markup in the file
    assert questions[0] == "原地升级能修改容器的 CPU 和内存吗？"
    assert questions[1] == "为什么我的 Pod 卡在 PreparingUpdate 状态？"
    assert questions[2] == "How do I inject a sidecar container into existing pods?"
    for q in questions:
        assert not q.startswith(("Q", "**", "问"))
        assert "`" not in q and "*" not in q and "：" not in q[:3]


def test_answer_prefix_removed(tiny: list[Entry]) -> None:
    e = by_question(tiny)
    # "A：" style
    assert e[Q_CPU].markdown == ("可以。自 v1.8.0 起，开启 `InPlaceWorkloadVerticalScaling` 功能门后，CloneSet 和 "
                               "Advanced StatefulSet\n支持原地修改容器资源（CPU/内存）。")
    # "**A**：" style
    assert e[Q_CLONESET].markdown == "CloneSet 支持原地升级、指定 Pod 删除和 PVC 模板，Deployment 只能重建 Pod。"
    assert e[Q_UNINSTALL].markdown.startswith("Since 1.7.3 a pre-delete hook")
    for entry in tiny:
        assert not entry.markdown.lstrip().startswith(("A：", "A:", "**A**", "答"))


@pytest.mark.parametrize("marker", ["A：", "A:", "**A**：", "**A**:", "__A__：", "答：", "Answer: "])
def test_answer_prefix_variants(marker: str) -> None:
    result = parse_markdown(f"## S\n\n#### Q：Is it?\n\n{marker}Yes, it is.\n")
    assert [e.markdown for e in result.entries] == ["Yes, it is."]


def test_section_path_from_level_2_and_3_headings(tiny: list[Entry]) -> None:
    e = by_question(tiny)
    assert e[Q_CPU].section == SECTION_CPU == "原地升级 / 资源"
    assert e[Q_CPU].section == "原地升级 / 资源"
    # a sibling ### replaces the previous ###
    assert e[Q_STUCK].section == SECTION_STUCK
    # a new ## drops the ### of the previous section
    assert e[Q_SIDECAR].section == SECTION_SIDECAR
    assert e[Q_SIDECAR].section == "Sidecar"
    assert e[Q_UNINSTALL].section == SECTION_UNINSTALL
    assert e[Q_CLONESET].section == SECTION_CLONESET


def test_commands_with_languages(tiny: list[Entry]) -> None:
    e = by_question(tiny)
    assert e[Q_STUCK].commands == [CommandPart(language="bash", code=STUCK_BASH)]
    assert e[Q_SIDECAR].commands == [CommandPart(language="yaml", code=SIDECAR_YAML)]
    assert e[Q_CPU].commands == []
    # the fenced block stays in the answer markdown too
    assert f"```bash\n{STUCK_BASH}\n```" in e[Q_STUCK].markdown


def test_commands_in_order_and_language_normalised() -> None:
    text = md("""\
        ## S

        #### Q：Which commands?

        A：First:

        ```bash
        echo one
        ```

        Then:

        ```YAML title="x"
        two: 2
        ```

        ```
        three
        ```

        ~~~json
        {"four": 4}
        ~~~
        """)
    [entry] = parse_markdown(text).entries
    assert entry.commands == [
        CommandPart(language="bash", code="echo one"),
        CommandPart(language="yaml", code="two: 2"),
        CommandPart(language="text", code="three"),
        CommandPart(language="json", code='{"four": 4}'),
    ]


def test_file_links_become_plain_text_https_links_stay(tiny: list[Entry]) -> None:
    answer = by_question(tiny)[Q_SIDECAR].markdown
    assert answer.startswith("Create a SidecarSet (see the concepts and\n"
                             "[the user manual](https://openkruise.io/docs/user-manuals/sidecarset));")
    assert "file://" not in answer
    assert "/Users/me" not in answer


def test_file_autolink_loses_its_scheme() -> None:
    [entry] = parse_markdown("## S\n\n#### Q：Where?\n\nA：See <file:///tmp/notes.md> for details.\n").entries
    assert entry.markdown == "See /tmp/notes.md for details."


def test_source_and_line_recorded(tiny: list[Entry]) -> None:
    assert [e.line for e in tiny] == [7, 14, 25, 41, 48]
    assert {e.source_file for e in tiny} == {"tiny.md"}
    assert tiny[1].model_dump(mode="json") == {
        "id": entry_id(Q_STUCK), "section": SECTION_STUCK, "question": Q_STUCK, "answer": [
            {"type": "text", "markdown": "通常是镜像预下载还没完成，或就绪网关未满足。查看 kruise-manager 的日志："},
            {"type": "command", "language": "bash", "code": STUCK_BASH}],
    }


# --------------------------------------------------------------------------- ids


def test_ids_are_stable_and_derived_from_the_question(tiny: list[Entry]) -> None:
    again = parse_markdown(TINY_MD, source="other-name.md").entries
    assert [e.id for e in again] == [e.id for e in tiny]
    assert [e.id for e in tiny] == [entry_id(q) for q in TINY_QUESTIONS]
    assert len({e.id for e in tiny}) == 5
    for e in tiny:
        assert len(e.id) == 8 and all(c in "0123456789abcdef" for c in e.id)


def test_entry_id_known_values() -> None:
    # ids are referenced from alternates.yaml and eval files: a change of the hash breaks them
    assert entry_id("为什么我的 Pod 卡在 PreparingUpdate 状态？") == "ca50a143"
    assert entry_id("原地更新有哪些限制？") == "588bd71b"


def test_entry_id_ignores_case_width_and_spacing_only() -> None:
    assert entry_id("ＣｌｏｎｅＳｅｔ   和 deployment 有什么区别？") == entry_id(Q_CLONESET)
    assert entry_id("  cloneset 和 DEPLOYMENT 有什么区别？ ") == entry_id(Q_CLONESET)
    assert entry_id("CloneSet 和 Deployment 有什么不同？") != entry_id(Q_CLONESET)
    assert entry_id("A?") != entry_id("B?")


# --------------------------------------------------------------------------- warnings


def test_unclosed_fence_warns_with_file_and_line_and_later_entries_survive() -> None:
    text = md("""\
        ## S

        #### Q：First?

        A：Run:

        ```bash
        kubectl get pods

        #### Q：Second?

        A：Second answer.

        #### Q：Third?

        A：Third answer.
        """)
    result = parse_markdown(text, source="broken.md")
    assert [str(w) for w in result.warnings] == ["broken.md:7: unclosed code fence; closed before line 10"]
    assert result.warnings[0] == ParseWarning("broken.md", 7, "unclosed code fence; closed before line 10")
    assert [e.question for e in result.entries] == ["First?", "Second?", "Third?"]
    first, second, third = result.entries
    assert first.commands == [CommandPart(language="bash", code="kubectl get pods")]
    assert second.markdown == "Second answer."
    assert third.markdown == "Third answer."


def test_unclosed_fence_at_end_of_file() -> None:
    result = parse_markdown("## S\n\n#### Q：Last?\n\nA：Run:\n\n```bash\nls\n", source="end.md")
    assert [str(w) for w in result.warnings] == ["end.md:7: unclosed code fence; closed at end of file"]
    assert result.entries[0].commands == [CommandPart(language="bash", code="ls")]


def test_question_without_answer_is_skipped_with_a_warning() -> None:
    text = md("""\
        ## S

        #### Q：Empty?

        #### Q：Full?

        A：Yes.
        """)
    result = parse_markdown(text, source="f.md")
    assert [e.question for e in result.entries] == ["Full?"]
    assert [str(w) for w in result.warnings] == ["f.md:3: question has no answer: Empty?"]


def test_duplicate_question_gets_a_disambiguated_id_and_a_warning(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("## S\n\n#### Q：Same?\n\nA：one.\n\n#### Q：Other?\n\nA：x.\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("## T\n\n#### **Q**：same?\n\n**A**：two.\n", encoding="utf-8")
    result = load_faq([tmp_path])
    base = entry_id("Same?")
    assert [(e.id, e.markdown, e.source_file, e.line) for e in result.entries] == [
        (base, "one.", "a.md", 3), (entry_id("Other?"), "x.", "a.md", 7), (f"{base}-2", "two.", "b.md", 3)]
    assert [str(w) for w in result.warnings] == [f"b.md:3: duplicate question; id {base}-2"]


def test_load_faq_without_entries_raises(tmp_path: Path) -> None:
    with pytest.raises(FAQError):
        load_faq([tmp_path])  # empty folder
    (tmp_path / "notes.md").write_text("# Notes\n\n## Section\n\nJust text, no questions.\n", encoding="utf-8")
    with pytest.raises(FAQError, match="no FAQ entries"):
        load_faq([tmp_path])
    with pytest.raises(FAQError):
        load_faq([tmp_path / "missing"])


def test_load_faq_reads_folders_sorted_by_name(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("## B\n\n#### Q：Bee?\n\nA：b.\n", encoding="utf-8")
    (tmp_path / "a.md").write_text("## A\n\n#### Q：Ay?\n\nA：a.\n", encoding="utf-8")
    (tmp_path / "c.txt").write_text("## C\n\n#### Q：Sea?\n\nA：c.\n", encoding="utf-8")
    assert [e.question for e in load_faq([tmp_path]).entries] == ["Ay?", "Bee?"]


# --------------------------------------------------------------------------- other heading styles


def test_other_heading_styles() -> None:
    text = md("""\
        # Title of the FAQ?

        ## Operations

        ### How do I restart a pod in place?

        Use a ContainerRecreateRequest.

        ## Q: What is a SidecarSet?

        A: A workload that injects sidecars.

        ## 工作负载

        #### 问：CloneSet 支持 PVC 吗？

        答：支持。

        ### 哪些字段可以原地更新？

        镜像和环境变量。

        ### Not a question

        #### Question: Plain prefix

        Answer: yes
        """)
    result = parse_markdown(text)
    assert result.warnings == []
    got = [(e.section, e.question, e.markdown) for e in result.entries]
    assert got == [
        ("Operations", "How do I restart a pod in place?", "Use a ContainerRecreateRequest."),
        ("Operations", "What is a SidecarSet?", "A workload that injects sidecars."),
        ("工作负载", "CloneSet 支持 PVC 吗？", "支持。"),
        ("工作负载", "哪些字段可以原地更新？", "镜像和环境变量。"),
        ("工作负载 / Not a question", "Plain prefix", "yes"),
    ]


# --------------------------------------------------------------------------- the real FAQ


def test_real_faq_parses_to_23_entries_without_warnings() -> None:
    result = load_faq([REAL_DATA / "faq"])
    assert result.warnings == []
    assert len(result.entries) == 23
    assert len({e.id for e in result.entries}) == 23
    assert all(e.question and e.markdown.strip() and e.section for e in result.entries)
    assert not any("file://" in e.markdown for e in result.entries)
    first = result.entries[0]
    assert (first.id, first.section) == ("0dcf4d04", "安装与卸载 / 卸载保护")
    assert first.question == ("当使用 Helm 卸载 Kruise 1.7.3 或更高版本时出现错误 "
                              "job kruise-finalizer failed: BackoffLimitExceeded")
    assert first.commands == [CommandPart(language="shell", code="kubectl get clone -A \nkubectl get asts -A \nkubectl get ads -A")]


def test_real_faq_keeps_the_webhook_error_inside_the_entry() -> None:
    by_id = {e.id: e for e in load_faq([REAL_DATA / "faq"]).entries}
    e = by_id["ff98f905"]
    assert e.question == "Pod 操作失败并出现以下错误，原因是什么？"
    assert e.section == "Pod 创建/更新错误"
    error = ('failed calling webhook "vpod.kb.io": failed to call webhook: Post '
             '"https://kruise-webhook-service.kruise-system.svc:443/validate-pod?timeout=10s": '
             'no endpoints available for service "kruise-webhook-service"')
    assert error in e.markdown
    assert len(e.commands) == 1 and e.commands[0].language == "bash"
    assert error in e.commands[0].code
    # the A marker after the error block is removed; the file:// links are plain text
    assert "**A**" not in e.markdown
    assert "检查 kruise-system 下的 kruise-controller-manager pod 是否处于健康状态" in e.markdown


# --------------------------------------------------------------------------- code blocks


def test_double_hash_comment_inside_a_code_block_is_not_a_heading() -> None:
    text = md("""\
        ## Install

        #### Q：How do I install Kruise?

        A：Run:

        ```bash
        ## add the chart repository
        helm repo add openkruise https://openkruise.github.io/charts/
        helm install kruise openkruise/kruise
        ```

        #### Q：How do I upgrade?

        A：helm upgrade.
        """)
    result = parse_markdown(text, source="c.md")
    assert result.warnings == []
    install, upgrade = result.entries
    assert install.commands == [CommandPart(language="bash", code="## add the chart repository\n"
                                                "helm repo add openkruise https://openkruise.github.io/charts/\n"
                                                "helm install kruise openkruise/kruise")]
    assert upgrade.section == "Install"


def test_answer_marker_is_not_searched_inside_code_blocks() -> None:
    text = md("""\
        ## S

        #### **Q**：Why does my ConfigMap fail?

        ```yaml
        data:
          answer: yes
        ```

        **A**：Quote the value.

        ### How do I set a value?

        Use a values file:

        ```yaml
        a: 1
        ```
        """)
    first, second = parse_markdown(text).entries
    assert first.markdown == "```yaml\ndata:\n  answer: yes\n```\n\nQuote the value."
    assert second.markdown == "Use a values file:\n\n```yaml\na: 1\n```"
