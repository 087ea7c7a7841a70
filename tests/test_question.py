"""qa.question: what is echoed back of a question, and what of it goes to the model."""

from __future__ import annotations

import statistics
import time

import pytest
from tiny_faq import Q_SIDECAR, Q_STUCK

from qa.question import MODEL_BUDGET, WHOLE_BUDGET, as_asked, estimate_tokens, for_model
from qa.search import Engine

POD_LOG = "\n".join(
    [f"2024-03-12T08:14:{i % 60:02d}.118Z I0312 08:14:{i % 60:02d}.118234       1 controller.go:{100 + i}] "
     f"syncing pod web-7d9f8b6c5-x7k2{i % 10} in namespace default resourceVersion={48213000 + i}"
     for i in range(7)]
    + ['E0312 08:14:02.118234       1 reflector.go:138] failed to list *v1alpha1.SidecarSet: sidecarsets.apps.kruise.io '
       'is forbidden: User "system:serviceaccount:kruise-system:kruise-manager" cannot list resource "sidecarsets"']
    + [f"I0312 08:15:{i:02d}.000000       1 event.go:{i}] pod web-7d9f8b6c5-x7k2p status Running node 10.1.2.{i}"
       for i in range(6)]
    + ["why does kruise-manager get forbidden for sidecarsets?"])

LONG_EN = ("We run OpenKruise in production and last week something odd happened with our CloneSets: "
           "after a rollout, some pods stayed in PreparingUpdate and never moved on. " * 20)[:2000]
LONG_ZH = ("我们在生产环境用 OpenKruise，上周升级 CloneSet 之后，有一部分 Pod 一直停留在 PreparingUpdate 状态，"
           "没有继续往下走，日志里也看不出明显的错误。" * 30)[:2000]
ONE_LINE = ("failed calling webhook vpod.kb.io: " + "x" * 40 + " ") * 60
NO_SPACES = "原" * 2000


def test_a_typed_question_goes_to_the_model_whole() -> None:
    typed = ("We run ~2000 replicas on Deployments. Rollouts take forever, we can't pick which pods go on "
             "scale-down, and we'd like a PVC per pod for a local cache. Would CloneSet fit, and what changes?")
    assert 64 < estimate_tokens(typed) <= WHOLE_BUDGET
    for q in (Q_SIDECAR, Q_STUCK, "cloneset hpa", "  spaced  \n question  ", typed):
        assert for_model(q) == q


def test_every_question_of_the_evaluation_sets_goes_whole() -> None:
    from tiny_faq import REAL_DATA

    from qa.evaluate import read_examples

    for folder in ("eval", "holdout", "real"):
        for example in read_examples([REAL_DATA / folder]):
            assert for_model(example.q) == example.q, example.q


@pytest.mark.parametrize("text", [POD_LOG, LONG_EN, LONG_ZH, ONE_LINE, NO_SPACES, "\n" * 5000 + "x" * 3000])
def test_a_long_question_is_cut_to_the_budget(text: str) -> None:
    kept = for_model(text)
    assert kept.strip() and estimate_tokens(kept) <= MODEL_BUDGET, (estimate_tokens(kept), kept)


def test_a_pasted_log_keeps_the_error_and_the_question_without_the_noise() -> None:
    assert len(POD_LOG) < 2000
    kept = for_model(POD_LOG)
    assert "failed to list *v1alpha1.SidecarSet" in kept  # the failing line, its first clause at least
    assert "why does kruise-manager get forbidden for sidecarsets?" in kept
    assert "syncing pod" not in kept  # lines that neither ask nor fail give way
    for noise in ("2024-03-12", "08:14:02", "10.1.2.", "48213", "7d9f8b6c5"):
        assert noise not in kept, noise


def test_a_failing_line_too_long_keeps_its_failing_clauses_before_the_others() -> None:
    context = "reconcile CloneSet default/web generation 7 with partition 3 and maxUnavailable 20%: "
    line = context * 3 + "admission webhook vpod.kb.io denied the request: pod spec is immutable"
    text = "\n".join(["I0312 08:15:01 event.go:1] pod web-x status Running"] * 30 + [line, "what should I do?"])
    kept = for_model(text)
    assert "admission webhook vpod.kb.io denied the request" in kept and "what should I do?" in kept
    assert estimate_tokens(kept) <= MODEL_BUDGET


def test_the_kept_lines_keep_their_order_and_come_once() -> None:
    text = "\n".join(["first: what is wrong?"] + ["error: pod failed"] * 50 + ["filler " * 30] * 10 + ["last?"])
    assert for_model(text).splitlines() == ["first: what is wrong?", "error: pod failed", "last?"]


def test_the_engine_searches_what_goes_to_the_model(hash_engine: Engine) -> None:
    log = "\n".join([f"I0312 08:15:{i:02d} event.go:{i}] pod web-x status Running" for i in range(40)]
                    + [Q_SIDECAR])
    assert Engine.clean(log) == Engine.clean(for_model(log))
    assert Q_SIDECAR in Engine.clean(log)
    answer = hash_engine.ask(log)
    assert answer.question == log  # the question as asked is echoed, whole


def test_the_echo_drops_controls_and_bidirectional_overrides_only(hash_engine: Engine) -> None:
    asked = "\u202e" + Q_SIDECAR + "\x00\u2066\x1b[31m\tend\n"
    assert as_asked(asked) == Q_SIDECAR + "[31m\tend\n"
    assert hash_engine.ask(asked).question == as_asked(asked)


def test_the_token_estimate_is_generous_for_ids_and_chinese() -> None:
    assert estimate_tokens("原地升级") == 4
    assert estimate_tokens("7d9f8b6c5") >= 6  # hashes split into many tokens
    assert estimate_tokens("hello world") == 4


@pytest.mark.integration
def test_a_2000_character_question_costs_at_most_4_times_a_short_one() -> None:
    """p50 of the encoder on what goes to the model, with the real default model."""
    from qa.encoders import load_encoder

    encoder = load_encoder("multilingual-e5-small")
    short = ["原地升级能改 CPU 吗？", "pod stuck in PreparingUpdate", "How do I uninstall Kruise?", "sidecar 注入失败"]
    long = [POD_LOG, LONG_EN, LONG_ZH, ONE_LINE[:2000]]

    # Short and long in turn, so that whatever else the machine does slows both alike.
    texts = {"short": [Engine.clean(q) for q in short], "long": [Engine.clean(q) for q in long]}
    encoder.encode(texts["short"][:1], "query")
    times: dict[str, list[float]] = {"short": [], "long": []}
    for _ in range(8):
        for s, long_text in zip(texts["short"], texts["long"]):
            for kind, text in (("short", s), ("long", long_text)):
                start = time.perf_counter()
                encoder.encode([text], "query")
                times[kind].append(time.perf_counter() - start)
    short_p50, long_p50 = statistics.median(times["short"]), statistics.median(times["long"])
    assert long_p50 <= 4 * short_p50, (short_p50, long_p50)
