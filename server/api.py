"""HTTP query API: ``POST /api/ask``, ``GET /api/faq``, ``GET /api/faq/{id}``."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from qa.contract import Answer, AskRequest, Entry, EntrySummary, Part, TextPart
from qa.errors import InvalidQuestion, UnknownEntry
from qa.markdown import tree
from qa.search import Engine
from server.feedback import record_ask
from server.models import JSON_BODY_ERRORS, ErrorModel
from server.ratelimit import charge_question

log = logging.getLogger(__name__)

router = APIRouter(tags=["api"])

ERRORS: dict[int | str, dict[str, Any]] = {
    **JSON_BODY_ERRORS,
    422: {"model": ErrorModel, "description": "Invalid fields (empty question, top_k out of 1..10, too long)"},
    503: {"model": ErrorModel, "description": "The index is not loaded yet"},
}


def current_engine(request: Request) -> Engine:
    """The engine being served, or 503 while it loads."""
    holder = request.app.state.holder
    if holder.engine is None:
        raise HTTPException(503, holder.error or "not ready")
    return holder.engine  # type: ignore[no-any-return]


async def read_body(request: Request, limit: int) -> bytes:
    """Reads the body, refusing it with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_json_body(request: Request, model: type[BaseModel]) -> BaseModel:
    """Content type, size, UTF-8, JSON and field checks, each with its own status."""
    settings = request.app.state.settings
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise HTTPException(415, "send the question as application/json")
    raw = await read_body(request, settings.max_body_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "the body is not valid UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    except (ValueError, RecursionError):  # e.g. a 5,000-digit number, or nesting thousands deep
        raise HTTPException(400, "the body is not JSON this API accepts (too deeply nested or a number too long)") \
            from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        raise HTTPException(422, f"{where}: {err['msg']}" if where else err["msg"]) from None


@router.post("/api/ask", response_model=Answer, responses=ERRORS, summary="Ask a question",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": AskRequest.model_json_schema(ref_template="#/components/schemas/{model}"),
                 "examples": {
                     "zh": {"summary": "Chinese", "value": {"question": "原地升级能改 CPU 和内存吗？", "top_k": 3}},
                     "en": {"summary": "English", "value": {"question": "pod stuck in PreparingUpdate"}},
                     "error": {"summary": "A pasted error", "value": {"question": "failed calling webhook "
                               "\"vpod.kb.io\": no endpoints available for service \"kruise-webhook-service\""}},
                 }}}}})
async def post_ask(request: Request) -> Response:
    """Answers a question with the best FAQ entry, its commands, a confidence and alternatives."""
    body = await parse_json_body(request, AskRequest)
    assert isinstance(body, AskRequest)
    limit = request.app.state.settings.max_question_chars
    if len(body.question) > limit:
        raise HTTPException(422, f"question: at most {limit} characters (got {len(body.question)})")
    engine = current_engine(request)
    await charge_question(request, body.question)  # a long question spends more of the budget (429 when it is out)
    try:
        answer = await engine.ask_async(body.question, body.top_k)
    except InvalidQuestion as exc:
        raise HTTPException(422, f"question: {exc}") from None
    request.app.state.metrics.observe_answer(answer, "api")
    record_ask(request, answer, body.after)  # queued; never slows or fails the answer
    if body.tree and (m := answer.match) is not None:
        t = m.translation
        update: dict[str, object] = {"answer": with_trees(m.answer)}
        if t is not None:
            update["translation"] = t.model_copy(update={"answer": with_trees(t.answer)})
        answer = answer.model_copy(update={"match": m.model_copy(update=update)})
    return Response(answer.model_dump_json(), media_type="application/json")


def with_trees(parts: tuple[Part, ...]) -> tuple[Part, ...]:
    """The parts with each text part's syntax tree filled in."""
    return tuple(p.model_copy(update={"tree": tree(p.markdown)}) if isinstance(p, TextPart) else p for p in parts)


@router.get("/api/faq", response_model=list[EntrySummary], summary="List the FAQ entries", responses=ERRORS)
async def list_faq(request: Request) -> list[EntrySummary]:
    """Every entry's id, section and question."""
    return [EntrySummary(id=e.id, section=e.section, question=e.question) for e in current_engine(request).entries()]


@router.get("/api/faq/{entry_id}", response_model=Entry, summary="One FAQ entry in full",
            responses={404: {"model": ErrorModel, "description": "No entry with that id"}, **ERRORS})
async def get_faq_entry(entry_id: str, request: Request) -> Entry:
    """An entry with its answer as parts: text and commands, in order."""
    try:
        return current_engine(request).entry(entry_id)
    except UnknownEntry:
        raise HTTPException(404, f"no FAQ entry with id {entry_id!r}") from None
