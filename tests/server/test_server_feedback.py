"""Records on the server: every surface records, feedback, the report, and answers that never
depend on the records database (a real PostgreSQL server stopped mid-test; tests/pg.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from server_test_support import (
    ADMIN_TOKEN,
    Q_CLONESET,
    Q_INPLACE,
    Q_SIDECAR,
    QUESTIONS,
    assert_answer_contract,
    assert_error,
    engine_like,
    flush,
    post_slack,
    table,
    write_data,
)

from qa.cli import main as qa_main
from qa.records import db, pseudonym
from qa.records.schema import clicks, feedback, questions
from qa.search import Engine
from server.app import create_app
from server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
postgres, pg_url = pg.fixtures()
BREAD = ["How do I bake bread?", "How do I bake bread?", "how do I bake bread", "What is the weather in Berlin?"]
CLIENT_ADDRESS = "203.0.113.77"
SLACK_TEAM, SLACK_USER = "T0SECRETTEAM", "U0SECRETUSER"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'records.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def recording(make_settings: Callable[..., ServerSettings], shared_engine: Engine
              ) -> Iterator[Callable[..., TestClient]]:
    """Opens a client on an app that records into ``url`` (from a fixed client address)."""
    opened: list[TestClient] = []

    def make(url: str, **overrides: Any) -> TestClient:
        settings = make_settings(record=True, database_url=url, **overrides)
        c = TestClient(create_app(settings, engine_like(shared_engine)), client=(CLIENT_ADDRESS, 4242))
        c.__enter__()
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.__exit__(None, None, None)



def stored(url: str) -> int:
    """Questions stored so far (0 while the database or its tables do not exist yet)."""
    try:
        return len(table(url, questions))
    except sa.exc.OperationalError:
        return 0



def metric(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}{{{want}}} (\S+)$" if labels else rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


# --------------------------------------------------------------------------- every surface records


def test_every_surface_records_and_closing_the_app_stores_what_is_queued(
        recording: Callable[..., TestClient], records_url: str) -> None:
    c = recording(records_url)
    api = c.post("/api/ask", json={"question": Q_CLONESET})
    page = c.post("/api/ask", json={"question": Q_INPLACE, "tree": True}, headers={"X-QA-Surface": "page"})
    claimed = c.post("/api/ask", json={"question": Q_SIDECAR}, headers={"X-QA-Surface": "slack"})
    slack = post_slack(c, "How do I bake bread?", team_id=SLACK_TEAM, user_id=SLACK_USER)
    assert {r.status_code for r in (api, page, claimed, slack)} == {200}
    c.__exit__(None, None, None)  # the lifespan's end: stores what is queued (no flush here)
    got = {r["answer_id"]: r for r in table(records_url, questions)}
    a, p, cl = (assert_answer_contract(r.json()) for r in (api, page, claimed))
    assert got[a.answer_id]["surface"] == "api" and got[p.answer_id]["surface"] == "page"
    assert got[cl.answer_id]["surface"] == "api"  # a request cannot say it is Slack
    (s,) = [r for r in got.values() if r["surface"] == "slack"]
    assert s["question"] == "How do I bake bread?" and s["entry_id"] is None  # refused
    row = got[a.answer_id]
    assert (row["question"], row["language"], row["entry_id"]) == (Q_CLONESET, a.language, a.match.id)  # type: ignore[union-attr]
    assert json.loads(row["alternatives"]) == [x.id for x in a.alternatives]
    assert row["confidence"] == pytest.approx(a.match.confidence, abs=1e-4)  # type: ignore[union-attr]
    assert row["latency_ms"] == pytest.approx(a.took_ms, abs=1e-3)
    assert len(got) == 4


def test_no_raw_slack_id_or_client_address_is_stored_anywhere(
        recording: Callable[..., TestClient], records_url: str) -> None:
    c = recording(records_url, record_salt="test-salt")
    first = c.post("/api/ask", json={"question": Q_CLONESET}).json()
    post_slack(c, Q_INPLACE, team_id=SLACK_TEAM, user_id=SLACK_USER)
    c.post("/api/ask", json={"question": Q_SIDECAR, "after": {"answer_id": first["answer_id"],
                                                              "entry_id": first["alternatives"][0]["id"]}})
    assert c.post("/api/feedback", json={"answer_id": first["answer_id"], "helpful": False,
                                         "comment": "wrong"}).status_code == 201
    flush(c)
    e = db.make_engine(records_url)
    values = []
    with e.connect() as conn:
        for name in sa.inspect(e).get_table_names():  # every column of every table
            for r in conn.execute(sa.text(f"SELECT * FROM {name}")):
                values += [str(v) for v in r]
    e.dispose()
    assert len(values) > 20
    for raw in (CLIENT_ADDRESS, SLACK_USER, SLACK_TEAM, "testclient"):
        assert not any(raw in v for v in values), raw
    askers = {r["surface"]: r["asker"] for r in table(records_url, questions)}
    assert askers["slack"] == pseudonym(f"slack:{SLACK_TEAM}:{SLACK_USER}", "test-salt")
    assert askers["api"] == pseudonym(f"ip:{CLIENT_ADDRESS}", "test-salt")


def test_a_clicked_alternative_is_recorded(recording: Callable[..., TestClient], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    c = recording(url)
    first = c.post("/api/ask", json={"question": Q_CLONESET}).json()
    alt = first["alternatives"][0]["id"]
    second = c.post("/api/ask", json={"question": "…", "after": {"answer_id": first["answer_id"], "entry_id": alt}},
                    headers={"X-QA-Surface": "page"})
    assert second.status_code == 200
    unknown = c.post("/api/ask", json={"question": Q_CLONESET,
                                       "after": {"answer_id": first["answer_id"], "entry_id": "nosuchid"}})
    assert unknown.status_code == 200  # an unknown entry is not recorded, and the answer is given
    assert_error(c.post("/api/ask", json={"question": "x", "after": {"answer_id": "nope", "entry_id": alt}}), 422)
    flush(c)
    (click,) = table(url, clicks)
    assert (click["answer_id"], click["entry_id"], click["surface"], click["next_answer_id"]) == \
        (first["answer_id"], alt, "page", second.json()["answer_id"])


# --------------------------------------------------------------------------- feedback


def test_feedback(recording: Callable[..., TestClient], records_url: str) -> None:
    c = recording(records_url)
    answer_id = c.post("/api/ask", json={"question": Q_CLONESET}).json()["answer_id"]
    # at once: the record may still be queued
    r = c.post("/api/feedback", json={"answer_id": answer_id, "helpful": False, "comment": "mail me: a@b.example"})
    assert r.status_code == 201, r.text
    assert r.json() == {"answer_id": answer_id, "helpful": False, "status": "created"}
    r = c.post("/api/feedback", json={"answer_id": answer_id, "helpful": True}, headers={"X-QA-Surface": "page"})
    assert r.status_code == 200 and r.json()["status"] == "updated"
    (row,) = table(records_url, feedback)
    assert (row["helpful"], row["comment"], row["surface"]) == (True, "mail me: [EMAIL]", "page")
    unknown = assert_error(c.post("/api/feedback", json={"answer_id": "0" * 32, "helpful": True}), 404, "not_found")
    assert "0" * 32 in unknown["message"]
    assert metric(c, "qa_records_written_total", kind="feedback") == 2


@pytest.mark.parametrize(("body", "headers", "status"), [
    (b'{"answer_id": "x"', {"content-type": "application/json"}, 400),
    (b'{"answer_id": "' + b"a" * 32 + b'", "helpful": true}', {"content-type": "text/plain"}, 415),
    (json.dumps({"answer_id": "a" * 32, "helpful": "yes"}).encode(), {"content-type": "application/json"}, 422),
    (json.dumps({"answer_id": "not hex", "helpful": True}).encode(), {"content-type": "application/json"}, 422),
    (json.dumps({"answer_id": "a" * 32, "helpful": True, "comment": "x" * 2001}).encode(),
     {"content-type": "application/json"}, 422),
    (json.dumps({"answer_id": "a" * 32, "helpful": True, "extra": 1}).encode(), {"content-type": "application/json"},
     422),
    (json.dumps({"answer_id": "a" * 32, "helpful": True, "comment": "x" * 70_000}).encode(),
     {"content-type": "application/json"}, 413),
])
def test_feedback_is_validated_like_ask(recording: Callable[..., TestClient], tmp_path: Path, body: bytes,
                                        headers: dict[str, str], status: int) -> None:
    c = recording(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    assert_error(c.post("/api/feedback", content=body, headers=headers), status)


def test_a_comment_of_2000_characters_is_taken(recording: Callable[..., TestClient], tmp_path: Path) -> None:
    c = recording(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    answer_id = c.post("/api/ask", json={"question": Q_CLONESET}).json()["answer_id"]
    r = c.post("/api/feedback", json={"answer_id": answer_id, "helpful": False, "comment": "长" * 2000})
    assert r.status_code == 201, r.text


def test_recording_off(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    c = make_client(record=False, state_dir=tmp_path / "state")
    answer_id = c.post("/api/ask", json={"question": Q_CLONESET}).json()["answer_id"]
    assert_error(c.post("/api/feedback", json={"answer_id": answer_id, "helpful": True}), 404)
    assert not (tmp_path / "state").exists()
    assert "qa_records_written_total" not in c.get("/metrics").text


# --------------------------------------------------------------------------- a database that is down


def test_a_stopped_postgres_never_turns_an_answer_into_an_error(
        recording: Callable[..., TestClient], postgres: Any, pg_url: str) -> None:
    c = recording(pg_url)
    first = c.post("/api/ask", json={"question": Q_CLONESET})
    assert first.status_code == 200
    flush(c)
    postgres.stop()
    try:
        for q in QUESTIONS:
            start = time.perf_counter()
            r = c.post("/api/ask", json={"question": q})
            assert r.status_code == 200 and time.perf_counter() - start < 1.0, r.text
            assert_answer_contract(r.json())
        assert post_slack(c, Q_CLONESET).status_code == 200
        deadline = time.monotonic() + 10
        while metric(c, "qa_records_errors_total", stage="write") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(c, "qa_records_errors_total", stage="write") >= 1
        assert metric(c, "qa_records_waiting") >= 1
        error = assert_error(c.post("/api/feedback", json={"answer_id": first.json()["answer_id"], "helpful": True}),
                             503)
        assert "unavailable" in error["message"]
        assert c.get("/readyz").status_code == 200
    finally:
        postgres.start()
    flush(c)  # the batch held during the outage is written once the server is back
    assert len(table(pg_url, questions)) == 1 + len(QUESTIONS) + 1
    assert metric(c, "qa_records_dropped_total", reason="queue_full") == 0


# --------------------------------------------------------------------------- the report


def test_qa_report_and_admin_report_agree(recording: Callable[..., TestClient], records_url: str,
                                          shared_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    c = recording(records_url)
    asked = [c.post("/api/ask", json={"question": q}).json() for q in [Q_CLONESET, Q_INPLACE, *BREAD]]
    post_slack(c, Q_CLONESET)
    c.post("/api/feedback", json={"answer_id": asked[0]["answer_id"], "helpful": True})
    c.post("/api/feedback", json={"answer_id": asked[1]["answer_id"], "helpful": False, "comment": "too short"})
    flush(c)
    assert_error(c.get("/admin/report"), 401)
    assert_error(c.get("/admin/report?since=yesterday", headers=AUTH), 422)
    r = c.get("/admin/report?since=1d&similarity=0.8", headers=AUTH)
    assert r.status_code == 200, r.text
    served = r.json()

    data_dir, index_dir = shared_dirs
    for k, v in {"QA_DATABASE_URL": records_url, "QA_DATA_DIR": str(data_dir), "QA_MODEL": "hash",
                 "QA_INDEX_DIR": str(index_dir)}.items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    assert qa_main(["report", "--since", "1d", "--format", "json", "--similarity", "0.8"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for body in (served, printed):
        body.pop("since"), body.pop("until")
    assert printed == served

    t = served["totals"]
    assert (t["questions"], t["answered"], t["refused"], t["helpful"], t["unhelpful"]) == (7, 3, 4, 1, 1)
    assert {v["name"]: v["questions"] for v in served["by_surface"]} == {"api": 6, "slack": 1}
    assert served["unanswered"][0] == {"count": 3, "examples": ["How do I bake bread?", "how do I bake bread"]}
    assert served["unanswered"][1]["count"] == 1
    assert served["unhelpful"][0]["comment"] == "too short"
    assert served["unhelpful"][0]["entry_question"] == Q_INPLACE

    for fmt, needle in (("table", "How do I bake bread?"), ("csv", "section,name,metric,value")):
        assert qa_main(["report", "--since", "1d", "--format", fmt]) == 0
        assert needle in capsys.readouterr().out


def test_qa_report_without_a_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("QA_DATABASE_URL", raising=False)
    monkeypatch.setenv("QA_STATE_DIR", str(tmp_path / "nothing"))
    assert qa_main(["report"]) == 1
    assert "no records database" in capsys.readouterr().err
    assert qa_main(["report", "--since", "last week"]) == 2


def test_openapi_documents_feedback_and_the_click(make_client: Callable[..., TestClient]) -> None:
    doc = make_client().get("/openapi.json").json()
    op = doc["paths"]["/api/feedback"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["answer_id", "helpful"] and schema["properties"]["comment"]["anyOf"][0]["maxLength"] == 2000
    assert {"200", "201", "404", "415", "422", "503"} <= set(op["responses"])
    after = doc["paths"]["/api/ask"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["after"]
    assert after["anyOf"][0]["required"] == ["answer_id", "entry_id"]  # inline: no $ref to a missing component
    assert "/admin/report" in doc["paths"]


# --------------------------------------------------------------------------- a restart loses nothing


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_on_the_real_server_stores_every_record(tmp_path: Path) -> None:
    port = _free_port()
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    env = {**os.environ, "QA_MODEL": "hash", "QA_DATA_DIR": str(write_data(tmp_path / "data")),
           "QA_INDEX_DIR": str(tmp_path / "index"), "QA_PORT": str(port), "QA_HOST": "127.0.0.1",
           "QA_RATE_LIMIT": "off", "QA_DATABASE_URL": url, "QA_THRESHOLD": "0.3"}
    env.pop("QA_RECORD", None)  # the server's default: on
    proc = subprocess.Popen([sys.executable, "-m", "server.main"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        ids = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            def ask(i: int) -> None:
                r = http.post("/api/ask", json={"question": QUESTIONS[i % len(QUESTIONS)]})
                assert r.status_code == 200
                ids.append(r.json()["answer_id"])

            ask(0)
            while not stored(url):
                assert time.monotonic() < deadline, "the first record was never written"
                time.sleep(0.05)
            # Another writer holds the database: the server's records wait in its queue.
            lock = sqlite3.connect(tmp_path / "records.sqlite3", isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            for i in range(1, 60):
                ask(i)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert proc.poll() is None, "the server quit without storing its queued records"
        lock.execute("ROLLBACK")  # the database is free again: the shutdown stores the queue, then exits
        lock.close()
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        log = proc.communicate()[0]
    assert "Traceback" not in log, log
    assert sorted(r["answer_id"] for r in table(url, questions)) == sorted(ids)


def test_the_helpers_other_surfaces_call(recording: Callable[..., TestClient], tmp_path: Path) -> None:
    """What the Slack buttons will call: a click and a feedback, outside any HTTP route."""
    import asyncio

    from server.feedback import record_click, store_feedback

    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    c = recording(url)
    first = c.post("/api/ask", json={"question": Q_CLONESET}).json()
    record_click(c.app, first["answer_id"], first["alternatives"][0]["id"], "slack")  # type: ignore[arg-type]
    assert asyncio.run(store_feedback(c.app, first["answer_id"], True, None, "slack")) is True  # type: ignore[arg-type]
    assert asyncio.run(store_feedback(c.app, first["answer_id"], False, "no", "slack")) is False  # type: ignore[arg-type]
    flush(c)
    assert [r["surface"] for r in table(url, clicks)] == ["slack"]
    assert [(r["helpful"], r["comment"]) for r in table(url, feedback)] == [(False, "no")]
