"""The public shape of an answer: the one definition, used by the engine, the CLI's ``--json``,
the HTTP API (and its OpenAPI schema), the Slack and page renderers, and the tests.

An entry's answer is an ordered list of parts, built once by the parser: markdown text, and
commands (each fenced block of the FAQ, with its language). Surfaces render parts in order and
never look for fences themselves.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_serializer,
)

Language = Literal["zh", "en", "mixed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Node(_Frozen):
    """One node of a text part's syntax tree (markdown-it-py's reading of the markdown).

    Block types: ``paragraph``, ``heading`` (``level``), ``bullet_list``, ``ordered_list``
    (``start``), ``list_item``, ``blockquote``, ``code_block`` (``text``), ``hr``, ``table``,
    ``thead``, ``tbody``, ``tr``, ``th``, ``td``. Inline types: ``text`` and ``code`` (``text``),
    ``strong``, ``em``, ``s``, ``link`` (``href``, http(s) and mailto only; other links become
    their text), ``softbreak``, ``hardbreak``. Unset keys are left out of the JSON.
    """

    type: str
    text: str | None = None
    href: str | None = None
    level: int | None = None
    start: int | None = None
    children: tuple[Node, ...] | None = None

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: Any):  # type: ignore[no-untyped-def]  # unannotated: the schema keeps the fields
        return {k: v for k, v in handler(self).items() if v is not None}


class TextPart(_Frozen):
    """Markdown prose of an answer (no fenced blocks: those are commands)."""

    type: Literal["text"] = "text"
    markdown: str
    tree: tuple[Node, ...] | None = Field(None, description="The markdown as a syntax tree; sent only when "
                                                            "asked for (`\"tree\": true`), for the chat page.")

    @model_serializer(mode="wrap")
    def _drop_tree(self, handler: Any):  # type: ignore[no-untyped-def]  # unannotated: the schema keeps the fields
        out: dict[str, Any] = handler(self)
        if out.get("tree") is None:
            out.pop("tree", None)
        return out


class CommandPart(_Frozen):
    """A command or file from the answer, ready to copy."""

    type: Literal["command"] = "command"
    language: str = Field(..., examples=["bash"], description="The fence's language; 'text' when it had none.")
    code: str


Part = Annotated[TextPart | CommandPart, Field(discriminator="type")]


class EntrySummary(_Frozen):
    """An entry in the FAQ listing."""

    id: str = Field(..., examples=["588bd71b"], description="Stable: a hash of the question text.")
    section: str = Field(..., examples=["性能和扩缩"])
    question: str = Field(..., examples=["原地更新有哪些限制？"])


class Translation(_Frozen):
    """An entry's question and answer in another language, kept by the maintainers."""

    language: str = Field(..., examples=["en"])
    question: str
    answer: tuple[Part, ...]


class Entry(EntrySummary):
    """An entry in full: its answer as parts, in order."""

    answer: tuple[Part, ...] = Field(..., description="Text and commands in the order the FAQ gives them.")

    _source: str = PrivateAttr("")
    _line: int = PrivateAttr(0)

    @property
    def source_file(self) -> str:
        """The file the entry was read from."""
        return self._source

    @property
    def line(self) -> int:
        """The line of its question heading."""
        return self._line

    @property
    def commands(self) -> list[CommandPart]:
        """The command parts, in order."""
        return [p for p in self.answer if isinstance(p, CommandPart)]

    @property
    def markdown(self) -> str:
        """The answer as one markdown document, commands as fenced blocks (what search reads)."""
        return to_markdown(self.answer)


def to_markdown(parts: tuple[Part, ...]) -> str:
    """Parts back into one markdown document; commands become fenced blocks."""
    out = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append(p.markdown)
        else:
            fence = "`" * max(3, _longest_backtick_run(p.code) + 1)
            out.append(f"{fence}{'' if p.language == 'text' else p.language}\n{p.code}\n{fence}")
    return "\n\n".join(out)


def _longest_backtick_run(code: str) -> int:
    run = best = 0
    for ch in code:
        run = run + 1 if ch == "`" else 0
        best = max(best, run)
    return best


class Match(Entry):
    """The FAQ entry that answers the question. ``question`` and ``answer`` are always the original;
    ``translation`` is the maintained English version, given when the question was asked in English."""

    score: float = Field(..., description="Fused retrieval score of the entry.")
    confidence: float = Field(..., ge=0, le=1, description="How likely this is the right answer.")
    translation: Translation | None = Field(None, description="The entry in the asker's language (English), "
                                            "translated from the Chinese FAQ; null for Chinese or mixed "
                                            "questions and for entries without a translation. The commands "
                                            "are the same as the original's.")


class Alternative(_Frozen):
    """A "did you mean" candidate, or a nearest question when there is no match."""

    id: str
    question: str = Field(..., description="The entry's question as the FAQ writes it.")
    score: float
    translated_question: str | None = Field(None, description="The question in the asker's language "
                                            "(English), translated from the Chinese FAQ; null for Chinese or "
                                            "mixed questions and for entries without a translation.")


