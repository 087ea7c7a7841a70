"""The Slack slash command: signature checks, Block Kit replies, usage, sharing, escaping, limits."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from server_test_support import (
    NEAR_MISS,
    NO_ANSWER_THRESHOLD,
    Q_CLONESET,
    Q_INPLACE,
    Q_SIDECAR,
    Q_WEBHOOK,
    QUESTIONS,
    SLACK_SECRET,
    assert_error,
    assert_security_headers,
    post_slack,
    slack_form,
    slack_headers,
)

from qa.faq import entry_id

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def units(text: str) -> int:
    """Length in UTF-16 code units, as Slack counts."""
    return len(text.encode("utf-16-le")) // 2


def assert_block_kit(payload: Any, response_type: str = "ephemeral") -> list[dict[str, Any]]:
    """A slash-command reply within Slack's limits."""
    assert set(payload) == {"response_type", "text", "blocks"}, payload
    assert payload["response_type"] == response_type
    assert isinstance(payload["text"], str) and payload["text"].strip() and units(payload["text"]) <= 3000
    blocks = payload["blocks"]
    assert isinstance(blocks, list) and 1 <= len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        assert kind in {"header", "section", "context", "divider", "actions"}, block
        if kind == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert 0 < units(block["text"]["text"]) <= 3000
        elif kind == "header":
            assert block["text"]["type"] == "plain_text" and 0 < units(block["text"]["text"]) <= 150
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10
            assert all(0 < units(e["text"]) <= 3000 for e in block["elements"])
    return blocks  # type: ignore[no-any-return]


def all_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


def header_text(blocks: list[dict[str, Any]]) -> str:
    assert blocks[0]["type"] == "header", blocks[0]
    return blocks[0]["text"]["text"]  # type: ignore[no-any-return]


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


# --------------------------------------------------------------------------- answering


def test_signed_command_gets_an_ephemeral_block_kit_answer(client: TestClient) -> None:
    r = post_slack(client, Q_CLONESET)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    payload = r.json()
    blocks = assert_block_kit(payload, "ephemeral")
    assert header_text(blocks) == Q_CLONESET
    assert any("CloneSet 支持原地升级" in t for t in section_texts(blocks))
    assert Q_CLONESET in payload["text"]
    assert_security_headers(r)


def test_answer_with_a_long_yaml_block_is_split_within_limits(client: TestClient) -> None:
    payload = post_slack(client, Q_SIDECAR).json()
    blocks = assert_block_kit(payload)
    assert header_text(blocks) == Q_SIDECAR
    code_sections = [t for t in section_texts(blocks) if t.startswith("```")]
    assert len(code_sections) >= 2, "a 3000+ character yaml block must be split into several sections"
    assert all(t.endswith("```") for t in code_sections)
    joined = "\n".join(t[4:-4] for t in code_sections)
    assert "kind: SidecarSet" in joined and "name: sidecar-69" in joined


def test_answer_with_a_bash_block_keeps_the_commands(client: TestClient) -> None:
    blocks = assert_block_kit(post_slack(client, Q_WEBHOOK).json())
    assert any(t.startswith("```") and "kubectl get pod -n kruise-system" in t for t in section_texts(blocks))


@pytest.mark.parametrize("question", QUESTIONS + ["sidecar inject", "原地升级 CPU", "webhook failed"])
def test_slack_and_api_name_the_same_entry(client: TestClient, question: str) -> None:
    api = client.post("/api/ask", json={"question": question}).json()
    blocks = assert_block_kit(post_slack(client, question).json())
    if question in QUESTIONS:  # the FAQ's own questions are always matched
        assert api["match"] is not None
    if api["match"] is not None:
        assert header_text(blocks) == api["match"]["question"]
    else:  # keyword queries may fall under the threshold with the fake encoder: then both say so
        assert not any(b["type"] == "header" for b in blocks)
        assert "No good answer" in blocks[0]["text"]["text"]
        assert [a["question"] for a in api["alternatives"]][0] in json.dumps(blocks, ensure_ascii=False)


