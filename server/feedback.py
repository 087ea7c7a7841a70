"""Records on the server: the recorder's life with the app, recording each answer, feedback
(``POST /api/feedback``) and the maintainer's report (``GET /admin/report``).

Recording never slows or fails an answer: the routes only queue a record (see
:mod:`qa.records.recorder`), and any error while doing so is logged and swallowed.

Who asked is kept only as a pseudonym: the client address (API and page) or the Slack team and
user, hashed with the salt by the writer thread. The surface of an API request is ``api`` unless
the request says ``X-QA-Surface: page`` (what the chat page sends).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from qa.contract import AfterClick, Answer, FeedbackReceipt, FeedbackRequest
from qa.records import Recorder, RecorderHooks, RecordsUnavailable, UnknownAnswer, database_url, make_engine
from qa.records import db as records_db
from qa.report import DEFAULT_SIMILARITY, build_report, parse_since
from server.admin import require_admin
from server.models import JSON_BODY_ERRORS, ErrorModel
from server.observability import Metrics
from server.settings import ServerSettings

log = logging.getLogger(__name__)

router = APIRouter()

SURFACE_HEADER = "x-qa-surface"
PAGE_SURFACES = frozenset({"page", "api"})  # what a request may say it comes from (never slack or cli)


class RecordMetrics(RecorderHooks):
    """The recorder's counters in the app's /metrics."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.written_total = Counter("qa_records_written_total", "Records stored, by kind", ["kind"], registry=r)
        self.errors_total = Counter("qa_records_errors_total", "Failed operations on the records database "
                                    "(write: a batch not written, kept and retried)", ["stage"], registry=r)
        self.dropped_total = Counter("qa_records_dropped_total", "Records given up, by reason", ["reason"],
                                     registry=r)
        self.deleted_total = Counter("qa_records_deleted_total", "Rows deleted by the retention", registry=r)
        self.waiting = Gauge("qa_records_waiting", "Records queued, not yet stored", registry=r)

    def written(self, kind: str, n: int) -> None:
        self.written_total.labels(kind).inc(n)

    def failed(self, stage: str) -> None:
        self.errors_total.labels(stage).inc()

    def dropped(self, reason: str, n: int) -> None:
        self.dropped_total.labels(reason).inc(n)

    def deleted(self, n: int) -> None:
        self.deleted_total.inc(n)


def install(app: FastAPI, settings: ServerSettings, metrics: Metrics) -> Recorder | None:
    """Puts the records database (``app.state.records_db``, also read by the report) and, unless
    ``QA_RECORD=false``, the recorder (``app.state.recorder``) on the app. Nothing connects yet."""
    engine = make_engine(database_url(settings))
    app.state.records_db = engine
    recorder = None
    if settings.record:
        hooks = RecordMetrics(metrics)
        salt = settings.record_salt.get_secret_value() if settings.record_salt is not None else None
        recorder = Recorder(engine, salt=salt, retention_days=settings.record_days, hooks=hooks)
        hooks.waiting.set_function(lambda: recorder.waiting if recorder is not None else 0)
    app.state.recorder = recorder
    return recorder


def start(app: FastAPI) -> None:
    """At the app's start: the writer thread (it migrates the database first)."""
    recorder: Recorder | None = getattr(app.state, "recorder", None)
    if recorder is not None:
        recorder.start()


async def stop(app: FastAPI) -> None:
    """At the app's end (after the requests in flight): stores what is queued, then stops the writer."""
    recorder: Recorder | None = getattr(app.state, "recorder", None)
    if recorder is not None:
        await run_in_threadpool(recorder.close)


def request_surface(request: Request) -> str:
    """``page`` when the request says so (``X-QA-Surface: page``), else ``api``."""
    said = request.headers.get(SURFACE_HEADER, "").strip().lower()
    return said if said in PAGE_SURFACES else "api"


def record_ask(request: Request, answer: Answer, after: AfterClick | None = None) -> None:
    """Queues the record of an answer given by ``POST /api/ask`` (and of the click it followed)."""
    recorder: Recorder | None = getattr(request.app.state, "recorder", None)
    if recorder is None:
        return
    try:
        surface = request_surface(request)
        client = request.client.host if request.client is not None else ""
        recorder.record_answer(answer, surface, f"ip:{client}" if client else None)
        if after is not None:
            holder = request.app.state.holder
            if holder.engine is not None and after.entry_id in holder.engine.kb.by_id:
                recorder.record_click(after.answer_id, after.entry_id, surface, answer.answer_id)
    except Exception:  # never fail an answer for its record
        log.exception("records: could not queue the record of an answer")


def record_slack(request: Request, answer: Answer, form: dict[str, str]) -> None:
    """Queues the record of an answer given by the Slack command (the asker: team and user, hashed)."""
    recorder: Recorder | None = getattr(request.app.state, "recorder", None)
    if recorder is None:
        return
    try:
        recorder.record_answer(answer, "slack", f"slack:{form.get('team_id', '')}:{form.get('user_id', '')}")
    except Exception:
        log.exception("records: could not queue the record of an answer")


_FEEDBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {"model": FeedbackReceipt, "description": "Feedback replaced (the answer had feedback already)"},
    **JSON_BODY_ERRORS,
    404: {"model": ErrorModel, "description": "No recorded answer with that id, or recording is off"},
    422: {"model": ErrorModel, "description": "Invalid fields (answer_id not 32 hex digits, comment too long)"},
    503: {"model": ErrorModel, "description": "The records database is unavailable"},
}


@router.post("/api/feedback", tags=["api"], status_code=201, response_model=FeedbackReceipt,
             responses=_FEEDBACK_ERRORS, summary="Say whether an answer helped",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": FeedbackRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}})
async def post_feedback(request: Request) -> Response:
    """👍 or 👎 on an answer (by its `answer_id`), with an optional comment: 201 the first time,
    200 when it replaces the answer's earlier feedback (a comment is kept unless a new one is sent)."""
    from server.api import parse_json_body  # here: server.api imports this module

    body = await parse_json_body(request, FeedbackRequest)
    assert isinstance(body, FeedbackRequest)
    recorder: Recorder | None = getattr(request.app.state, "recorder", None)
    if recorder is None:
        raise HTTPException(404, "feedback is not recorded on this server (QA_RECORD=false)")
    try:
        created = await run_in_threadpool(recorder.feedback, body.answer_id, body.helpful, body.comment,
                                          request_surface(request))
    except UnknownAnswer:
        raise HTTPException(404, f"no recorded answer with answer_id {body.answer_id!r}") from None
    except RecordsUnavailable:
        raise HTTPException(503, "the feedback cannot be stored now (the records database is unavailable); "
                                 "try again later") from None
    receipt = FeedbackReceipt(answer_id=body.answer_id, helpful=body.helpful,
                              status="created" if created else "updated")
    return JSONResponse(receipt.model_dump(), status_code=201 if created else 200)


@router.get("/admin/report", tags=["admin"], summary="The maintainer's report (what `qa report --format json` "
            "prints)", responses={200: {"description": "The report (qa.report.Report)"},
                                  401: {"model": ErrorModel, "description": "Bad or missing token"},
                                  404: {"model": ErrorModel, "description": "No admin token set"},
                                  429: {"model": ErrorModel, "description": "Too many failed tokens from this "
                                                                            "client"},
                                  422: {"model": ErrorModel, "description": "Invalid query parameter"},
                                  503: {"model": ErrorModel, "description": "Not ready, or the records "
                                                                            "database is unavailable"}})
async def get_report(request: Request,
                     since: str = Query("7d", description="7d, 12h, 30m, 2w, or a date (UTC)", max_length=64),
                     similarity: float = Query(DEFAULT_SIMILARITY, gt=0.0, le=1.0,
                                               description="cosine from which unanswered questions are grouped"),
                     top: int = Query(20, ge=1, le=500, description="unanswered groups listed at most")) -> Response:
    """Volume by surface and language, answered / refused / 👍 / 👎 rates, each entry's figures, the
    most frequent unanswered questions grouped by meaning, and the answers marked unhelpful."""
    from server.api import current_engine  # here: server.api imports this module

    await require_admin(request)
    try:
        start_at = parse_since(since)
    except ValueError as exc:
        raise HTTPException(422, f"since: {exc}".replace("--since: ", "")) from None
    engine = current_engine(request)
    records = request.app.state.records_db

    def build() -> str:
        records_db.upgrade(records)  # a database no writer has touched yet gets its tables
        report = build_report(records, since=start_at, encoder=engine.encoder,
                              titles={e.id: e.question for e in engine.kb.entries}, similarity=similarity, top=top)
        return report.model_dump_json()

    try:
        body = await run_in_threadpool(build)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("records: the report could not be built: %s", exc.__class__.__name__)
        raise HTTPException(503, "the records database is unavailable") from None
    return Response(body, media_type="application/json")


# --------------------------------------------------------------------------- for other surfaces (Slack buttons)


def record_click(app: FastAPI, answer_id: str, entry_id: str, surface: str, next_answer_id: str | None = None) -> None:
    """Queues "alternative ``entry_id`` was clicked under answer ``answer_id``" (no-op when recording
    is off; never raises). The page does this through ``POST /api/ask``'s ``after`` field."""
    recorder: Recorder | None = getattr(app.state, "recorder", None)
    if recorder is None:
        return
    try:
        recorder.record_click(answer_id, entry_id, surface, next_answer_id)
    except Exception:
        log.exception("records: could not queue a click")


async def store_feedback(app: FastAPI, answer_id: str, helpful: bool, comment: str | None, surface: str) -> bool:
    """Stores a 👍/👎 from any surface (what ``POST /api/feedback`` does).

    Returns:
        True for the answer's first feedback, False when it replaced one.

    Raises:
        UnknownAnswer: no recorded answer has this id (also when recording is off).
        RecordsUnavailable: the records database is down.
    """
    recorder: Recorder | None = getattr(app.state, "recorder", None)
    if recorder is None:
        raise UnknownAnswer(answer_id)
    return bool(await run_in_threadpool(recorder.feedback, answer_id, helpful, comment, surface))