class Answer(_Frozen):
    """What every surface shows for a question."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra={"examples": [{
        "answer_id": "9f1c2e7a4b0d4c55a3e1f0b2c4d6e8fa", "question": "原地升级能改 CPU 和内存吗", "language": "zh",
        "match": {"id": "588bd71b", "section": "性能和扩缩", "question": "原地更新有哪些限制？",
                  "answer": [{"type": "text", "markdown": "原地更新有一些约束：…"}], "score": 0.91,
                  "confidence": 0.97},
        "alternatives": [{"id": "501d1485", "question": "原地更新如何提高性能？", "score": 0.83}],
        "took_ms": 9.2}]})  # (no example without a match: FastAPI drops nulls from the OpenAPI document)

    answer_id: str = Field(..., description="This answer's id: what feedback refers to "
                                            "(`POST /api/feedback`). Every ask gets a new one.",
                           examples=["9f1c2e7a4b0d4c55a3e1f0b2c4d6e8fa"])
    question: str = Field(..., description="The question as asked.")
    language: Language
    match: Match | None = Field(..., description="null when the FAQ has no good answer.")
    alternatives: tuple[Alternative, ...] = Field(..., description="Did you mean (with a match), or the "
                                                                   "nearest questions (without).")
    took_ms: float

    # Not part of the JSON: the best candidate's confidence and score, also when it fell under the threshold.
    _confidence: float = PrivateAttr(0.0)
    _score: float = PrivateAttr(0.0)

    @field_serializer("took_ms")
    def _round_ms(self, v: float) -> float:
        return round(v, 3)

    @property
    def confidence(self) -> float:
        """The best candidate's confidence, whether or not it was good enough to be the match."""
        return self._confidence

    @property
    def score(self) -> float:
        """The best candidate's fused score."""
        return self._score

    @property
    def ranking(self) -> list[str]:
        """Entry ids, best first: the match (if any), then the alternatives."""
        return ([self.match.id] if self.match else []) + [a.id for a in self.alternatives]


ANSWER_ID_PATTERN = r"^[0-9a-f]{32}$"


class AfterClick(BaseModel):
    """The question is an alternative the user clicked under an earlier answer (recorded, not answered
    differently)."""

    model_config = ConfigDict(extra="forbid")

    answer_id: str = Field(..., pattern=ANSWER_ID_PATTERN, description="The earlier answer's `answer_id`.",
                           examples=["9f1c2e7a4b0d4c55a3e1f0b2c4d6e8fa"])
    entry_id: str = Field(..., pattern=r"^[0-9A-Za-z_-]{1,64}$", description="The alternative's entry id.",
                          examples=["501d1485"])


class AskRequest(BaseModel):
    """A question for the bot."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"question": "原地升级能改 CPU 和内存吗？", "top_k": 3},
        {"question": "How do I inject a sidecar into existing pods?"},
    ]})

    question: str = Field(..., min_length=1, description="The question, in Chinese, English or both; an error "
                          "message may be pasted as it is.", examples=["pod stuck in PreparingUpdate"])
    top_k: int = Field(3, ge=1, le=10, description="Candidates in all: the match plus alternatives.")
    tree: StrictBool = Field(False, description="Also send each text part as a syntax tree (what the chat page "
                                                "renders).")
    # Inline schema (no $ref): the ask route documents this model's schema by hand, outside the components.
    after: Annotated[AfterClick, WithJsonSchema(AfterClick.model_json_schema())] | None = Field(
        None, description="Set when the question is an alternative clicked under an earlier answer.")

    @field_validator("top_k", mode="before")
    @classmethod
    def _json_integer(cls, v: object) -> object:
        # Lax mode would take true or "3"; JSON Schema's integer takes 3 and 3.0 only.
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("must be an integer")
        return v


class FeedbackRequest(BaseModel):
    """A 👍 or 👎 on an answer, with an optional comment (``POST /api/feedback``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"answer_id": "9f1c2e7a4b0d4c55a3e1f0b2c4d6e8fa", "helpful": True},
        {"answer_id": "9f1c2e7a4b0d4c55a3e1f0b2c4d6e8fa", "helpful": False, "comment": "The command fails on 1.4."},
    ]})

    answer_id: str = Field(..., pattern=ANSWER_ID_PATTERN, description="The answer's `answer_id`.")
    helpful: StrictBool = Field(..., description="true for 👍, false for 👎.")
    comment: str | None = Field(None, max_length=2000, description="What was wrong or missing (at most 2,000 "
                                                                   "characters; secrets and e-mail addresses are "
                                                                   "redacted before it is stored).")


class FeedbackReceipt(BaseModel):
    """The feedback was stored: ``created`` the first time for an answer, ``updated`` when it replaced one."""

    answer_id: str
    helpful: bool
    status: Literal["created", "updated"]


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(..., examples=["invalid_request"])
    message: str = Field(..., examples=["question: String should have at least 1 character"])


class ErrorBody(BaseModel):
    """Every error response of the HTTP API, and each failed line of ``qa ask --json -``."""

    error: ErrorDetail
