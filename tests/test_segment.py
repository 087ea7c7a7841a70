"""qa.segment: normalisation, language detection, and jieba segmentation with domain terms and a glossary."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_faq import GLOSSARY_TSV, REAL_DATA, TERMS_TXT

from qa.segment import DEFAULT_STOPWORDS, Glossary, Segmenter, detect_language, normalise, read_terms

TERMS = ["kruise-manager", "PreparingUpdate", "Advanced StatefulSet", "CloneSet"]
GLOSSARY = Glossary([["sidecar", "sidecar container", "边车", "边车容器"], ["uninstall", "卸载"]])


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter(TERMS, GLOSSARY)


@pytest.fixture(scope="module")
def real_seg() -> Segmenter:
    return Segmenter(read_terms(REAL_DATA / "terms.txt"), Glossary.load(REAL_DATA / "glossary.tsv"))


# --------------------------------------------------------------------------- domain terms


def test_hyphenated_component_name_stays_whole(seg: Segmenter) -> None:
    # the whole name first, then its parts as extra search tokens
    assert seg.tokens("kruise-manager 一直重启怎么办") == ["kruise-manager", "kruise", "manager", "一直", "重启", "怎么办"]
    assert seg.tokens("vpod.kb.io 报错") == ["vpod.kb.io", "vpod", "kb", "io", "报错"]


def test_camel_case_state_stays_whole(seg: Segmenter) -> None:
    assert seg.tokens("为什么我的 Pod 卡在 PreparingUpdate 状态？") == ["pod", "卡", "preparingupdate", "状态"]


def test_multi_word_term_is_joined(seg: Segmenter) -> None:
    tokens = seg.tokens("Advanced StatefulSet 和原生 StatefulSet 有什么区别？")
    assert tokens == ["advancedstatefulset", "原生", "statefulset", "区别"]
    assert "advanced" not in tokens


def test_chinese_domain_term_stays_whole_only_with_the_dictionary() -> None:
    assert "原地升级" in Segmenter(["原地升级"]).tokens("原地升级能改 CPU 和内存吗")
    assert Segmenter().tokens("原地升级") == ["原地", "升级"]


def test_without_the_dictionary_multi_word_terms_are_split() -> None:
    assert Segmenter().tokens("Advanced StatefulSet") == ["advanced", "statefulset"]


def test_english_words_are_never_split_by_chinese_dictionary_words() -> None:
    s = Segmenter(["hang"])  # a dictionary word inside an English word
    assert s.tokens("Can in-place update change CPU and memory?") == [
        "in-place", "place", "update", "change", "cpu", "memory"]


def test_terms_file_and_glossary_file_are_read(tmp_path: Path) -> None:
    (tmp_path / "terms.txt").write_text(TERMS_TXT, encoding="utf-8")
    (tmp_path / "glossary.tsv").write_text(GLOSSARY_TSV, encoding="utf-8")
    assert read_terms(tmp_path / "terms.txt") == [
        "kruise-manager", "kruise-controller-manager", "PreparingUpdate", "Advanced StatefulSet", "CloneSet",
        "SidecarSet", "InPlaceWorkloadVerticalScaling"]
    assert Glossary.load(tmp_path / "glossary.tsv").groups == [
        ["sidecar", "sidecar container", "边车", "边车容器"],
        ["in-place update", "in-place", "原地升级", "原地更新"],
        ["uninstall", "卸载"]]
    assert read_terms(tmp_path / "missing.txt") == []
    assert Glossary.load(None).groups == []


# --------------------------------------------------------------------------- stop words


def test_stop_words_dropped(seg: Segmenter) -> None:
    assert seg.tokens("How do I use the sidecar with the pods?") == ["use", "sidecar", "§0", "pod"]
    assert seg.tokens("请问 这个 是 什么") == []
    for tok in seg.tokens("what is the difference between a CloneSet and a Deployment in the cluster?"):
        assert tok not in DEFAULT_STOPWORDS
    assert seg.tokens("what is the difference between a CloneSet and a Deployment in the cluster?") == [
        "difference", "between", "cloneset", "deployment", "cluster"]


def test_custom_stop_words(seg: Segmenter) -> None:
    s = Segmenter(TERMS, GLOSSARY, stopwords=["Pod"])
    assert s.tokens("the pod") == ["the"]
    assert seg.tokens("the pod") == ["pod"]


# --------------------------------------------------------------------------- glossary


def test_glossary_concept_token_shared_by_sidecar_and_bian_che(seg: Segmenter) -> None:
    en = seg.tokens("sidecar")
    zh = seg.tokens("边车")
    assert en == ["sidecar", "§0"]
    assert zh == ["边车", "§0"]
    assert seg.tokens("卸载") == ["卸载", "§1"]
    assert set(seg.tokens("sidecar container")) >= {"§0"}


def test_real_glossary_joins_sidecar_and_bian_che(real_seg: Segmenter) -> None:
    en, zh = real_seg.tokens("inject a sidecar"), real_seg.tokens("注入边车")
    concepts_en = {t for t in en if t.startswith("§")}
    concepts_zh = {t for t in zh if t.startswith("§")}
    assert len(concepts_en) == 2 and concepts_en == concepts_zh  # sidecar/边车 and inject/注入
    assert en[0::2] == ["inject", "sidecar"] and zh[0::2] == ["注入", "边车"]
    long, short = real_seg.tokens("kruise-controller-manager"), real_seg.tokens("kruise-manager")
    assert long[0] == "kruise-controller-manager" and short[0] == "kruise-manager"
    assert long[1] == short[1] == real_seg.concept("kruise-manager") is not None


def test_english_plural_folded(seg: Segmenter) -> None:
    assert seg.tokens("pods") == seg.tokens("pod") == ["pod"]
    assert seg.tokens("CloneSets")[0] == "cloneset"
    assert seg.tokens("class") == ["class"]  # -ss is not a plural


# --------------------------------------------------------------------------- normalisation


def test_full_width_input_normalised() -> None:
    assert normalise("ＣｌｏｎｅＳｅｔ　ｖ１．８　（ＣＰＵ）？") == "CloneSet v1.8 (CPU)?"


def test_full_width_query_tokens_equal_half_width(seg: Segmenter) -> None:
    assert seg.tokens("ＣｌｏｎｅＳｅｔ　和　Ｄｅｐｌｏｙｍｅｎｔ") == seg.tokens("CloneSet 和 Deployment") == [
        "cloneset", "deployment"]


def test_control_characters_stripped_and_spaces_collapsed() -> None:
    # C0/C1 controls separate words like spaces; runs of whitespace collapse to one space
    assert normalise("a\x00b\x07c\td\n\n e\x7f\x85f") == "a b c d e f"
    assert normalise("  \x00\x1f\x9f  ") == ""
    assert normalise("kruise\x1b[31m-manager") == "kruise [31m-manager"


def test_invisible_marks_removed() -> None:
    # zero-width characters, direction marks, BOM and soft hyphen vanish without splitting the word
    assert normalise("\ufeffPre\u200bparing\u200cUp\u200ddate\u200e\u202e\u2066\u00ad") == "PreparingUpdate"
    assert normalise("\u200b \u200b") == ""


def test_control_characters_do_not_reach_the_tokens(seg: Segmenter) -> None:
    assert seg.tokens("kruise-manager\x00\x01 重启\x7f") == ["kruise-manager", "kruise", "manager", "重启"]


def test_zero_width_characters_inside_a_word_are_removed(seg: Segmenter) -> None:
    assert normalise("Clone\u200bSet") == "CloneSet"
    assert seg.tokens("Preparing\u200dUpdate") == ["preparingupdate"]


# --------------------------------------------------------------------------- language


@pytest.mark.parametrize("text", [
    "原地升级能改 CPU 和内存吗",
    "为什么我的 Pod 卡在 PreparingUpdate 状态？",
    "CloneSet 的 partition 怎么用",
    "如何向现有 Pod 注入边车？",
])
def test_detect_language_zh(text: str) -> None:
    assert detect_language(text) == "zh"


@pytest.mark.parametrize("text", [
    "Can in-place update change CPU and memory?",
    "pod stuck in PreparingUpdate",
    "How do I inject a sidecar container into existing pods?",
])
def test_detect_language_en(text: str) -> None:
    assert detect_language(text) == "en"


@pytest.mark.parametrize("text", [
    "我想知道 how to configure the partition of CloneSet",
    "what does 原地升级 mean for my pods",
])
def test_detect_language_mixed(text: str) -> None:
    assert detect_language(text) == "mixed"
