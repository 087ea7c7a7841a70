"""The HTTP API: the answer contract, browsing, request errors, readiness, metrics, headers, docs."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from server_test_support import (
    LONG_YAML,
    NEAR_MISS,
    NO_ANSWER_THRESHOLD,
    Q_CLONESET,
    Q_INPLACE,
    Q_SIDECAR,
    Q_UNINSTALL,
    Q_WEBHOOK,
    QUESTIONS,
    assert_answer_contract,
    assert_entry_contract,
    assert_error,
    assert_security_headers,
    engine_like,
    slack_form,
    slack_headers,
)

from qa.contract import Answer, CommandPart, Entry, EntrySummary, TextPart
from qa.errors import FAQError
from qa.faq import entry_id
from qa.markdown import tree as markdown_tree
from qa.question import as_asked
from qa.search import Engine
from server.app import create_app

JSON = {"Content-Type": "application/json"}


def ask(client: TestClient, question: Any, **extra: Any) -> Any:
    return client.post("/api/ask", json={"question": question, **extra})


PER_ASK = {"took_ms", "answer_id"}  # what differs between two asks of the same question (if the answer has it)


def without_timing(answer: dict[str, Any] | Answer) -> dict[str, Any]:
    """The answer JSON without what every ask makes anew: the time taken, and the answer's id."""
    body = answer.model_dump(mode="json") if isinstance(answer, Answer) else answer
    return {k: v for k, v in body.items() if k not in PER_ASK}


def commands(parts: Any) -> list[CommandPart]:
    return [p for p in parts if isinstance(p, CommandPart)]


def texts(parts: Any) -> list[str]:
    return [p.markdown for p in parts if isinstance(p, TextPart)]


# --------------------------------------------------------------------------- the answer contract


@pytest.mark.parametrize(("question", "expected_id", "language"), [
    (Q_INPLACE, entry_id(Q_INPLACE), "zh"),
    (Q_CLONESET, entry_id(Q_CLONESET), "zh"),
    (Q_SIDECAR, entry_id(Q_SIDECAR), "en"),
    (Q_UNINSTALL, entry_id(Q_UNINSTALL), "en"),
    (Q_WEBHOOK, entry_id(Q_WEBHOOK), "mixed"),
])
def test_ask_returns_the_contract_and_the_engines_answer(client: TestClient, shared_engine: Engine,
                                                         question: str, expected_id: str, language: str) -> None:
    r = ask(client, question)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_answer_contract(body)
    assert body["question"] == question
    assert body["language"] == language
    assert body["match"] is not None and body["match"]["id"] == expected_id
    assert body["match"]["question"] == question
    # every surface answers like the engine: the same JSON, timing aside
    assert without_timing(body) == without_timing(shared_engine.ask(question))


def test_ask_match_carries_the_entrys_answer_as_parts_in_order(client: TestClient) -> None:
    answer = assert_answer_contract(ask(client, Q_WEBHOOK).json())
    assert answer.match is not None and answer.match.section == "Pod 创建/更新错误"
    parts = answer.match.answer
    assert [p.type for p in parts] == ["text", "command", "text"]
    assert commands(parts) == [CommandPart(
        language="bash",
        code="kubectl get pod -n kruise-system\nkubectl logs -n kruise-system deploy/kruise-controller-manager")]
    first, last = texts(parts)
    assert "**A**" not in first and first.startswith("检查 kruise-system")
    assert last == "恢复后再重试 Pod 操作。"
    assert all("```" not in t for t in texts(parts))  # fences are command parts, never text

    answer = assert_answer_contract(ask(client, Q_SIDECAR).json())
    assert answer.match is not None
    assert [p.type for p in answer.match.answer] == ["text", "command"]
    assert commands(answer.match.answer) == [CommandPart(language="yaml", code=LONG_YAML)]


def raw_parts(value: Any) -> list[dict[str, Any]]:
    """Every answer part in a JSON body (the match's, and a translation's if there is one), as sent."""
    if isinstance(value, list):
        return [p for v in value for p in raw_parts(v)]
    if not isinstance(value, dict):
        return []
    if value.get("type") == "command" or (value.get("type") == "text" and "markdown" in value):
        return [value]
    return [p for v in value.values() for p in raw_parts(v)]


