"""Slack's interactivity: ``POST /slack/interactive``, where the buttons of the replies land.

Verified exactly like the slash command (signature over the raw body, timestamp within 5 minutes)
before any other work. Slack sends ``payload=<JSON>``; of it only ``block_actions`` are handled:

- 👍 / 👎 (``feedback_yes`` / ``feedback_no``, value: the ``answer_id``) store the feedback;
- an alternative (``ask_alternative_<n>``, value: ``{"answer_id", "entry_id"}``, with ``"lang": "en"``
  when the button shows the entry's English question) asks that entry's question (in English then,
  so the reply is in English too), records the click (the strongest signal of what the asker
  meant) and the new answer.

Slack ignores the HTTP body of a ``block_actions`` reply: the endpoint answers 200 at once, and the
reply (ephemeral, ``replace_original: false``) is POSTed to the payload's ``response_url`` afterwards.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from fastapi.responses import Response
from slack_sdk.signature import SignatureVerifier

from qa.contract import Answer
from qa.errors import InvalidQuestion, UnknownEntry
from qa.records import RecordsUnavailable, UnknownAnswer
from server.api import read_body
from server.feedback import record_click, record_slack, store_feedback
from server.models import ErrorModel
from server.slack import _is_signed
from server.slack_render import (
    ASK_ALTERNATIVE,
    FEEDBACK_NO,
    FEEDBACK_YES,
    render_answer,
    render_error,
    render_notice,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["slack"])

# A block_actions payload carries the whole message it came from (up to 50 blocks of 3,000 characters).
SLACK_INTERACTIVE_LIMIT = 512 * 1024
RESPONSE_TIMEOUT_S = 5.0
_ID = re.compile(r"[0-9a-f]{32}")
_ENTRY = re.compile(r"[\w.-]{1,64}")


def _ids(payload: dict[str, Any]) -> tuple[str, str]:
    team, user = payload.get("team"), payload.get("user")
    team_id = team.get("id") if isinstance(team, dict) else None
    user_id = user.get("id") if isinstance(user, dict) else None
    return (team_id if isinstance(team_id, str) else ""), (user_id if isinstance(user_id, str) else "")


def _response_url(payload: dict[str, Any]) -> str | None:
    url = payload.get("response_url")
    if not isinstance(url, str) or len(url) > 2048:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("https", "http") and parts.hostname else None


async def post_reply(url: str, message: dict[str, Any]) -> None:
    """POSTs a reply to Slack's ``response_url`` (never raises: a lost reply is only logged)."""
    body = {**message, "response_type": "ephemeral", "replace_original": False}
    try:
        async with httpx.AsyncClient(timeout=RESPONSE_TIMEOUT_S, follow_redirects=False) as client:
            r = await client.post(url, json=body)
        if r.status_code >= 400:
            log.warning("slack: response_url answered %d", r.status_code)
    except httpx.HTTPError as exc:
        log.warning("slack: could not post to response_url: %s", exc.__class__.__name__)


async def _feedback(request: Request, url: str | None, answer_id: str, helpful: bool) -> None:
    try:
        await store_feedback(request.app, answer_id, helpful, None, "slack")
        reply = render_notice("🙏 谢谢你的反馈！ / Thanks for the feedback!")
    except UnknownAnswer:
        reply = render_error("This answer is not recorded, so its feedback cannot be kept. / "
                             "该回答未被记录，无法保存反馈。")
    except RecordsUnavailable:
        reply = render_error("The feedback cannot be stored now; try again later. / 暂时无法保存反馈，请稍后再试。")
    except Exception:  # a background task: never let it die silently
        log.exception("slack: storing feedback failed")
        reply = render_error("Something went wrong. / 出错了。")
    if url:
        await post_reply(url, reply)