@pytest.mark.parametrize("text", [f"share {Q_CLONESET}", f"SHARE {Q_CLONESET}", f"  share   {Q_CLONESET}  "])
def test_share_posts_in_channel(client: TestClient, text: str) -> None:
    payload = post_slack(client, text).json()
    blocks = assert_block_kit(payload, "in_channel")
    assert header_text(blocks) == Q_CLONESET
    assert "share" not in all_text(payload).lower().split("you asked")[-1][:20]


def test_a_word_starting_with_share_is_not_the_share_keyword(client: TestClient) -> None:
    payload = post_slack(client, "shareholders " + Q_SIDECAR).json()
    assert payload["response_type"] == "ephemeral"


@pytest.mark.parametrize("text", ["", "   ", "help", "HELP", " help ", "帮助", "?", "？", "share", "share   "])
def test_empty_text_help_and_bare_share_give_usage(client: TestClient, text: str) -> None:
    r = post_slack(client, text)
    assert r.status_code == 200
    payload = r.json()
    blocks = assert_block_kit(payload, "ephemeral")
    body = all_text(payload)
    assert "/kruise-faq share" in body and "/kruise-faq help" in body
    assert not any(b["type"] == "header" for b in blocks)


def test_usage_names_the_command_slack_sent(client: TestClient) -> None:
    payload = post_slack(client, "help", command="/faq-bot").json()
    assert "/faq-bot share" in all_text(payload) and "/kruise-faq" not in all_text(payload)


def test_no_answer_lists_the_nearest_questions(make_client: Callable[..., TestClient]) -> None:
    client = make_client(threshold=NO_ANSWER_THRESHOLD)
    question = NEAR_MISS
    api = client.post("/api/ask", json={"question": question}).json()
    assert api["match"] is None
    payload = post_slack(client, question).json()
    blocks = assert_block_kit(payload)
    texts = section_texts(blocks)
    assert "No good answer" in texts[0] and question in texts[0]
    nearest = next(t for t in texts if "Nearest questions" in t)
    listed = [line[2:] for line in nearest.splitlines()[1:]]
    assert listed == [a["question"] for a in api["alternatives"]]
    assert listed[0] == Q_INPLACE
    assert not any(b["type"] == "header" for b in blocks)


@pytest.mark.parametrize("text", ["<script>alert(1)</script>", "<!channel> <@U123> & <https://evil.example|click>"])
def test_user_text_is_escaped_in_the_blocks(client: TestClient, text: str) -> None:
    payload = post_slack(client, text).json()
    assert_block_kit(payload)
    dumped = all_text(payload)
    assert "<script>" not in dumped and "<!channel>" not in dumped and "<@U123>" not in dumped
    assert "<https://evil.example" not in dumped
    if "script" in text:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dumped
    else:
        assert "&lt;!channel&gt;" in dumped and "&amp;" in dumped


def test_user_text_is_escaped_when_matched(client: TestClient) -> None:
    payload = post_slack(client, f"{Q_SIDECAR} <script>x</script>").json()
    blocks = assert_block_kit(payload)
    assert header_text(blocks) == Q_SIDECAR
    dumped = all_text(payload)
    assert "<script>" not in dumped and "&lt;script&gt;x&lt;/script&gt;" in dumped


def test_control_characters_in_the_text_are_answered(client: TestClient) -> None:
    r = post_slack(client, f"\x00{Q_CLONESET}\x07")
    assert r.status_code == 200
    assert header_text(assert_block_kit(r.json())) == Q_CLONESET


def test_overlong_question_gets_an_error_message(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_question_chars=50)
    r = post_slack(client, "sidecar " * 20)
    assert r.status_code == 200
    payload = r.json()
    assert_block_kit(payload)
    assert "too long" in all_text(payload) and "50" in all_text(payload)


# --------------------------------------------------------------------------- verification


def test_wrong_secret_is_401(client: TestClient) -> None:
    body = slack_form(Q_SIDECAR)
    r = client.post("/slack/command", content=body, headers=slack_headers(body, secret="not-the-secret"))
    err = assert_error(r, 401, "unauthorized")
    assert "signature" in err["message"]
    assert_security_headers(r)


