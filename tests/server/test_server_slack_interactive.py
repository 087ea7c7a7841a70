"""Slack's buttons: ``POST /slack/interactive`` (signed like the command), feedback, alternatives.

The replies go to the payload's ``response_url``: here a real HTTP server on loopback that keeps
what it receives (no mocks).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from server_test_support import (
    Q_INPLACE,
    SLACK_SECRET,
    assert_error,
    engine_like,
    flush,
    post_slack,
    slack_headers,
    table,
)
from slack_sdk.models.blocks import Block

from qa.faq import entry_id
from qa.records.schema import clicks, feedback, questions
from qa.search import Engine
from server.app import create_app
from server.settings import ServerSettings


class Receiver:
    """A loopback HTTP server standing in for Slack's response_url; keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                size = int(self.headers.get("content-length", "0"))
                received.append(json.loads(self.rfile.read(size)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/actions/T0001/1/xyz"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def recording(make_settings: Callable[..., ServerSettings], shared_engine: Engine, tmp_path: Path
              ) -> Iterator[Callable[..., tuple[TestClient, str]]]:
    """Opens a client on an app that records into a SQLite file of this test's own."""
    opened: list[TestClient] = []

    def make(**overrides: Any) -> tuple[TestClient, str]:
        url = f"sqlite:///{tmp_path / f'records{len(opened)}.sqlite3'}"
        overrides.setdefault("record", True)
        c = TestClient(create_app(make_settings(database_url=url, **overrides), engine_like(shared_engine)))
        c.__enter__()
        opened.append(c)
        return c, url

    yield make
    for c in opened:
        c.__exit__(None, None, None)




def payload_for(action_id: str, value: str, response_url: str, *, kind: str = "block_actions",
                team: str = "T0001", user: str = "U0001") -> dict[str, Any]:
    return {"type": kind, "team": {"id": team, "domain": "kruise"}, "user": {"id": user, "name": "alice"},
            "api_app_id": "A0001", "container": {"type": "message", "is_ephemeral": True},
            "trigger_id": "1.2.3", "response_url": response_url,
            "actions": [{"type": "button", "action_id": action_id, "block_id": "feedback", "value": value,
                         "action_ts": "1700000000.1"}]}


def post_interactive(client: TestClient, payload: Any, *, raw: bytes | None = None,
                     timestamp: int | None = None, secret: str = SLACK_SECRET) -> Any:
    body = raw if raw is not None else urlencode({"payload": json.dumps(payload)}).encode()
    return client.post("/slack/interactive", content=body,
                       headers=slack_headers(body, secret=secret, timestamp=timestamp))


def buttons(blocks: list[dict[str, Any]], block_id: str) -> list[dict[str, Any]]:
    found = [b for b in blocks if b["type"] == "actions" and b.get("block_id") == block_id]
    assert len(found) <= 1
    return found[0]["elements"] if found else []


def slack_answer(client: TestClient, question: str) -> dict[str, Any]:
    r = post_slack(client, question)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- signatures


def test_unsigned_stale_or_wrongly_signed_requests_get_401(client: TestClient, receiver: Receiver) -> None:
    payload = payload_for("feedback_yes", "0" * 32, receiver.url)
    body = urlencode({"payload": json.dumps(payload)}).encode()
    r = client.post("/slack/interactive", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 401)
    assert_error(post_interactive(client, payload, timestamp=int(time.time()) - 10 * 60), 401)
    assert_error(post_interactive(client, payload, secret="not-the-secret"), 401)
    signed = slack_headers(body)
    assert_error(client.post("/slack/interactive", content=body + b"&x=1", headers=signed), 401)  # body changed
    assert receiver.received == []


def test_without_a_signing_secret_the_endpoint_answers_503(make_client: Callable[..., TestClient],
                                                           receiver: Receiver) -> None:
    c = make_client(slack_signing_secret=None)
    assert_error(post_interactive(c, payload_for("feedback_yes", "0" * 32, receiver.url)), 503)


@pytest.mark.parametrize("raw", [
    b"", b"payload=", b"payload=not-json", b"nothing=here", b"payload=%5B1%5D", b"payload=%7B%7D",
    urlencode({"payload": json.dumps({"type": "block_actions"})}).encode(),
    urlencode({"payload": json.dumps({"type": "block_actions", "actions": [{}]})}).encode(),
    urlencode({"payload": json.dumps(payload_for("feedback_yes", "not-an-id", "http://127.0.0.1:9/"))}).encode(),
    urlencode({"payload": json.dumps(payload_for("ask_alternative_0", "{", "http://127.0.0.1:9/"))}).encode(),
    urlencode({"payload": json.dumps(payload_for("ask_alternative_0", json.dumps({"answer_id": "x"}),
                                                 "http://127.0.0.1:9/"))}).encode(),
    urlencode({"payload": json.dumps(payload_for("ask_alternative_0", json.dumps(
        {"answer_id": "0" * 32, "entry_id": "../../etc"}), "http://127.0.0.1:9/"))}).encode(),
])
def test_signed_but_bad_payloads_get_400(client: TestClient, raw: bytes) -> None:
    assert_error(post_interactive(client, None, raw=raw), 400)


def test_other_interactions_and_unknown_actions_get_an_empty_200(client: TestClient, receiver: Receiver) -> None:
    for payload in (payload_for("feedback_yes", "0" * 32, receiver.url, kind="view_submission"),
                    payload_for("some_other_button", "x", receiver.url)):
        r = post_interactive(client, payload)
        assert r.status_code == 200 and r.content == b""
    assert receiver.received == []


# --------------------------------------------------------------------------- feedback


def test_feedback_buttons_store_the_feedback_and_reply_thanks(recording: Callable[..., tuple[TestClient, str]],
                                                               receiver: Receiver) -> None:
    c, url = recording()
    reply = slack_answer(c, Q_INPLACE)
    [yes, no] = buttons(reply["blocks"], "feedback")
    assert (yes["action_id"], no["action_id"]) == ("feedback_yes", "feedback_no")
    answer_id = yes["value"]
    assert no["value"] == answer_id and len(answer_id) == 32

    r = post_interactive(c, payload_for("feedback_yes", answer_id, receiver.url))
    assert r.status_code == 200 and r.content == b""
    assert len(receiver.received) == 1
    thanks = receiver.received[0]
    assert thanks["response_type"] == "ephemeral" and thanks["replace_original"] is False
    assert "Thanks" in thanks["text"]
    [row] = table(url, feedback)
    assert row["answer_id"] == answer_id and row["helpful"] is True and row["surface"] == "slack"

    post_interactive(c, payload_for("feedback_no", answer_id, receiver.url))  # a second click replaces it
    [row] = table(url, feedback)
    assert row["helpful"] is False
    assert len(receiver.received) == 2


def test_feedback_on_an_unrecorded_answer_says_so(client: TestClient, receiver: Receiver) -> None:
    r = post_interactive(client, payload_for("feedback_yes", "a" * 32, receiver.url))  # recording is off here
    assert r.status_code == 200
    [reply] = receiver.received
    assert "not recorded" in reply["text"] and reply["replace_original"] is False


def test_a_reply_that_cannot_be_delivered_is_only_logged(client: TestClient) -> None:
    r = post_interactive(client, payload_for("feedback_yes", "a" * 32, "http://127.0.0.1:9/closed"))
    assert r.status_code == 200


# --------------------------------------------------------------------------- alternatives


def test_an_alternative_button_answers_that_question_and_records_the_click(
        recording: Callable[..., tuple[TestClient, str]], receiver: Receiver) -> None:
    c, url = recording()
    reply = slack_answer(c, Q_INPLACE)
    alternatives = buttons(reply["blocks"], "alternatives")
    assert alternatives, reply["blocks"]
    for b in alternatives:
        Block.parse({"type": "actions", "elements": [b]}).to_dict()  # type: ignore[union-attr]
    first = alternatives[0]
    value = json.loads(first["value"])
    assert first["action_id"].startswith("ask_alternative")
    assert value["entry_id"] != entry_id(Q_INPLACE)
    earlier = value["answer_id"]

    r = post_interactive(c, payload_for(first["action_id"], first["value"], receiver.url))
    assert r.status_code == 200 and r.content == b""
    [answer] = receiver.received
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert answer["blocks"][0]["type"] == "header"
    assert answer["blocks"][0]["text"]["text"] == first["text"]["text"]  # the chosen question, answered
    [_, next_no] = buttons(answer["blocks"], "feedback")
    next_id = next_no["value"]
    assert next_id != earlier

    flush(c)
    [click] = table(url, clicks)
    assert (click["answer_id"], click["entry_id"], click["surface"], click["next_answer_id"]) == \
        (earlier, value["entry_id"], "slack", next_id)
    rows = {q["answer_id"]: q for q in table(url, questions)}
    assert rows[next_id]["surface"] == "slack" and rows[next_id]["entry_id"] == value["entry_id"]
    assert rows[next_id]["asker"] and rows[next_id]["asker"] == rows[earlier]["asker"]  # same team+user


def test_an_english_alternative_button_asks_and_answers_in_english(make_settings: Callable[..., ServerSettings],
                                                                    tmp_path: Path, receiver: Receiver) -> None:
    from tiny_faq import EN_CPU, Q_CPU, TINY_IDS, open_engine, write_tiny_data, write_translation

    data = write_tiny_data(tmp_path / "data")
    write_translation(data)
    engine = open_engine(data, tmp_path / "index")
    cpu = TINY_IDS[Q_CPU]
    with TestClient(create_app(make_settings(), engine_like(engine))) as c:
        for lang in ("en", None):  # an English button, then a button of a Chinese question
            value = json.dumps({"answer_id": "b" * 32, "entry_id": cpu} | ({"lang": lang} if lang else {}))
            assert post_interactive(c, payload_for("ask_alternative_0", value, receiver.url)).status_code == 200
    english, chinese = receiver.received
    assert english["blocks"][0]["text"]["text"] == EN_CPU  # asked in English, answered with the translation
    assert chinese["blocks"][0]["text"]["text"] == Q_CPU


def test_an_unknown_entry_gets_an_error_reply(client: TestClient, receiver: Receiver) -> None:
    value = json.dumps({"answer_id": "b" * 32, "entry_id": "deadbeef"})
    assert post_interactive(client, payload_for("ask_alternative_0", value, receiver.url)).status_code == 200
    [reply] = receiver.received
    assert "no longer exists" in reply["text"]


def test_clicks_are_rate_limited_per_team_and_user(make_client: Callable[..., TestClient],
                                                   receiver: Receiver) -> None:
    c = make_client(rate_limit="2/minute")
    value = json.dumps({"answer_id": "b" * 32, "entry_id": entry_id(Q_INPLACE)})
    for _ in range(2):
        assert post_interactive(c, payload_for("ask_alternative_0", value, receiver.url)).status_code == 200
    r = post_interactive(c, payload_for("ask_alternative_0", value, receiver.url))
    assert r.status_code == 200 and int(r.headers["retry-after"]) >= 1
    assert "Too many" in receiver.received[-1]["text"]
    other = post_interactive(c, payload_for("ask_alternative_0", value, receiver.url, user="U0002"))
    assert "retry-after" not in other.headers
