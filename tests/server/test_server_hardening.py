"""Hardening: rate limits, admin auth, hot reload (also under traffic), a corrupted index, fuzzing.

Property tests (hypothesis) drive the API with arbitrary text, JSON values and bytes, the Slack
command with arbitrary text, and the FAQ parser with markdown-ish noise; schemathesis checks the
app against its own OpenAPI document.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from pydantic import ValidationError
from schemathesis.config import SchemathesisConfig
from server_test_support import (
    ADMIN_TOKEN,
    CLONESET_ANSWER_NEW,
    CLONESET_ANSWER_OLD,
    Q_CLONESET,
    Q_INPLACE,
    Q_SIDECAR,
    assert_answer_contract,
    assert_error,
    assert_security_headers,
    base_settings,
    faq_markdown,
    post_slack,
    slack_form,
    slack_headers,
)
from tiny_faq import open_engine

from qa.contract import Answer, CommandPart, Entry, ErrorBody, Match, TextPart
from qa.encoders import HashEncoder
from qa.errors import BuildRefused, QAError
from qa.faq import ParseResult, entry_id, parse_markdown
from qa.index import MANIFEST, VECTORS, DenseIndex
from qa.question import as_asked
from qa.search import Engine
from qa.segment import normalise
from server.app import create_app, load_engine
from server.batching import BatchingEncoder
from server.settings import ServerSettings

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def ask(client: TestClient, question: str, **extra: Any) -> Any:
    return client.post("/api/ask", json={"question": question, **extra})


@pytest.fixture
def private_client(private_dirs: tuple[Path, Path]) -> Any:
    """A client on an app over a data folder of the test's own (which the test may edit)."""
    data_dir, index_dir = private_dirs
    engine = open_engine(data_dir, index_dir, threshold=0.5)
    app = create_app(base_settings(data_dir, index_dir), engine)
    with TestClient(app) as client:
        yield client


def faq_file(client: TestClient) -> Path:
    return client.app.state.settings.data_dir / "faq" / "tiny.md"  # type: ignore[attr-defined,no-any-return]


def answer_text(match: dict[str, Any]) -> str:
    """A match's text parts, joined (the answers these tests change have no command)."""
    return "\n\n".join(p.markdown for p in Match.model_validate(match).answer if isinstance(p, TextPart))


# --------------------------------------------------------------------------- rate limits


def test_api_rate_limit_gives_429_with_retry_after(make_client: Callable[..., TestClient]) -> None:
    client = make_client(rate_limit="3/minute")
    for _ in range(3):
        assert ask(client, Q_SIDECAR).status_code == 200
    r = ask(client, Q_SIDECAR)
    err = assert_error(r, 429, "rate_limited")
    retry_after = r.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60, retry_after
    assert retry_after in err["message"]
    assert_security_headers(r)
    # the budget covers every /api/ route and the page, not health checks
    assert_error(client.get("/api/faq"), 429, "rate_limited")
    assert_error(client.get("/"), 429, "rate_limited")
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert 'qa_http_requests_total' in client.get("/metrics").text


def test_rate_limit_off_never_limits(make_client: Callable[..., TestClient]) -> None:
    client = make_client(rate_limit="off")
    assert all(ask(client, Q_SIDECAR).status_code == 200 for _ in range(30))


def test_slack_rate_limit_is_per_team_and_user(make_client: Callable[..., TestClient]) -> None:
    client = make_client(rate_limit="2/minute")
    for _ in range(2):
        assert post_slack(client, Q_CLONESET, user_id="U1").status_code == 200
    r = post_slack(client, Q_CLONESET, user_id="U1")
    assert r.status_code == 200  # Slack shows a slash-command reply only with 200
    retry_after = r.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    payload = r.json()
    assert payload["response_type"] == "ephemeral" and "Too many questions" in payload["blocks"][0]["text"]["text"]
    # another user of the same team, and the same user id in another team, still get answers
    assert post_slack(client, Q_CLONESET, user_id="U2").status_code == 200
    assert post_slack(client, Q_CLONESET, user_id="U1", team_id="T0002").status_code == 200
    # the Slack budget is not the API's (a different key)
    assert ask(client, Q_CLONESET).status_code == 200