@pytest.mark.parametrize("offset", [-400, -301, 301, 400, -86400])
def test_stale_or_future_timestamp_is_401(client: TestClient, offset: int) -> None:
    body = slack_form(Q_SIDECAR)
    r = client.post("/slack/command", content=body, headers=slack_headers(body, timestamp=int(time.time()) + offset))
    assert_error(r, 401, "unauthorized")


def test_timestamp_within_five_minutes_is_accepted(client: TestClient) -> None:
    body = slack_form(Q_SIDECAR)
    r = client.post("/slack/command", content=body, headers=slack_headers(body, timestamp=int(time.time()) - 240))
    assert r.status_code == 200


@pytest.mark.parametrize("drop", [("X-Slack-Signature",), ("X-Slack-Request-Timestamp",),
                                  ("X-Slack-Signature", "X-Slack-Request-Timestamp")])
def test_missing_headers_are_401(client: TestClient, drop: tuple[str, ...]) -> None:
    body = slack_form(Q_SIDECAR)
    headers = {k: v for k, v in slack_headers(body).items() if k not in drop}
    assert_error(client.post("/slack/command", content=body, headers=headers), 401, "unauthorized")


def test_tampered_body_is_401(client: TestClient) -> None:
    original = slack_form("help")
    tampered = slack_form(Q_SIDECAR)
    r = client.post("/slack/command", content=tampered, headers=slack_headers(original))
    assert_error(r, 401, "unauthorized")
    # the same body with one extra field appended
    r = client.post("/slack/command", content=original + b"&user_id=U9999", headers=slack_headers(original))
    assert_error(r, 401, "unauthorized")


@pytest.mark.parametrize("signature", ["", "v0=", "v0=" + "0" * 64, "v1=abc", "garbage"])
def test_malformed_signatures_are_401(client: TestClient, signature: str) -> None:
    body = slack_form(Q_SIDECAR)
    headers = {**slack_headers(body), "X-Slack-Signature": signature}
    assert_error(client.post("/slack/command", content=body, headers=headers), 401, "unauthorized")


@pytest.mark.parametrize("timestamp", ["abc", "1e9", "12.5"])
def test_non_numeric_timestamp_is_401_not_500(make_client: Callable[..., TestClient], timestamp: str) -> None:
    client = make_client(raise_server_exceptions=False)
    body = slack_form(Q_SIDECAR)
    headers = {**slack_headers(body), "X-Slack-Request-Timestamp": timestamp}
    assert_error(client.post("/slack/command", content=body, headers=headers), 401, "unauthorized")


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_no_secret_configured_is_503_even_for_a_signed_request(make_client: Callable[..., TestClient],
                                                               secret: str | None) -> None:
    client = make_client(slack_signing_secret=secret)
    body = slack_form(Q_SIDECAR)
    r = client.post("/slack/command", content=body, headers=slack_headers(body))
    err = assert_error(r, 503, "not_ready")
    assert "QA_SLACK_SIGNING_SECRET" in err["message"]
    assert_security_headers(r)
    assert client.post("/api/ask", json={"question": Q_SIDECAR}).status_code == 200  # the API is unaffected


def raw_signature(body: bytes, timestamp: str, secret: str = SLACK_SECRET) -> str:
    """Slack's v0 signature over the raw bytes (slack_sdk's signer only takes UTF-8 bodies)."""
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def test_raw_signature_agrees_with_slack_sdk() -> None:
    body = slack_form(Q_CLONESET)
    headers = slack_headers(body)
    assert raw_signature(body, headers["X-Slack-Request-Timestamp"]) == headers["X-Slack-Signature"]


@pytest.mark.parametrize("body", [b"text", b"a=1&&b", b"text=hi&token"])
def test_signed_but_malformed_form_is_400(client: TestClient, body: bytes) -> None:
    r = client.post("/slack/command", content=body, headers=slack_headers(body))
    assert_error(r, 400, "bad_request")


@pytest.mark.parametrize("signed", [True, False])
def test_non_utf8_body_is_4xx_not_500(make_client: Callable[..., TestClient], signed: bool) -> None:
    client = make_client(raise_server_exceptions=False)
    body = b"text=%ff&user_id=\xff\xfe"
    ts = str(int(time.time()))
    signature = raw_signature(body, ts) if signed else "v0=" + "0" * 64
    r = client.post("/slack/command", content=body,
                    headers={**FORM, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature})
    # a validly signed body that is not UTF-8 may be refused as a bad form (400) or as unverifiable (401)
    assert_error(r, r.status_code)
    assert r.status_code in ((400, 401) if signed else (401,)), r.status_code