def has_key(value: Any, key: str) -> bool:
    if isinstance(value, list):
        return any(has_key(v, key) for v in value)
    return isinstance(value, dict) and (key in value or any(has_key(v, key) for v in value.values()))


@pytest.mark.parametrize("question", [Q_WEBHOOK, Q_SIDECAR, Q_INPLACE])
def test_tree_true_gives_each_text_part_its_syntax_tree(client: TestClient, question: str) -> None:
    r = ask(client, question, tree=True)
    assert r.status_code == 200, r.text
    body = r.json()
    answer = assert_answer_contract(body)
    assert answer.match is not None
    parts = raw_parts(body)
    assert len(parts) >= len(answer.match.answer) and any(p["type"] == "text" for p in parts)
    for raw in parts:
        if raw["type"] == "text":
            assert raw["tree"], raw  # present and not empty
            assert TextPart.model_validate(raw).tree == markdown_tree(raw["markdown"])
        else:
            assert "tree" not in raw, raw  # commands are code, not markdown
    # the same answer as without the tree, once the trees are taken out
    plain = ask(client, question).json()
    for raw in parts:
        raw.pop("tree", None)
    assert without_timing(body) == without_timing(plain)


@pytest.mark.parametrize("question", [Q_WEBHOOK, Q_SIDECAR, NEAR_MISS])
def test_without_tree_nothing_has_a_tree_key(client: TestClient, question: str) -> None:
    for extra in ({}, {"tree": False}):
        body = ask(client, question, **extra).json()
        assert_answer_contract(body)
        assert not has_key(body, "tree"), body
    # asking with the tree first leaves no tree on the cached answer
    assert has_key(ask(client, Q_CLONESET, tree=True).json(), "tree")
    assert not has_key(ask(client, Q_CLONESET).json(), "tree")


def test_tree_reads_the_markdown(client: TestClient) -> None:
    body = ask(client, Q_INPLACE, tree=True).json()
    (part,) = body["match"]["answer"]
    (paragraph,) = part["tree"]
    assert paragraph["type"] == "paragraph"
    assert {"type": "code", "text": "InPlaceWorkloadVerticalScaling"} in paragraph["children"]
    assert any(n["type"] == "softbreak" for n in paragraph["children"])
    assert all(v is not None for n in paragraph["children"] for v in n.values())  # unset keys are left out


def test_tree_with_no_match_is_still_an_answer(make_client: Callable[..., TestClient]) -> None:
    client = make_client(threshold=NO_ANSWER_THRESHOLD)
    body = ask(client, NEAR_MISS, tree=True).json()
    assert assert_answer_contract(body).match is None


@pytest.mark.parametrize("tree", ["maybe", 2, [], {}, None])
def test_tree_must_be_a_boolean(client: TestClient, tree: Any) -> None:
    err = assert_error(ask(client, Q_SIDECAR, tree=tree), 422, "invalid_request")
    assert err["message"].startswith("tree"), err


@pytest.mark.parametrize("extra", [{"tree": 0}, {"tree": 1}, {"tree": "yes"}, {"tree": "true"},
                                   {"top_k": True}, {"top_k": "3"}])
def test_fields_take_only_their_documented_json_type(client: TestClient, extra: dict[str, Any]) -> None:
    err = assert_error(ask(client, Q_SIDECAR, **extra), 422, "invalid_request")
    assert err["message"].startswith(next(iter(extra))), err


def test_ask_answers_an_alternate_phrasing(client: TestClient) -> None:
    body = ask(client, "Can in-place update change CPU and memory?").json()
    assert body["match"] is not None and body["match"]["id"] == entry_id(Q_INPLACE)


@pytest.mark.parametrize("top_k", [1, 2, 3, 4, 5])
def test_top_k_is_respected_when_matched(client: TestClient, top_k: int) -> None:
    body = ask(client, Q_SIDECAR, top_k=top_k).json()
    assert_answer_contract(body)
    assert body["match"] is not None
    assert len(body["alternatives"]) == top_k - 1
    ids = [a["id"] for a in body["alternatives"]]
    assert len(set(ids)) == len(ids)


def test_top_k_beyond_the_faq_size_lists_every_other_entry(client: TestClient) -> None:
    body = ask(client, Q_SIDECAR, top_k=10).json()
    assert {a["id"] for a in body["alternatives"]} == {entry_id(q) for q in QUESTIONS if q != Q_SIDECAR}


