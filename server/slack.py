"""The Slack slash command: ``POST /slack/command``.

Every request is verified (signature over the raw body, timestamp within 5 minutes) before
any other work. The reply is Block Kit JSON, ephemeral unless the text starts with ``share``.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from slack_sdk.signature import SignatureVerifier

from qa.errors import InvalidQuestion
from server.api import read_body
from server.feedback import record_slack
from server.models import ErrorModel
from server.ratelimit import question_cost
from server.slack_render import render_answer, render_error, render_usage

log = logging.getLogger(__name__)

router = APIRouter(tags=["slack"])

SLACK_FORM_LIMIT = 16 * 1024  # Slack's slash-command payloads are small; refuse anything bigger


def _is_signed(verifier: SignatureVerifier, body: bytes, timestamp: str, signature: str) -> bool:
    """slack_sdk's check, with the inputs it would choke on (non-numeric timestamp, non-UTF-8 body) refused."""
    if not timestamp.isdigit() or not signature.startswith("v0="):
        return False
    try:
        return bool(verifier.is_valid(body, timestamp, signature))
    except (ValueError, UnicodeDecodeError):
        return False


@router.post("/slack/command", summary="Slack slash command", responses={
    200: {"description": "Block Kit message (ephemeral, or in_channel with `share`); also the ephemeral notice "
                         "when the user is rate limited (with Retry-After) or the index is still loading"},
    400: {"model": ErrorModel, "description": "Signed body that is not a valid form"},
    401: {"model": ErrorModel, "description": "Missing or invalid signature, or stale timestamp"},
    429: {"model": ErrorModel, "description": "Too many invalid signatures from this client"},
    413: {"model": ErrorModel, "description": "Body over 16 KB"},
    503: {"model": ErrorModel, "description": "No signing secret configured"}})
async def post_slack_command(request: Request) -> JSONResponse:
    """Verifies the request, then answers the command's text with Block Kit blocks."""
    settings = request.app.state.settings
    secret = settings.slack_signing_secret
    if secret is None or not secret.get_secret_value():
        raise HTTPException(503, "the Slack command is not configured: set QA_SLACK_SIGNING_SECRET to the "
                                 "signing secret of your Slack app (Basic Information → App Credentials)")
    body = await read_body(request, min(settings.max_body_bytes, SLACK_FORM_LIMIT))
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    verifier = SignatureVerifier(secret.get_secret_value())
    guard = request.app.state.auth_guard
    await guard.check(request)  # 429 once this client has used up its failed signatures
    if not _is_signed(verifier, body, timestamp, signature):
        await guard.failed(request)
        log.warning("slack: rejected a request with a missing or invalid signature or a stale timestamp")
        raise HTTPException(401, "invalid Slack signature")
    try:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True,
                                            strict_parsing=bool(body), max_num_fields=64).items()}
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the body is not a valid form") from None
    wait = await request.app.state.limiter.hit_async(f"slack:{form.get('team_id', '')}:{form.get('user_id', '')}",
                                         question_cost(form.get("text", "")))  # a long question costs more
    if wait is not None:
        # Slack shows a slash-command reply only with status 200: the limit is said in the message.
        message = f"Too many questions; try again in {wait:.0f} s. / 提问太频繁，请 {wait:.0f} 秒后再试。"
        return JSONResponse(render_error(message), headers={"Retry-After": f"{wait:.0f}"})
    text = " ".join(form.get("text", "").split())
    command = form.get("command") or settings.slack_command
    if not text or text.lower() in {"help", "帮助", "?", "？"}:
        return JSONResponse(render_usage(command))
    share = text.lower().startswith("share ") or text.lower() == "share"
    if share:
        text = text[len("share"):].strip()
        if not text:
            return JSONResponse(render_usage(command))
    if len(text) > settings.max_question_chars:
        return JSONResponse(render_error(f"The question is too long (at most {settings.max_question_chars} "
                                         f"characters). / 问题太长。"))
    holder = request.app.state.holder
    if holder.engine is None:
        return JSONResponse(render_error("The bot is still loading its index; try again in a few seconds. / "
                                         "机器人正在加载索引，请稍后再试。"))
    engine = holder.engine
    try:
        answer = await engine.ask_async(text, 3)
    except InvalidQuestion as exc:
        return JSONResponse(render_error(str(exc)))
    request.app.state.metrics.observe_answer(answer, "slack")
    record_slack(request, answer, form)  # queued; the asker is stored only as a salted hash
    # no raw Slack identities in the logs either (the record keeps a salted pseudonym)
    log.info("slack: answer=%s matched=%s", answer.answer_id, answer.match.id if answer.match else None)
    return JSONResponse(render_answer(answer, share=share))