async def _alternative(request: Request, url: str | None, answer_id: str, entry_id: str,
                       asker: dict[str, str], english: bool = False) -> None:
    holder = request.app.state.holder
    reply: dict[str, Any]
    if holder.engine is None:
        reply = render_error("The bot is still loading its index; try again in a few seconds. / "
                             "机器人正在加载索引，请稍后再试。")
    else:
        engine = holder.engine
        try:
            question = engine.entry(entry_id).question
            if english and (translation := engine.kb.translations.get(entry_id)) is not None:
                question = translation.question  # the button was in English: so is the reply
            answer: Answer = await engine.ask_async(question, 3)
        except UnknownEntry:
            reply = render_error("That FAQ entry no longer exists. / 该 FAQ 条目已不存在。")
        except InvalidQuestion as exc:
            reply = render_error(str(exc))
        except Exception:
            log.exception("slack: answering an alternative failed")
            reply = render_error("Something went wrong. / 出错了。")
        else:
            request.app.state.metrics.observe_answer(answer, "slack")
            record_slack(request, answer, asker)
            record_click(request.app, answer_id, entry_id, "slack", answer.answer_id)
            log.info("slack: alternative clicked answer=%s matched=%s", answer.answer_id,
                     answer.match.id if answer.match else None)
            reply = render_answer(answer)
    if url:
        await post_reply(url, reply)


@router.post("/slack/interactive", summary="Slack interactivity (the buttons of the replies)", responses={
    200: {"description": "Accepted; the reply is POSTed to the payload's response_url"},
    400: {"model": ErrorModel, "description": "Signed body that is not a valid interaction payload"},
    401: {"model": ErrorModel, "description": "Missing or invalid signature, or stale timestamp"},
    429: {"model": ErrorModel, "description": "Too many invalid signatures from this client"},
    413: {"model": ErrorModel, "description": "Body over 512 KB"},
    503: {"model": ErrorModel, "description": "No signing secret configured"}})
async def post_slack_interactive(request: Request, background: BackgroundTasks) -> Response:
    """Verifies the request, then handles the button clicked (feedback, or an alternative to ask)."""
    settings = request.app.state.settings
    secret = settings.slack_signing_secret
    if secret is None or not secret.get_secret_value():
        raise HTTPException(503, "Slack interactivity is not configured: set QA_SLACK_SIGNING_SECRET to the "
                                 "signing secret of your Slack app (Basic Information → App Credentials)")
    body = await read_body(request, SLACK_INTERACTIVE_LIMIT)
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    verifier = SignatureVerifier(secret.get_secret_value())
    guard = request.app.state.auth_guard
    await guard.check(request)
    if not _is_signed(verifier, body, timestamp, signature):
        await guard.failed(request)
        log.warning("slack: rejected an interaction with a missing or invalid signature or a stale timestamp")
        raise HTTPException(401, "invalid Slack signature")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=16)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, RecursionError):
        raise HTTPException(400, "the body is not a form with a JSON `payload` field") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise HTTPException(400, "the payload is not a Slack interaction")
    if payload["type"] != "block_actions":
        return Response(status_code=200)  # nothing else is configured; Slack needs only the 200
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise HTTPException(400, "block_actions without actions")
    action = actions[0]
    action_id, value = action.get("action_id"), action.get("value")
    if not isinstance(action_id, str) or not isinstance(value, str):
        raise HTTPException(400, "an action without action_id or value")
    team_id, user_id = _ids(payload)
    url = _response_url(payload)

    if action_id in (FEEDBACK_YES, FEEDBACK_NO):
        if not _ID.fullmatch(value):
            raise HTTPException(400, "the feedback button's value is not an answer_id")
        kind = "feedback"
    elif action_id.startswith(ASK_ALTERNATIVE):
        try:
            target = json.loads(value)
        except (ValueError, RecursionError):
            raise HTTPException(400, "the alternative button's value is not JSON") from None
        if not (isinstance(target, dict) and isinstance(target.get("answer_id"), str)
                and isinstance(target.get("entry_id"), str) and _ID.fullmatch(target["answer_id"])
                and _ENTRY.fullmatch(target["entry_id"])):
            raise HTTPException(400, "the alternative button's value is not {answer_id, entry_id}")
        kind = "alternative"
    else:
        return Response(status_code=200)  # a button of another version of the app: ignored

    wait = await request.app.state.limiter.hit_async(f"slack:{team_id}:{user_id}")  # the command's budget
    if wait is not None:
        if url:
            message = f"Too many requests; try again in {wait:.0f} s. / 操作太频繁，请 {wait:.0f} 秒后再试。"
            background.add_task(post_reply, url, render_error(message))
        return Response(status_code=200, headers={"Retry-After": f"{wait:.0f}"})
    if kind == "feedback":
        background.add_task(_feedback, request, url, value, action_id == FEEDBACK_YES)
    else:
        background.add_task(_alternative, request, url, target["answer_id"], target["entry_id"],
                            {"team_id": team_id, "user_id": user_id}, target.get("lang") == "en")
    return Response(status_code=200)