def test_default_top_k_is_three(client: TestClient) -> None:
    assert len(ask(client, Q_CLONESET).json()["alternatives"]) == 2


def test_no_answer_gives_null_match_and_nearest_questions(make_client: Callable[..., TestClient],
                                                           shared_engine: Engine) -> None:
    client = make_client(threshold=NO_ANSWER_THRESHOLD)
    question = NEAR_MISS
    r = ask(client, question, top_k=3)
    assert r.status_code == 200
    body = r.json()
    assert_answer_contract(body)
    assert body["match"] is None
    assert len(body["alternatives"]) == 3
    assert body["alternatives"][0]["id"] == entry_id(Q_INPLACE)
    expected = engine_like(shared_engine, NO_ANSWER_THRESHOLD).ask(question, 3)
    assert without_timing(body) == without_timing(expected)


def test_off_topic_question_gets_no_match(client: TestClient) -> None:
    body = ask(client, "how do I bake sourdough bread").json()
    assert_answer_contract(body)
    assert body["match"] is None and body["alternatives"]


# --------------------------------------------------------------------------- browsing


def test_faq_lists_every_entry(client: TestClient, shared_engine: Engine) -> None:
    r = client.get("/api/faq")
    assert r.status_code == 200
    entries = r.json()
    summary = set(EntrySummary.model_fields)
    assert entries == [e.model_dump(mode="json", include=summary) for e in shared_engine.entries()]
    assert [EntrySummary.model_validate(e).model_dump(mode="json") for e in entries] == entries  # nothing extra
    assert [e["id"] for e in entries] == [entry_id(q) for q in QUESTIONS]
    assert [e["section"] for e in entries] == ["原地升级", "Pod 创建/更新错误", "Sidecar", "Uninstall", "工作负载"]


def test_faq_entry_in_full(client: TestClient) -> None:
    r = client.get(f"/api/faq/{entry_id(Q_SIDECAR)}")
    assert r.status_code == 200
    entry = assert_entry_contract(r.json())
    assert entry.id == entry_id(Q_SIDECAR) and entry.question == Q_SIDECAR and entry.section == "Sidecar"
    assert [p.type for p in entry.answer] == ["text", "command"]
    assert commands(entry.answer) == [CommandPart(language="yaml", code=LONG_YAML)]
    (text,) = texts(entry.answer)
    assert text.startswith("Create a SidecarSet") and "```" not in text and "apiVersion" not in text


def test_faq_entry_without_commands(client: TestClient) -> None:
    entry = assert_entry_contract(client.get(f"/api/faq/{entry_id(Q_CLONESET)}").json())
    assert commands(entry.answer) == []
    assert texts(entry.answer) == ["CloneSet 支持原地升级，Deployment 只能重建 Pod。"]


def test_faq_entry_is_the_engines_entry(client: TestClient, shared_engine: Engine) -> None:
    for e in shared_engine.entries():
        assert client.get(f"/api/faq/{e.id}").json() == e.model_dump(mode="json")


@pytest.mark.parametrize("bad_id", ["deadbeef", "x", "..%2F..%2Fetc%2Fpasswd", "%00", "原地"])
def test_unknown_entry_is_a_json_404(client: TestClient, bad_id: str) -> None:
    r = client.get(f"/api/faq/{bad_id}")
    err = assert_error(r, 404, "not_found")
    assert_security_headers(r)
    assert "no FAQ entry" in err["message"] or bad_id.startswith("..")


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    r = client.get("/api/nope")
    assert_error(r, 404, "not_found")
    assert_security_headers(r)


def test_wrong_method_is_a_json_405(client: TestClient) -> None:
    r = client.get("/api/ask")
    assert_error(r, 405, "method_not_allowed")
    assert_security_headers(r)


# --------------------------------------------------------------------------- request errors


def test_invalid_json_is_400(client: TestClient) -> None:
    r = client.post("/api/ask", content=b'{"question": "x",', headers=JSON)
    err = assert_error(r, 400, "bad_request")
    assert "not valid JSON" in err["message"]
    assert_security_headers(r)


def test_invalid_utf8_is_400(client: TestClient) -> None:
    r = client.post("/api/ask", content=b'{"question": "\xff\xfe\xc3\x28"}', headers=JSON)
    err = assert_error(r, 400, "bad_request")
    assert "UTF-8" in err["message"]