def test_unsigned_slack_traffic_does_not_spend_a_users_budget(make_client: Callable[..., TestClient]) -> None:
    client = make_client(rate_limit="2/minute")
    body = slack_form(Q_CLONESET, user_id="U7")
    for _ in range(5):
        r = client.post("/slack/command", content=body, headers=slack_headers(body, secret="forged"))
        assert r.status_code == 401
    assert post_slack(client, Q_CLONESET, user_id="U7").status_code == 200


@pytest.mark.parametrize("rate", ["nonsense", "3 per fortnight", "-1/minute", "/minute", "abc/def"])
def test_invalid_rate_limit_from_the_environment_is_rejected(monkeypatch: pytest.MonkeyPatch, rate: str) -> None:
    monkeypatch.setenv("QA_RATE_LIMIT", rate)
    with pytest.raises(ValueError):
        ServerSettings()
    monkeypatch.delenv("QA_RATE_LIMIT")
    with pytest.raises(ValidationError):
        ServerSettings(rate_limit=rate)


@pytest.mark.parametrize("rate", ["10/second", "120/minute", "5 per minute", "off", "OFF"])
def test_valid_rate_limits_are_accepted(monkeypatch: pytest.MonkeyPatch, rate: str) -> None:
    monkeypatch.setenv("QA_RATE_LIMIT", rate)
    assert ServerSettings().rate_limit == rate


# --------------------------------------------------------------------------- admin


@pytest.mark.parametrize("headers", [{}, AUTH, {"Authorization": "Bearer anything"}])
def test_admin_without_a_configured_token_is_404(make_client: Callable[..., TestClient],
                                                 headers: dict[str, str]) -> None:
    client = make_client(admin_token=None)
    assert_error(client.post("/admin/reload?wait=true", headers=headers), 404, "not_found")
    client = make_client(admin_token="  ")
    assert_error(client.post("/admin/reload", headers=headers), 404, "not_found")


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Bearer wrong-token",
                                           f"Basic {ADMIN_TOKEN}", f"{ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN}x",
                                           f"Bearer {ADMIN_TOKEN[:-1]}", f"Token {ADMIN_TOKEN}"])
