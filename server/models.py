"""Request and response models of the HTTP API (they are the OpenAPI documentation)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse


class AskRequest(BaseModel):
    """A question for the bot."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"question": "原地升级能改 CPU 和内存吗？", "top_k": 3},
        {"question": "How do I inject a sidecar into existing pods?"},
    ]})

    question: str = Field(..., min_length=1, description="The question, in Chinese, English or both; an error "
                          "message may be pasted as it is.", examples=["pod stuck in PreparingUpdate"])
    top_k: int = Field(3, ge=1, le=10, description="Candidates in all: the match plus alternatives.")


class Command(BaseModel):
    """A command or file from the answer, ready to copy."""

    language: str = Field(..., examples=["bash"])
    code: str


class Match(BaseModel):
    """The FAQ entry that answers the question."""

    id: str = Field(..., examples=["588bd71b"])
    section: str = Field(..., examples=["性能和扩缩"])
    question: str = Field(..., examples=["原地更新有哪些限制？"])
    answer: str = Field(..., description="Markdown; its fenced blocks are the commands.")
    commands: list[Command]
    score: float = Field(..., description="Fused retrieval score of the entry.")
    confidence: float = Field(..., ge=0, le=1, description="How likely this is the right answer.")


class Alternative(BaseModel):
    """A "did you mean" candidate, or a nearest question when there is no match."""

    id: str
    question: str
    score: float


class AnswerModel(BaseModel):
    """The answer contract, the same for the CLI (`qa ask --json`) and this API."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "question": "原地升级能改 CPU 和内存吗", "language": "zh",
        "match": {"id": "588bd71b", "section": "性能和扩缩", "question": "原地更新有哪些限制？",
                  "answer": "原地更新有一些约束：…", "commands": [], "score": 0.91, "confidence": 0.97},
        "alternatives": [{"id": "501d1485", "question": "原地更新如何提高性能？", "score": 0.83}],
        "took_ms": 9.2}, {
        "question": "how do I bake bread", "language": "en", "match": None,
        "alternatives": [{"id": "699c02b9", "question": "生产部署的最佳实践是什么？", "score": 0.61}],
        "took_ms": 8.7}]})

    question: str = Field(..., description="The question as asked.")
    language: Literal["zh", "en", "mixed"]
    match: Match | None = Field(..., description="null when the FAQ has no good answer.")
    alternatives: list[Alternative]
    took_ms: float


class EntrySummary(BaseModel):
    """An entry in the FAQ listing."""

    id: str
    section: str
    question: str


class EntryModel(EntrySummary):
    """An entry in full."""

    answer: str
    commands: list[Command]


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(..., examples=["invalid_request"])
    message: str = Field(..., examples=["question: String should have at least 1 character"])


class ErrorModel(BaseModel):
    """Every error response."""

    error: ErrorDetail


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error shape of every surface (:class:`ErrorModel`): ``{"error": {"code", "message"}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