def test_empty_body_is_400(client: TestClient) -> None:
    assert_error(client.post("/api/ask", content=b"", headers=JSON), 400, "bad_request")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "text/json", "application/jsonx", None])
def test_non_json_content_type_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/api/ask", content=json.dumps({"question": Q_SIDECAR}).encode(), headers=headers)
    assert_error(r, 415, "unsupported_media_type")
    assert_security_headers(r)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "APPLICATION/JSON",
                                          "application/vnd.api+json"])
def test_json_content_type_variants_are_accepted(client: TestClient, content_type: str) -> None:
    r = client.post("/api/ask", content=json.dumps({"question": Q_SIDECAR}).encode(),
                    headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text
    assert r.json()["match"]["id"] == entry_id(Q_SIDECAR)


def test_body_over_the_limit_with_content_length_is_413(client: TestClient, settings: Any) -> None:
    body = json.dumps({"question": "a" * (settings.max_body_bytes + 10)}).encode()
    r = client.post("/api/ask", content=body, headers=JSON)
    assert r.request.headers["content-length"] == str(len(body))
    err = assert_error(r, 413, "payload_too_large")
    assert str(settings.max_body_bytes) in err["message"]
    assert_security_headers(r)


def test_body_over_the_limit_chunked_is_413(client: TestClient, settings: Any) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield b'{"question": "'
        for _ in range(40):  # 40 x 4 KiB = 160 KiB, well over 64 KiB
            sent.append(1)
            yield b"a" * 4096
        yield b'"}'

    r = client.post("/api/ask", content=chunks(), headers=JSON)
    assert "content-length" not in r.request.headers
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert_error(r, 413, "payload_too_large")


def test_body_just_under_the_limit_is_read(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=4096, max_question_chars=5000)
    question = Q_SIDECAR + " " + "x" * (4096 - len(Q_SIDECAR) - 40)
    body = json.dumps({"question": question}).encode()
    assert len(body) <= 4096
    assert client.post("/api/ask", content=body, headers=JSON).status_code == 200
    body = json.dumps({"question": question + "y" * 100}).encode()
    assert_error(client.post("/api/ask", content=body, headers=JSON), 413)


@pytest.mark.parametrize("payload", [
    {"question": ""},
    {"question": "   "},
    {"question": "\n\t  \r\n"},
    {"question": "\x00\x01\x02"},
    {"question": "\u200b\u200b"},
    {},
    {"top_k": 3},
    {"q": "sidecar"},
    {"question": Q_SIDECAR, "top_k": 0},
    {"question": Q_SIDECAR, "top_k": 11},
    {"question": Q_SIDECAR, "top_k": -1},
    {"question": Q_SIDECAR, "top_k": 2.5},
    {"question": Q_SIDECAR, "top_k": "abc"},
    {"question": Q_SIDECAR, "top_k": None},
    {"question": Q_SIDECAR, "top_k": [3]},
    {"question": 123},
    {"question": None},
    {"question": ["sidecar"]},
    {"question": {"text": "sidecar"}},
    {"question": True},
    [],
    [{"question": Q_SIDECAR}],
    "sidecar",
    42,
    None,
])
def test_invalid_fields_are_422(client: TestClient, payload: Any) -> None:
    r = client.post("/api/ask", content=json.dumps(payload).encode(), headers=JSON)
    err = assert_error(r, 422, "invalid_request")
    assert_security_headers(r)
    if isinstance(payload, dict) and "top_k" in payload and "question" in payload:
        assert err["message"].startswith("top_k"), err
    elif isinstance(payload, dict) and payload:
        assert err["message"].startswith("question"), err


def test_question_over_max_chars_is_422_with_a_message(client: TestClient, settings: Any) -> None:
    limit = settings.max_question_chars
    r = ask(client, "a" * (limit + 1))
    err = assert_error(r, 422, "invalid_request")
    assert f"at most {limit} characters" in err["message"] and str(limit + 1) in err["message"]
    assert ask(client, "a" * limit).status_code == 200


def test_question_limit_counts_characters_not_bytes(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_question_chars=20)
    assert ask(client, "原" * 20).status_code == 200  # 60 bytes of UTF-8, 20 characters
    assert_error(ask(client, "原" * 21), 422)


@pytest.mark.parametrize("question", [
    "原地升级\x00能修改容器的\x07 CPU\x1b 和内存吗？",
    "\x00" + Q_SIDECAR,
    Q_CLONESET + "\x7f\x1f",
    "sidecar\r\ninject\tpods\x0b\x0c",
])
def test_nul_and_control_characters_are_answered(client: TestClient, shared_engine: Engine, question: str) -> None:
    r = ask(client, question)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_answer_contract(body)
    assert body["question"] == as_asked(question)  # echoed as asked, minus the control characters
    assert not any(c in body["question"] for c in "\x00\x07\x1b\x7f\x1f\x0b\x0c")
    assert without_timing(body) == without_timing(shared_engine.ask(question))


def test_control_characters_do_not_change_the_match(client: TestClient) -> None:
    body = ask(client, "原地升级\x00能修改容器的\x07 CPU\x1b 和内存吗？").json()
    assert body["match"] is not None and body["match"]["id"] == entry_id(Q_INPLACE)


@pytest.mark.parametrize("question", [
    "😀🚀🔥",
    "sidecar 注入 👍🏽 👨‍👩‍👧",
    "كيف يمكنني حقن حاوية جانبية؟",
    "איך מזריקים sidecar לפודים קיימים?",
    "Привет, как удалить Kruise?",
    "原地升级能修改容器的ＣＰＵ和内存吗？",
    "（全角括号）！？；：「引号」",
    "CloneSet 和 Deployment 有什么区别？ שלום Привет مرحبا 🙂",
    "\u202eRTL override\u202c sidecar",
    "e\u0301\u0301\u0301 combining marks",
    "𠀀𠀁𠀂 rare CJK extension B",
])
def test_unusual_scripts_are_answered(client: TestClient, shared_engine: Engine, question: str) -> None:
    r = ask(client, question)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_answer_contract(body)
    assert body["question"] == as_asked(question)  # a bidirectional override is not echoed
    assert without_timing(body) == without_timing(shared_engine.ask(question))


def test_full_width_question_matches_its_entry(client: TestClient) -> None:
    body = ask(client, "原地升级能修改容器的ＣＰＵ和内存吗？").json()
    assert body["match"] is not None and body["match"]["id"] == entry_id(Q_INPLACE)


def test_unknown_fields_are_ignored(client: TestClient) -> None:
    r = ask(client, Q_SIDECAR, debug=True, lang="en")
    assert r.status_code == 200
    assert_answer_contract(r.json())


def test_lone_surrogate_is_422_not_500(make_client: Callable[..., TestClient]) -> None:
    client = make_client(raise_server_exceptions=False)
    r = client.post("/api/ask", content=b'{"question": "sidecar \\ud800 inject"}', headers=JSON)
    assert_error(r, 422, "invalid_request")


def test_huge_integer_literal_is_400_not_500(make_client: Callable[..., TestClient]) -> None:
    client = make_client(raise_server_exceptions=False)
    body = b'{"question": "sidecar", "top_k": ' + b"1" * 5000 + b"}"
    assert_error(client.post("/api/ask", content=body, headers=JSON), 400, "bad_request")


def test_deeply_nested_json_is_400_not_500(make_client: Callable[..., TestClient]) -> None:
    client = make_client(raise_server_exceptions=False)
    r = client.post("/api/ask", content=b"[" * 40_000, headers=JSON)
    assert 400 <= r.status_code < 500, r.status_code
    assert_error(r, r.status_code)


def test_500_response_carries_request_id_and_security_headers(make_client: Callable[..., TestClient],
                                                               shared_engine: Engine) -> None:
    class Exploding(Engine):
        async def ask_async(self, question: str, top_k: int = 3) -> Any:
            raise RuntimeError("boom")

    broken = Exploding(shared_engine.kb, shared_engine.encoder, shared_engine.dense)
    client = make_client(engine=broken, raise_server_exceptions=False)
    r = ask(client, Q_SIDECAR)
    err = assert_error(r, 500, "internal")
    assert "X-Request-ID" in err["message"]
    assert_security_headers(r)


# --------------------------------------------------------------------------- health and readiness


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert_security_headers(r)


def test_readyz_when_loaded(client: TestClient, shared_engine: Engine) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert body["entries"] == 5
    assert body["vectors"] == len(shared_engine.dense) == 15
    assert body["model"] == "hash-256" and body["data_hash"] == shared_engine.kb.data_hash
    assert "last_reload_error" not in body


def test_readyz_is_503_until_the_background_load_finishes(make_settings: Callable[..., Any],
                                                          shared_engine: Engine) -> None:
    release = threading.Event()
    started = threading.Event()
    calls: list[Any] = []

    def slow_loader(settings: Any, serving: Engine | None = None) -> Engine:
        calls.append(settings)
        started.set()
        assert release.wait(30), "the test never released the loader"
        return engine_like(shared_engine)

    settings = make_settings()
    app = create_app(settings, engine=None, loader=slow_loader)
    try:
        with TestClient(app) as client:
            assert started.wait(10)
            r = client.get("/readyz")
            err = assert_error(r, 503, "not_ready")
            assert "loading" in err["message"]
            assert_security_headers(r)
            assert_error(ask(client, Q_SIDECAR), 503, "not_ready")
            assert_error(client.get("/api/faq"), 503, "not_ready")
            assert client.get("/healthz").status_code == 200  # alive while loading
            release.set()
            deadline = time.monotonic() + 10
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "never became ready"
                time.sleep(0.02)
            assert client.get("/readyz").json()["entries"] == 5
            body = ask(client, Q_SIDECAR).json()
            assert body["match"]["id"] == entry_id(Q_SIDECAR)
            assert "qa_index_entries 5.0" in client.get("/metrics").text
    finally:
        release.set()
    assert calls == [settings]


def test_readyz_reports_a_failed_load(make_settings: Callable[..., Any]) -> None:
    def failing_loader(settings: Any, serving: Engine | None = None) -> Engine:
        raise FAQError("no FAQ entries found in /nowhere")

    with TestClient(create_app(make_settings(), engine=None, loader=failing_loader)) as client:
        deadline = time.monotonic() + 10
        while "cannot load" not in client.get("/readyz").text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        err = assert_error(client.get("/readyz"), 503, "not_ready")
        assert "no FAQ entries found in /nowhere" in err["message"]
        assert_error(ask(client, Q_SIDECAR), 503, "not_ready")


# --------------------------------------------------------------------------- metrics


def test_metrics_count_requests_answers_and_index(make_client: Callable[..., TestClient]) -> None:
    slack_secret, admin_token = "sl4ck-S1GNING-s3cret-value", "adm1n-T0KEN-value-xyz"
    client = make_client(slack_signing_secret=slack_secret, admin_token=admin_token)
    assert ask(client, Q_SIDECAR).json()["match"] is not None
    assert ask(client, "how do I bake sourdough bread").json()["match"] is None
    assert_error(ask(client, ""), 422)
    body = slack_form(Q_CLONESET)
    assert client.post("/slack/command", content=body, headers=slack_headers(body, secret=slack_secret)).status_code == 200
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401

    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in ("qa_http_requests_total", "qa_answers_total", "qa_answer_confidence", "qa_index_entries",
                 "qa_http_request_duration_seconds", "qa_index_build_info"):
        assert f"# TYPE {name} " in text, name
    assert 'qa_http_requests_total{method="POST",route="/api/ask",status="200"} 2.0' in text
    assert 'qa_http_requests_total{method="POST",route="/api/ask",status="422"} 1.0' in text
    assert 'qa_answers_total{outcome="answered",surface="api"} 1.0' in text
    assert 'qa_answers_total{outcome="no_answer",surface="api"} 1.0' in text
    assert 'qa_answers_total{outcome="answered",surface="slack"} 1.0' in text
    assert "qa_answer_confidence_count 3.0" in text
    assert "qa_index_entries 5.0" in text
    assert "qa_index_vectors 15.0" in text
    assert slack_secret not in text and admin_token not in text
    assert_security_headers(r)


def test_metrics_never_contain_the_default_test_secrets(client: TestClient, settings: Any) -> None:
    text = client.get("/metrics").text
    assert settings.slack_signing_secret.get_secret_value() not in text
    assert settings.admin_token.get_secret_value() not in text


# --------------------------------------------------------------------------- headers on every response


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("GET", "/healthz", {}, 200),
    ("GET", "/readyz", {}, 200),
    ("GET", "/metrics", {}, 200),
    ("GET", "/", {}, 200),
    ("GET", "/static/app.js", {}, 200),
    ("GET", "/static/style.css", {}, 200),
    ("GET", "/static/nope.js", {}, 404),
    ("GET", "/openapi.json", {}, 200),
    ("GET", "/docs", {}, 200),
    ("GET", "/api/faq", {}, 200),
    ("GET", "/api/faq/deadbeef", {}, 404),
    ("GET", "/nope", {}, 404),
    ("POST", "/api/ask", {"json": {"question": Q_SIDECAR}}, 200),
    ("POST", "/api/ask", {"json": {"question": ""}}, 422),
    ("POST", "/api/ask", {"content": b"{", "headers": JSON}, 400),
    ("POST", "/api/ask", {"content": b"x", "headers": {"Content-Type": "text/plain"}}, 415),
    ("POST", "/slack/command", {"content": b"text=hi"}, 401),
    ("POST", "/admin/reload", {}, 401),
])
def test_every_response_has_security_headers(client: TestClient, method: str, path: str, kwargs: dict[str, Any],
                                             status: int) -> None:
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert_security_headers(r)


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    a, b = client.get("/healthz").headers["x-request-id"], client.get("/healthz").headers["x-request-id"]
    assert a and b and a != b
    long_id = "z" * 500  # not a short token: replaced, not cut (tests/server/test_server_hostile.py has more)
    assert client.get("/healthz", headers={"X-Request-ID": long_id}).headers["x-request-id"] not in (long_id, "z" * 64)


