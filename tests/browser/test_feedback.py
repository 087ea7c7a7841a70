"""Feedback from the chat page: 👍, 👎 with a comment, and a click on an alternative, each read back
from the SQLite records database the test server writes (in a temporary QA_STATE_DIR)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import STRUCTURE_FAQ, BrowserPage, LiveServer, _free_port, ask, screenshot

Q_LISTS = "How does the page show lists, emphasis and links?"
Q_PROGRESS = "如何检查原地升级的进度？"


class RecordingServer(LiveServer):
    app: Any
    state_dir: Path


@pytest.fixture(scope="module")
def recording_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordingServer]:
    """The app on structure_faq.md (HashEncoder), recording into a SQLite file in a temporary state dir."""
    import httpx
    import uvicorn

    from qa.encoders import HashEncoder
    from qa.search import Engine
    from qa.settings import Settings
    from server.app import create_app
    from server.settings import ServerSettings

    root = tmp_path_factory.mktemp("feedback")
    (root / "data" / "faq").mkdir(parents=True)
    shutil.copyfile(STRUCTURE_FAQ, root / "data" / "faq" / STRUCTURE_FAQ.name)
    engine = Engine.from_settings(Settings(data_dir=root / "data", faq_dir=None, index_dir=root / "index"),
                                  encoder=HashEncoder())
    settings = ServerSettings(rate_limit="off", data_dir=root / "data", faq_dir=None, index_dir=root / "index",
                              record=True, state_dir=root / "state", database_url=None)
    app = create_app(settings, engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-feedback-tests", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail(f"{url}/readyz did not answer 200 within 30 s")
            time.sleep(0.05)
        live = RecordingServer(url, engine)
        live.app, live.state_dir = app, root / "state"
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def rows(server: RecordingServer, table: str) -> list[dict[str, Any]]:
    """The rows of a records table, once what the server queued is written."""
    import sqlalchemy as sa

    from qa.records import db
    from qa.records.schema import clicks, feedback, questions

    assert server.app.state.recorder.flush(10)
    t = {"questions": questions, "feedback": feedback, "clicks": clicks}[table]
    engine = db.make_engine(f"sqlite:///{server.state_dir / db.SQLITE_FILE}")
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t))]
    finally:
        engine.dispose()


def test_thumbs_up_down_with_a_comment_and_a_clicked_alternative_are_recorded(
        new_page: Any, recording_server: RecordingServer) -> None:
    from playwright.sync_api import expect

    bp: BrowserPage = new_page(server=recording_server)
    bp.open()
    page = bp.page

    # 👍 on a first answer
    first = ask(page, Q_LISTS)
    expect(first).to_have_attribute("data-state", "answer")
    box = first.locator(".feedback")
    first_id = box.get_attribute("data-answer-id")
    assert first_id and len(first_id) == 32
    yes = box.get_by_role("button", name="Helpful", exact=True)
    no = box.get_by_role("button", name="Not helpful")
    expect(yes).to_have_attribute("aria-pressed", "false")
    yes.click()
    expect(box.locator(".feedback-status")).to_have_text("Thanks for your feedback!")
    expect(yes).to_have_attribute("aria-pressed", "true")
    expect(yes).to_be_disabled()
    expect(no).to_be_disabled()
    got = {r["answer_id"]: r for r in rows(recording_server, "feedback")}
    assert got[first_id]["helpful"] is True and got[first_id]["surface"] == "page"
    asked = {r["answer_id"]: r for r in rows(recording_server, "questions")}
    assert asked[first_id]["surface"] == "page"  # the page says X-QA-Surface: page

    # 👎 with a comment on a second answer
    second = ask(page, Q_PROGRESS)
    box2 = second.locator(".feedback")
    second_id = box2.get_attribute("data-answer-id")
    assert second_id and second_id != first_id
    box2.get_by_role("button", name="Not helpful").click()
    comment = box2.get_by_label("What was missing or wrong? (optional)")
    expect(comment).to_be_focused()
    comment.fill("The command does not say which namespace.")
    box2.locator(".feedback-comment-actions").scroll_into_view_if_needed()
    screenshot(page, "feedback-comment.png")
    box2.get_by_role("button", name="Send").click()
    expect(box2.locator(".feedback-status")).to_have_text("Thanks for your feedback!")
    expect(box2.locator(".feedback-comment")).to_have_count(0)
    got = {r["answer_id"]: r for r in rows(recording_server, "feedback")}
    assert got[second_id]["helpful"] is False
    assert got[second_id]["comment"] == "The command does not say which namespace."

    # a click on an alternative: recorded with the answer it followed and the answer it led to
    alt = second.locator(".alts .alt").first
    entry = alt.get_attribute("data-id")
    assert entry and alt.get_attribute("data-after") == second_id
    before = page.locator("#log .msg.bot").count()
    alt.click()
    third = page.locator("#log .msg.bot").nth(before)
    expect(third).not_to_have_attribute("data-state", "pending")
    third_id = third.locator(".feedback").get_attribute("data-answer-id")
    clicks = rows(recording_server, "clicks")
    assert [(c["answer_id"], c["entry_id"], c["surface"], c["next_answer_id"]) for c in clicks] == \
        [(second_id, entry, "page", third_id)]


def test_feedback_in_chinese_and_a_skipped_comment(new_page: Any, recording_server: RecordingServer) -> None:
    from playwright.sync_api import expect

    bp: BrowserPage = new_page(server=recording_server, locale="zh-CN")
    bp.open()
    msg = ask(bp.page, Q_PROGRESS)
    box = msg.locator(".feedback")
    expect(box.locator(".feedback-label")).to_have_text("这个回答有帮助吗？")
    box.get_by_role("button", name="没帮助").click()
    box.get_by_role("button", name="跳过").click()
    expect(box.locator(".feedback-status")).to_have_text("谢谢你的反馈！")
    answer_id = box.get_attribute("data-answer-id")
    got = {r["answer_id"]: r for r in rows(recording_server, "feedback")}
    assert got[answer_id]["helpful"] is False and got[answer_id]["comment"] is None


def test_feedback_is_hidden_when_the_server_does_not_record(new_page: Any,
                                                            recording_server: RecordingServer) -> None:
    from playwright.sync_api import expect

    bp: BrowserPage = new_page(server=recording_server)
    bp.problems.allow_failed_request("/api/feedback")
    bp.open()
    page = bp.page
    # what a server with QA_RECORD=false answers
    page.route("**/api/feedback", lambda route: route.fulfill(
        status=404, content_type="application/json",
        body='{"error": {"code": "not_found", "message": "feedback is not recorded on this server"}}'))
    box = ask(page, Q_LISTS).locator(".feedback")
    box.get_by_role("button", name="Helpful", exact=True).click()
    expect(box).to_be_hidden()


def test_feedback_errors_are_shown_inline(new_page: Any, recording_server: RecordingServer) -> None:
    from playwright.sync_api import expect

    bp: BrowserPage = new_page(server=recording_server)
    bp.problems.allow_failed_request("/api/feedback")
    bp.open()
    page = bp.page
    page.route("**/api/feedback", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"error": {"code": "unavailable", "message": "the records database is unavailable"}}'))
    msg = ask(page, Q_LISTS)
    box = msg.locator(".feedback")
    yes = box.get_by_role("button", name="Helpful", exact=True)
    yes.click()
    expect(box.locator(".feedback-status")).to_have_text(
        "The feedback cannot be saved right now; try again later.")
    expect(yes).to_be_enabled()  # may be tried again
    expect(yes).to_have_attribute("aria-pressed", "false")