def test_admin_with_a_wrong_or_missing_bearer_is_401(client: TestClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    r = client.post("/admin/reload?wait=true", headers=headers)
    err = assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    assert ADMIN_TOKEN not in r.text and ADMIN_TOKEN not in err["message"]
    assert_security_headers(r)


def test_admin_reload_with_the_token_waits_and_reports(private_client: TestClient) -> None:
    r = private_client.post("/admin/reload?wait=true", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert body["entries"] == 5 and body["vectors"] == 15
    assert isinstance(body["seconds"], (int, float))
    assert 'qa_index_reloads_total{result="ok"} 1.0' in private_client.get("/metrics").text
    # lower-case scheme is fine too
    assert private_client.post("/admin/reload?wait=true",
                               headers={"Authorization": f"bearer {ADMIN_TOKEN}"}).status_code == 200


def test_admin_reload_in_the_background(private_client: TestClient) -> None:
    r = private_client.post("/admin/reload", headers=AUTH)
    assert r.status_code == 202
    assert r.json() == {"status": "started"}
    reloader = private_client.app.state.reloader  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while reloader.last.get("status") != "ok":
        assert time.monotonic() < deadline, reloader.last
        time.sleep(0.05)


def test_admin_reload_is_post_only(client: TestClient) -> None:
    assert_error(client.get("/admin/reload", headers=AUTH), 405)


# --------------------------------------------------------------------------- hot reload


NEW_QUESTION = "如何给 Advanced DaemonSet 配置热升级？"
NEW_ENTRY = f"""
## 热升级

#### **Q**：{NEW_QUESTION}

**A**：在 Advanced DaemonSet 的 updateStrategy 里设置 rollingUpdate.type 为 Surging：

```yaml
updateStrategy:
  rollingUpdate:
    type: Surging
```
"""


def test_hot_reload_serves_a_new_entry(private_client: TestClient) -> None:
    client = private_client
    before = ask(client, NEW_QUESTION).json()
    assert before["match"] is None or before["match"]["id"] != entry_id(NEW_QUESTION)
    faq_file(client).write_text(faq_markdown(extra=NEW_ENTRY), encoding="utf-8")
    r = client.post("/admin/reload?wait=true", headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["entries"] == 6
    after = assert_answer_contract(ask(client, NEW_QUESTION).json())
    assert after.match is not None and after.match.id == entry_id(NEW_QUESTION)
    assert after.match.section == "热升级"
    assert after.match.answer[0] == TextPart(markdown="在 Advanced DaemonSet 的 updateStrategy 里设置 "
                                                      "rollingUpdate.type 为 Surging：")
    assert after.match.answer[1:] == (CommandPart(language="yaml",
                                                  code="updateStrategy:\n  rollingUpdate:\n    type: Surging"),)
    ready = client.get("/readyz").json()
    assert ready["entries"] == 6 and "last_reload_error" not in ready
    assert len(client.get("/api/faq").json()) == 6
    assert client.get(f"/api/faq/{entry_id(NEW_QUESTION)}").status_code == 200
    assert "qa_index_entries 6.0" in client.get("/metrics").text
    # the old entries still answer
    assert ask(client, Q_SIDECAR).json()["match"]["id"] == entry_id(Q_SIDECAR)


def fence_line(text: str, fence: str) -> int:
    return text.splitlines().index(fence) + 1


BROKEN_EDITS = {
    "unclosed fence": ("\n#### **Q**：新问题：如何查看日志？\n\n**A**：运行：\n\n```sh\nkubectl logs -n kruise-system\n",
                       "```sh", "unclosed code fence"),
    "question without answer": ("\n#### **Q**：这个问题没有答案吗？\n", "#### **Q**：这个问题没有答案吗？",
                                "question has no answer"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_EDITS))
def test_reload_rejects_a_broken_faq_and_keeps_serving(private_client: TestClient, case: str) -> None:
    client = private_client
    extra, marker, message = BROKEN_EDITS[case]
    text = faq_markdown(cloneset_answer=CLONESET_ANSWER_NEW, extra=extra)
    line = fence_line(text, marker)
    serving = client.app.state.holder.engine  # type: ignore[attr-defined]
    index_dir = client.app.state.settings.index_dir  # type: ignore[attr-defined]
    manifest = DenseIndex.read_manifest(index_dir)
    faq_file(client).write_text(text, encoding="utf-8")

    r = client.post("/admin/reload?wait=true", headers=AUTH)
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["status"] == "failed"
    assert f"tiny.md:{line}:" in body["error"] and message in body["error"]
    assert "last good index is kept" in body["error"]

    # the old engine keeps answering, with the old answer; the saved index is not replaced either
    assert client.app.state.holder.engine is serving  # type: ignore[attr-defined]
    assert DenseIndex.read_manifest(index_dir) == manifest
    answer = ask(client, Q_CLONESET).json()
    assert answer_text(answer["match"]) == CLONESET_ANSWER_OLD
    ready = client.get("/readyz")
    assert ready.status_code == 200
    ready_body = ready.json()
    assert ready_body["status"] == "ready" and ready_body["entries"] == 5
    assert f"tiny.md:{line}" in ready_body["last_reload_error"] and message in ready_body["last_reload_error"]
    assert 'qa_index_reloads_total{result="failed"} 1.0' in client.get("/metrics").text

    # fixing the file and reloading clears the error
    faq_file(client).write_text(faq_markdown(cloneset_answer=CLONESET_ANSWER_NEW), encoding="utf-8")
    assert client.post("/admin/reload?wait=true", headers=AUTH).status_code == 200
    assert "last_reload_error" not in client.get("/readyz").json()
    assert answer_text(ask(client, Q_CLONESET).json()["match"]) == CLONESET_ANSWER_NEW
    assert DenseIndex.read_manifest(index_dir) != manifest


def test_reload_with_a_warning_is_served_when_warnings_are_allowed(private_dirs: tuple[Path, Path]) -> None:
    """``allow_warnings`` lets data with problems replace the serving engine; /readyz lists them."""
    data_dir, index_dir = private_dirs
    settings = base_settings(data_dir, index_dir, allow_warnings=True)
    with TestClient(create_app(settings, open_engine(data_dir, index_dir, threshold=0.5))) as client:
        extra, marker, message = BROKEN_EDITS["unclosed fence"]
        text = faq_markdown(cloneset_answer=CLONESET_ANSWER_NEW, extra=extra)
        faq_file(client).write_text(text, encoding="utf-8")
        r = client.post("/admin/reload?wait=true", headers=AUTH)
        assert r.status_code == 200 and r.json()["entries"] == 6, r.text
        ready = client.get("/readyz").json()
        assert ready["warnings"] == [f"tiny.md:{fence_line(text, marker)}: {message}; closed at end of file"]
        assert "last_reload_error" not in ready
        assert answer_text(ask(client, Q_CLONESET).json()["match"]) == CLONESET_ANSWER_NEW


def test_reload_hands_the_serving_engine_to_the_loader(private_dirs: tuple[Path, Path]) -> None:
    data_dir, index_dir = private_dirs
    serving = open_engine(data_dir, index_dir, threshold=0.5)
    settings = base_settings(data_dir, index_dir)
    calls: list[tuple[Any, Any]] = []

    def loader(s: ServerSettings, current: Engine | None = None) -> Engine:
        calls.append((s, current))
        return load_engine(s, current)

    with TestClient(create_app(settings, serving, loader=loader)) as client:
        assert client.post("/admin/reload?wait=true", headers=AUTH).json()["status"] == "ok"
        assert calls == [(settings, serving)]
        reloaded = client.app.state.holder.engine  # type: ignore[attr-defined]
        assert reloaded is not serving and reloaded.encoder is serving.encoder  # the model is not loaded again
        assert client.post("/admin/reload?wait=true", headers=AUTH).json()["status"] == "ok"
        assert calls[1] == (settings, reloaded)


def test_reload_with_no_faq_left_keeps_serving(private_client: TestClient) -> None:
    faq_file(private_client).unlink()
    r = private_client.post("/admin/reload?wait=true", headers=AUTH)
    assert r.status_code == 409 and "no FAQ entries" in r.json()["error"]
    assert ask(private_client, Q_SIDECAR).json()["match"]["id"] == entry_id(Q_SIDECAR)
    assert "no FAQ entries" in private_client.get("/readyz").json()["last_reload_error"]


def test_reload_rejects_broken_alternates_yaml(private_client: TestClient) -> None:
    alternates = private_client.app.state.settings.data_dir / "alternates.yaml"  # type: ignore[attr-defined]
    alternates.write_text("a: [unclosed\n  - b\n", encoding="utf-8")
    r = private_client.post("/admin/reload?wait=true", headers=AUTH)
    assert r.status_code == 409 and "alternates.yaml" in r.json()["error"]
    assert ask(private_client, Q_SIDECAR).status_code == 200


@pytest.mark.parametrize("name", ["terms.txt", "glossary.tsv"])
def test_reload_with_a_non_utf8_data_file_is_409(private_dirs: tuple[Path, Path], name: str) -> None:
    data_dir, index_dir = private_dirs
    engine = open_engine(data_dir, index_dir, threshold=0.5)
    with TestClient(create_app(base_settings(data_dir, index_dir), engine), raise_server_exceptions=False) as client:
        line = "原地升级\n边车容器\n" if name == "terms.txt" else "边车 | sidecar\n原地升级 | in-place update\n"
        (data_dir / name).write_bytes(line.encode("gbk"))
        r = client.post("/admin/reload?wait=true", headers=AUTH)
        assert r.status_code == 409, (r.status_code, r.text)
        assert name in r.json()["error"]
        assert name in client.get("/readyz").json()["last_reload_error"]
        assert ask(client, Q_SIDECAR).json()["match"]["id"] == entry_id(Q_SIDECAR)


def test_startup_load_failure_of_any_kind_is_reported(private_dirs: tuple[Path, Path]) -> None:
    data_dir, index_dir = private_dirs

    def broken_loader(settings: object, serving: Engine | None = None) -> Engine:
        raise RuntimeError("disk on fire")

    with TestClient(create_app(base_settings(data_dir, index_dir), engine=None, loader=broken_loader)) as client:
        deadline = time.monotonic() + 3
        message = ""
        while time.monotonic() < deadline:
            r = client.get("/readyz")
            assert r.status_code == 503
            message = r.json()["error"]["message"]
            if "loading" not in message:
                break
            time.sleep(0.05)
        assert "RuntimeError: disk on fire" in message, message


def encoder_threads() -> int:
    return sum(t.name == "qa-encoder" and t.is_alive() for t in threading.enumerate())


def wait_for_encoder_threads(count: int) -> int:
    deadline = time.monotonic() + 3
    while encoder_threads() > count and time.monotonic() < deadline:
        time.sleep(0.02)
    return encoder_threads()


def test_a_failed_startup_leaves_no_encoder_thread(private_dirs: tuple[Path, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed start-up loads a model of its own each time; none may be left running."""
    import server.app

    class Broken(HashEncoder):
        def encode(self, texts, kind="passage"):  # type: ignore[no-untyped-def]
            raise OSError("model file truncated")

    monkeypatch.setattr(server.app, "load_encoder", lambda name: Broken(dim=16))
    data_dir, index_dir = private_dirs
    before = encoder_threads()
    for _ in range(3):
        with pytest.raises(OSError, match="truncated"):
            load_engine(base_settings(data_dir, index_dir))
    assert wait_for_encoder_threads(before) == before


def test_a_failed_reload_loads_no_model_and_keeps_the_serving_encoder(private_dirs: tuple[Path, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload reuses the serving engine's encoder: it starts no encoder thread, and a failed
    one neither closes that encoder nor leaves anything running."""
    import server.app

    data_dir, index_dir = private_dirs
    settings = base_settings(data_dir, index_dir)
    serving = load_engine(settings)
    try:
        assert isinstance(serving.encoder, BatchingEncoder)
        before = encoder_threads()

        def no_model(name: str) -> Any:
            raise AssertionError("a reload loaded the model again")

        monkeypatch.setattr(server.app, "load_encoder", no_model)
        (data_dir / "faq" / "tiny.md").write_text(faq_markdown(extra=BROKEN_EDITS["unclosed fence"][0]),
                                                  encoding="utf-8")
        for _ in range(3):
            with pytest.raises(BuildRefused, match="unclosed code fence"):
                load_engine(settings, serving)
        (data_dir / "faq" / "tiny.md").unlink()
        with pytest.raises(QAError, match="no FAQ entries"):
            load_engine(settings, serving)
        assert wait_for_encoder_threads(before) == before
        assert serving.ask(Q_SIDECAR).match is not None  # its encoder still answers
        assert serving.encoder.encode(["still open?"], "query").shape == (1, serving.encoder.dim)
    finally:
        serving.encoder.close()  # type: ignore[attr-defined]


def test_startup_with_an_unreadable_data_file_serves_and_reports_it(private_dirs: tuple[Path, Path]) -> None:
    data_dir, index_dir = private_dirs
    (data_dir / "terms.txt").write_bytes("原地升级\n".encode("gbk"))
    with TestClient(create_app(base_settings(data_dir, index_dir), engine=None)) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        body = client.get("/readyz").json()
        assert body["status"] == "ready"
        assert any(w.startswith("terms.txt:") and "UnicodeDecodeError" in w for w in body["warnings"]), body
        assert ask(client, Q_SIDECAR).json()["match"]["id"] == entry_id(Q_SIDECAR)


def break_the_faq(data_dir: Path) -> str:
    """Appends an entry with an unclosed fence to the FAQ; returns the warning it gives."""
    extra, marker, message = BROKEN_EDITS["unclosed fence"]
    text = faq_markdown(extra=extra)
    (data_dir / "faq" / "tiny.md").write_text(text, encoding="utf-8")
    return f"tiny.md:{fence_line(text, marker)}: {message}"


def test_startup_with_a_broken_faq_and_a_good_index_refuses_to_start(private_dirs: tuple[Path, Path]) -> None:
    data_dir, index_dir = private_dirs
    open_engine(data_dir, index_dir)  # builds and saves a good index
    manifest = DenseIndex.read_manifest(index_dir)
    assert manifest is not None
    warning = break_the_faq(data_dir)
    with pytest.raises(BuildRefused, match="unclosed code fence") as refused:
        load_engine(base_settings(data_dir, index_dir))
    assert [str(w) for w in refused.value.warnings] == [f"{warning}; closed at end of file"]
    assert str(index_dir) in str(refused.value)  # says which index was kept
    assert DenseIndex.read_manifest(index_dir) == manifest  # left as it was

    # the app, loading in the background, reports it and answers nothing
    with TestClient(create_app(base_settings(data_dir, index_dir), engine=None)) as client:
        deadline = time.monotonic() + 10
        while "cannot load" not in client.get("/readyz").text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        err = assert_error(client.get("/readyz"), 503, "not_ready")
        assert warning in err["message"]
        assert_error(ask(client, Q_SIDECAR), 503, "not_ready")

    # allowing warnings builds what loaded
    engine = load_engine(base_settings(data_dir, index_dir, allow_warnings=True))
    try:
        assert len(engine.kb.entries) == 6 and DenseIndex.read_manifest(index_dir) != manifest
    finally:
        engine.encoder.close()  # type: ignore[attr-defined]


def test_serve_exits_1_on_a_broken_faq_with_a_good_index(private_dirs: tuple[Path, Path],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    import server.main

    data_dir, index_dir = private_dirs
    open_engine(data_dir, index_dir)
    warning = break_the_faq(data_dir)
    for name, value in {"QA_DATA_DIR": str(data_dir), "QA_INDEX_DIR": str(index_dir), "QA_MODEL": "hash",
                        "QA_RATE_LIMIT": "off"}.items():
        monkeypatch.setenv(name, value)
    for name in ("QA_FAQ_DIR", "QA_ALLOW_WARNINGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(server.main, "configure_logging", lambda *args: None)  # keep pytest's log handlers

    def no_server(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("serve() started the server")

    monkeypatch.setattr(uvicorn, "run", no_server)
    assert server.main.serve() == 1
    err = capsys.readouterr().err
    assert "cannot start" in err and warning in err, err


def test_startup_with_a_broken_faq_and_no_index_serves_and_lists_the_warnings(
        private_dirs: tuple[Path, Path]) -> None:
    data_dir, index_dir = private_dirs
    warning = break_the_faq(data_dir)
    assert DenseIndex.read_manifest(index_dir) is None
    with TestClient(create_app(base_settings(data_dir, index_dir), engine=None)) as client:
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").text
            time.sleep(0.05)
        body = client.get("/readyz").json()
        assert body["status"] == "ready" and body["entries"] == 6
        assert body["warnings"] == [f"{warning}; closed at end of file"]
        assert "last_reload_error" not in body
        assert ask(client, Q_SIDECAR).json()["match"]["id"] == entry_id(Q_SIDECAR)
        assert DenseIndex.read_manifest(index_dir) is not None  # the first build is saved
    client.app.state.holder.engine.encoder.close()  # type: ignore[attr-defined]


def test_reload_under_traffic_never_fails_and_answers_old_or_new(private_client: TestClient) -> None:
    client = private_client
    total, threads_n, reload_at, after_from = 200, 8, 40, 150
    old, new = CLONESET_ANSWER_OLD, CLONESET_ANSWER_NEW
    lock = threading.Lock()
    counter = {"sent": 0, "done": 0}
    results: list[tuple[int, int, str | None, Any]] = []
    errors: list[BaseException] = []
    start_reload = threading.Event()
    reloaded = threading.Event()

    def worker() -> None:
        try:
            while True:
                with lock:
                    index = counter["sent"]
                    if index >= total:
                        return
                    counter["sent"] += 1
                if index >= after_from:
                    assert reloaded.wait(30)
                r = ask(client, Q_CLONESET)
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
                answer = answer_text(body["match"]) if r.status_code == 200 and body.get("match") else None
                with lock:
                    results.append((index, r.status_code, answer, body))
                    counter["done"] += 1
                    if counter["done"] == reload_at:
                        start_reload.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            start_reload.set()

    faq_file(client).write_text(faq_markdown(cloneset_answer=CLONESET_ANSWER_NEW), encoding="utf-8")
    workers = [threading.Thread(target=worker, name=f"traffic-{i}") for i in range(threads_n)]
    for t in workers:
        t.start()
    try:
        assert start_reload.wait(30)
        r = client.post("/admin/reload?wait=true", headers=AUTH)
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    finally:
        reloaded.set()
        for t in workers:
            t.join(60)
    assert not errors, errors
    assert len(results) == total
    assert [s for _, s, _, _ in results] == [200] * total
    for index, _, answer, body in results:
        assert_answer_contract(body)
        assert body["match"]["id"] == entry_id(Q_CLONESET)
        assert answer in (old, new), (index, answer)
    assert all(answer == new for index, _, answer, _ in results if index >= after_from)
    assert any(answer == old for _, _, answer, _ in results)


# --------------------------------------------------------------------------- a corrupted index on disk


def test_corrupted_index_file_while_serving(private_dirs: tuple[Path, Path]) -> None:
    data_dir, index_dir = private_dirs
    engine = open_engine(data_dir, index_dir, threshold=0.5)
    with TestClient(create_app(base_settings(data_dir, index_dir), engine)) as client:
        expected = ask(client, Q_INPLACE).json()
        assert expected["match"]["id"] == entry_id(Q_INPLACE)
        garbage = b"\x00garbage, not a faiss index\xff" * 100
        (index_dir / VECTORS).write_bytes(garbage)

        # answering goes on from memory, including questions not seen before (no answer cache)
        for question in (Q_INPLACE, Q_SIDECAR, "sidecar inject"):
            r = ask(client, question)
            assert r.status_code == 200
            assert_answer_contract(r.json())
        assert ask(client, Q_INPLACE).json()["match"] == expected["match"]
        assert client.get("/readyz").status_code == 200

        # a new engine on that folder notices and rebuilds the index
        manifest = DenseIndex.read_manifest(index_dir)
        assert manifest is not None
        reopened = open_engine(data_dir, index_dir, threshold=0.5)
        assert (index_dir / VECTORS).read_bytes() != garbage
        loaded = DenseIndex.load(index_dir, HashEncoder().name, reopened.kb.data_hash)
        assert len(loaded) == 15
        assert reopened.ask(Q_INPLACE).model_dump(mode="json")["match"] == expected["match"]

        # and so does a hot reload
        (index_dir / VECTORS).write_bytes(garbage)
        r = client.post("/admin/reload?wait=true", headers=AUTH)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert (index_dir / VECTORS).read_bytes() != garbage
        assert ask(client, Q_INPLACE).json()["match"] == expected["match"]


def test_truncated_manifest_is_rebuilt(private_dirs: tuple[Path, Path]) -> None:
    data_dir, index_dir = private_dirs
    open_engine(data_dir, index_dir)
    (index_dir / MANIFEST).write_text('{"format": 2, "mod', encoding="utf-8")
    engine = open_engine(data_dir, index_dir)
    assert engine.built
    match = engine.ask(Q_SIDECAR).match
    assert match is not None and match.id == entry_id(Q_SIDECAR)
    assert DenseIndex.read_manifest(index_dir) is not None


# --------------------------------------------------------------------------- property tests


@FUZZ
@given(question=st.text(max_size=300))
@example(question="\x00")
@example(question="\u200b\u200e\ufeff")
@example(question="😀" * 50)
@example(question="\u202e" + Q_SIDECAR)
@example(question="a" * 2001)
def test_any_text_question_is_200_or_422(client: TestClient, question: str) -> None:
    r = ask(client, question)
    assert r.status_code < 500, r.text
    if not normalise(question) or len(question) > 2000:
        err = assert_error(r, 422, "invalid_request")
        assert err["message"].startswith("question")
    else:
        assert r.status_code == 200, r.text
        body = r.json()
        assert_answer_contract(body)
        assert body["question"] == as_asked(question)  # minus controls and bidirectional overrides


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
ask_like = st.fixed_dictionaries({"question": json_values | st.text(max_size=50)},
                                 optional={"top_k": json_values | st.integers(-3, 14), "x": json_values})


@FUZZ
@given(value=json_values | ask_like)
@example(value={"question": Q_SIDECAR, "top_k": float("nan")})
@example(value={"question": Q_SIDECAR, "top_k": float("inf")})
@example(value={"question": Q_SIDECAR, "top_k": 3.0})
@example(value={"question": Q_SIDECAR, "top_k": True})
@example(value={"question": Q_SIDECAR, "top_k": 10 ** 30})
def test_any_json_body_is_200_or_4xx(client: TestClient, value: Any) -> None:
    r = client.post("/api/ask", content=json.dumps(value).encode(), headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 422), (r.status_code, r.text)
    if r.status_code == 200:
        assert isinstance(value, dict) and isinstance(value["question"], str)
        assert_answer_contract(r.json())
    else:
        assert_error(r, 422, "invalid_request")


@FUZZ
@given(body=st.binary(max_size=600),
       content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                                     "application/problem+json", "", "application/x-www-form-urlencoded"]))
@example(body=b"\xef\xbb\xbf{\"question\": \"sidecar\"}", content_type="application/json")
@example(body=b"\xff\xfe{\x00", content_type="application/json")
@example(body=b'{"question": "\\ud83d"}', content_type="application/json")
@example(body=b"[" * 600, content_type="application/json")
def test_any_byte_body_is_never_5xx(client: TestClient, body: bytes, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/api/ask", content=body, headers=headers)
    assert r.status_code in (200, 400, 415, 422), (r.status_code, r.text)
    if r.status_code == 200:
        assert_answer_contract(r.json())
    else:
        assert_error(r, r.status_code)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
@example(text="share")
@example(text="<!here> & <script>")
@example(text="```" * 30)
def test_any_slack_text_gets_a_block_kit_reply(client: TestClient, text: str) -> None:
    r = post_slack(client, text)
    assert r.status_code == 200, r.text
    payload = r.json()
    assert payload["response_type"] in ("ephemeral", "in_channel")
    assert 1 <= len(payload["blocks"]) <= 50
    for block in payload["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"].encode("utf-16-le")) // 2 <= 3000
    if "<" in text:
        assert "<script" not in json.dumps(payload) and "<!here" not in json.dumps(payload)


MD_FRAGMENTS = st.sampled_from([
    "#### **Q**：", "#### Q：", "### Q: ", "## ", "# ", "###### ", "**A**：", "A：", "A: ", "答：", "问：",
    "```", "```bash", "```yaml\n", "~~~", "````", "    ", "> ", "- ", "1. ", "\n", "\n\n", "？", "?",
    "**", "__", "`", "[link](file:///x)", "<file://y>", "<b>", "\t", "\r\n", "\x00", "原地升级", "sidecar",
])
markdownish = st.lists(MD_FRAGMENTS | st.text(max_size=12), max_size=60).map("".join)


@settings(max_examples=300, deadline=None, database=None)
@given(text=markdownish)
@example(text="#### **Q**：a？\n```\n## x\n")
@example(text="#### **Q**：\n**A**：x\n")
@example(text="#### Q：q\n\n#### Q：q\n**A**：a")
@example(text="```\n#### **Q**：inside a fence?\n```")
def test_parse_markdown_never_raises(text: str) -> None:
    result = parse_markdown(text, source="fuzz.md")
    assert isinstance(result, ParseResult)
    assert isinstance(result.entries, list) and isinstance(result.warnings, list)
    for entry in result.entries:
        assert entry.question.strip() and entry.answer
        assert all(p.markdown.strip() for p in entry.answer if isinstance(p, TextPart))
        assert entry.id == entry_id(entry.question)
        assert entry.source_file == "fuzz.md" and entry.line >= 1
        assert all(c.language and c.language == c.language.lower() for c in entry.commands)
        assert Entry.model_validate_json(entry.model_dump_json()).model_dump() == entry.model_dump()  # JSON-safe
    for warning in result.warnings:
        assert warning.source == "fuzz.md" and warning.line >= 0 and warning.message


# --------------------------------------------------------------------------- schemathesis


# The schema is loaded at import (parametrize needs it); the engine is attached by a fixture, so the
# engine built for the session serves these requests too.
# Failed authentications are not limited here: schemathesis tries hundreds of wrong tokens, and the 429 that
# follows is tested in test_server_hostile.py (and documented on /admin/reload and /slack/command).
_SCHEMA_APP = create_app(base_settings(Path("/nonexistent/data"), Path("/nonexistent/index"),
                                       auth_failure_limit="off"), engine=None)
_SCHEMA = schemathesis.openapi.from_asgi(
    "/openapi.json", _SCHEMA_APP,
    config=SchemathesisConfig.from_dict({"generation": {"max-examples": 30}, "seed": 20240601}))


@pytest.fixture
def schema_app_engine(shared_engine: Engine) -> None:
    _SCHEMA_APP.state.holder.set(Engine(shared_engine.kb, shared_engine.encoder, shared_engine.dense))


@_SCHEMA.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_conformance(case: Any, schema_app_engine: None) -> None:
    response = case.call_and_validate()
    assert response.status_code < 500
    if case.path == "/api/ask":
        assert response.status_code != 503  # the engine is attached
    model = {"/api/ask": Answer, "/api/faq/{entry_id}": Entry}.get(case.path)
    if model is not None:  # beyond the schema: the body is the contract itself, nothing coerced or extra
        body = response.json()
        checked = (model if response.status_code == 200 else ErrorBody).model_validate(body)
        assert checked.model_dump(mode="json") == body