# --------------------------------------------------------------------------- chat page and docs


def test_chat_page_loads_its_script_from_static_without_inline_code(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script\s*>", html, re.DOTALL | re.IGNORECASE)
    assert scripts, "the page loads no script"
    assert any(re.search(r"""src=["']/static/app\.js["']""", attrs) for attrs, _ in scripts)
    for attrs, inline in scripts:
        assert "src=" in attrs and inline.strip() == "", (attrs, inline)
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), "inline event handlers are blocked by the CSP"
    assert not re.search(r"\sstyle\s*=", html, re.IGNORECASE), "inline style attributes are blocked by the CSP"
    assert "javascript:" not in html.lower()
    assert_security_headers(r)


def test_static_script_is_served(client: TestClient) -> None:
    r = client.get("/static/app.js")
    assert r.status_code == 200
    assert "javascript" in r.headers["content-type"]
    assert "/api/ask" in r.text
    assert r.headers["x-content-type-options"] == "nosniff"


def test_openapi_documents_the_ask_request_with_examples(client: TestClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    op = doc["paths"]["/api/ask"]["post"]
    content = op["requestBody"]["content"]["application/json"]
    assert op["requestBody"]["required"] is True
    schema = content["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert schema["title"] == "AskRequest"
    assert schema["required"] == ["question"]
    assert schema["properties"]["question"]["type"] == "string"
    assert schema["properties"]["question"]["minLength"] == 1
    assert schema["properties"]["top_k"]["minimum"] == 1 and schema["properties"]["top_k"]["maximum"] == 10
    assert schema["properties"]["top_k"]["default"] == 3
    assert schema["properties"]["tree"]["type"] == "boolean" and schema["properties"]["tree"]["default"] is False
    assert set(content["examples"]) == {"zh", "en", "error"}
    assert content["examples"]["zh"]["value"]["question"] == "原地升级能改 CPU 和内存吗？"
    assert schema["examples"]
    responses = op["responses"]
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Answer"
    for status in ("400", "413", "415", "422", "429", "503"):
        assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody"), status
    assert len(doc["components"]["schemas"]["Answer"]["examples"]) == 1
    assert {"/api/faq", "/api/faq/{entry_id}", "/slack/command", "/admin/reload", "/healthz", "/readyz",
            "/metrics"} <= set(doc["paths"])


def contract_schemas(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s serialisation schema and the ones it refers to, by the names OpenAPI gives them."""
    schema = model.model_json_schema(mode="serialization", ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {model.__name__: schema, **defs}


def without_nulls(value: Any) -> Any:
    """What FastAPI writes into the OpenAPI document: every null left out, at any depth (so also
    ``"default": null``; that is why Answer's examples have no ``"match": null``)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize(("path", "method", "model"), [("/api/ask", "post", Answer),
                                                       ("/api/faq/{entry_id}", "get", Entry)])
def test_openapi_documents_the_contracts_own_schema(client: TestClient, path: str, method: str,
                                                    model: type[BaseModel]) -> None:
    doc = client.get("/openapi.json").json()
    ref = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == f"#/components/schemas/{model.__name__}"
    components = doc["components"]["schemas"]
    expected = contract_schemas(model)
    assert expected[model.__name__]["properties"]  # the comparison below compares something
    for name, schema in expected.items():
        assert name in components, name
        assert components[name] == without_nulls(schema), name


def test_openapi_names_the_parts_of_an_answer(client: TestClient) -> None:
    """A client generated from the document must see what a text part and a command part hold."""
    components = client.get("/openapi.json").json()["components"]["schemas"]
    parts = components["Match"]["properties"]["answer"]["items"]
    assert parts["discriminator"]["propertyName"] == "type"
    assert set(parts["discriminator"]["mapping"]) == {"text", "command"}
    assert set(components["CommandPart"]["properties"]) >= {"type", "language", "code"}
    text_part = components["TextPart"]
    assert "additionalProperties" not in text_part or text_part["additionalProperties"] is False, text_part
    assert set(text_part.get("properties", {})) >= {"type", "markdown", "tree"}, text_part
    assert "markdown" in text_part.get("required", []), text_part


def test_openapi_answer_examples_are_answers(client: TestClient) -> None:
    examples = client.get("/openapi.json").json()["components"]["schemas"]["Answer"]["examples"]
    assert examples and all(Answer.model_validate(e).match is not None for e in examples)


def test_openapi_examples_are_valid_requests(client: TestClient) -> None:
    content = client.get("/openapi.json").json()["paths"]["/api/ask"]["post"]["requestBody"]["content"]
    for name, example in content["application/json"]["examples"].items():
        r = client.post("/api/ask", json=example["value"])
        assert r.status_code == 200, (name, r.text)
        assert_answer_contract(r.json())


def page_resources(html: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The page's <script> tags (attributes, inline body) and its <link href> targets."""
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script\s*>", html, re.DOTALL | re.IGNORECASE)
    links = re.findall(r"""<link[^>]+href=["']([^"']+)["']""", html, re.IGNORECASE)
    return scripts, links


def test_docs_page_is_served(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert_security_headers(r)
    scripts, links = page_resources(r.text)
    assert scripts, "the docs page loads no script"
    sources = [m.group(1) for attrs, _ in scripts if (m := re.search(r"""src=["']([^"']+)["']""", attrs))]
    texts = [r.text]
    for url in sources + [h for h in links if not h.startswith("data:")]:
        if url.startswith("/"):
            asset = client.get(url)
            assert asset.status_code == 200, url
            texts.append(asset.text)
    assert any("/openapi.json" in t for t in texts), "nothing on the docs page loads /openapi.json"


def test_docs_page_works_under_its_own_csp(client: TestClient) -> None:
    r = client.get("/docs")
    html = r.text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script\s*>", html, re.DOTALL | re.IGNORECASE)
    for attrs, inline in scripts:
        assert inline.strip() == "", "inline script blocked by script-src 'self'"
        src = re.search(r"""src=["']([^"']+)["']""", attrs)
        assert src and src.group(1).startswith("/"), f"cross-origin script blocked: {attrs}"
    for href in re.findall(r"""<link[^>]+href=["']([^"']+)["']""", html):
        assert href.startswith(("/", "data:")), f"cross-origin resource blocked: {href}"


def test_documented_422_shape_matches_the_response(client: TestClient) -> None:
    r = client.post("/admin/reload?wait=maybe", headers={"Authorization": "Bearer admin-token"})
    assert_error(r, 422, "invalid_request")
    doc = client.get("/openapi.json").json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            documented = op.get("responses", {}).get("422")
            if documented and "content" in documented:
                ref = documented["content"]["application/json"]["schema"].get("$ref", "")
                assert ref.endswith("/ErrorBody"), f"{method.upper()} {path} documents 422 as {ref}"


def test_slack_command_documents_its_statuses(client: TestClient) -> None:
    responses = client.get("/openapi.json").json()["paths"]["/slack/command"]["post"]["responses"]
    assert {"200", "400", "401", "413", "503"} <= set(responses), sorted(responses)
    assert "rate limited" in responses["200"]["description"]