def test_signed_form_with_too_many_fields_is_400(client: TestClient) -> None:
    body = "&".join(f"f{i}=x" for i in range(100)).encode()
    assert_error(client.post("/slack/command", content=body, headers=slack_headers(body)), 400, "bad_request")


@pytest.mark.parametrize("size", [16 * 1024 + 1, 60 * 1024, 200 * 1024])
def test_oversized_body_is_413(client: TestClient, size: int) -> None:
    base = slack_form("")
    body = base + b"x" * (size - len(base))
    assert len(body) == size
    r = client.post("/slack/command", content=body, headers=slack_headers(body))
    err = assert_error(r, 413, "payload_too_large")
    assert "16384" in err["message"]


def test_body_at_the_slack_limit_is_read(client: TestClient) -> None:
    base = slack_form(Q_SIDECAR + " ")
    body = base + b"x" * (16 * 1024 - len(base))
    r = client.post("/slack/command", content=body, headers=slack_headers(body))
    assert r.status_code == 200, r.text


def test_signature_is_checked_before_the_body_is_used(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    body = slack_form(Q_SIDECAR, team_id="TEVIL")
    r = client.post("/slack/command", content=body, headers=slack_headers(body, secret="forged"))
    assert r.status_code == 401
    assert "TEVIL" not in caplog.text
    m = client.app.state.metrics  # type: ignore[attr-defined]
    assert m.answers.labels("answered", "slack")._value.get() == 0


def test_the_secret_never_leaks(make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture) -> None:
    secret = "xoxs-SUPER-s3cret-signing-VALUE-42"
    caplog.set_level(logging.DEBUG)
    client = make_client(slack_signing_secret=secret)
    responses = []
    body = slack_form(Q_SIDECAR)
    responses.append(client.post("/slack/command", content=body, headers=slack_headers(body, secret=secret)))
    responses.append(client.post("/slack/command", content=body, headers=slack_headers(body, secret="wrong")))
    responses.append(client.post("/slack/command", content=body,
                                 headers=slack_headers(body, secret=secret, timestamp=int(time.time()) - 400)))
    responses.append(client.post("/slack/command", content=body))
    responses.append(client.post("/slack/command", content=b"x" * 20000, headers=slack_headers(b"x" * 20000)))
    help_body = slack_form("help")
    responses.append(client.post("/slack/command", content=help_body, headers=slack_headers(help_body, secret=secret)))
    responses.append(client.get("/metrics"))
    responses.append(client.get("/readyz"))
    responses.append(client.get("/openapi.json"))
    assert [r.status_code for r in responses] == [200, 401, 401, 401, 413, 200, 200, 200, 200]
    for r in responses:
        assert secret not in r.text
        assert all(secret not in v for v in r.headers.values())
    records = caplog.records
    assert any(r.name == "server.slack" for r in records)
    for record in records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.args)
        assert secret not in repr(record.__dict__)
    assert secret not in caplog.text


def test_default_secret_is_not_echoed(client: TestClient) -> None:
    r = post_slack(client, Q_SIDECAR)
    assert SLACK_SECRET not in r.text


def test_slack_answers_are_counted(client: TestClient) -> None:
    post_slack(client, Q_SIDECAR)
    text = client.get("/metrics").text
    assert 'qa_answers_total{outcome="answered",surface="slack"} 1.0' in text
    assert 'qa_http_requests_total{method="POST",route="/slack/command",status="200"} 1.0' in text


def test_entry_ids_in_blocks_come_from_the_faq(client: TestClient) -> None:
    # the "did you mean" list never repeats the matched entry
    payload = post_slack(client, Q_INPLACE).json()
    blocks = assert_block_kit(payload)
    did_you_mean = [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]
                    if "Did you mean" in e["text"]]
    assert did_you_mean and Q_INPLACE not in did_you_mean[0]
    assert entry_id(Q_INPLACE) not in all_text(payload)
