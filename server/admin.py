"""Admin actions, behind ``Authorization: Bearer $QA_ADMIN_TOKEN``; absent (404) without a token."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from server.models import ErrorModel

router = APIRouter(tags=["admin"])


async def require_admin(request: Request) -> None:
    """404 when no admin token is configured; 401 unless the bearer token matches (constant time);
    429 once the client has used up its failed attempts (``QA_AUTH_FAILURE_LIMIT``)."""
    token = request.app.state.settings.admin_token
    if token is None:
        raise HTTPException(404, "Not Found")
    guard = request.app.state.auth_guard
    await guard.check(request)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(),
                                                               token.get_secret_value().encode()):
        await guard.failed(request)
        raise HTTPException(401, "a valid admin bearer token is required", headers={"WWW-Authenticate": "Bearer"})


@router.post("/admin/reload", summary="Rebuild the index from the data folder and swap it in",
             responses={202: {"description": "Reload started"}, 200: {"description": "Reload finished (wait=true)"},
                        401: {"model": ErrorModel, "description": "Bad or missing token"},
                        429: {"model": ErrorModel, "description": "Too many failed tokens from this client"},
                        404: {"model": ErrorModel, "description": "No admin token set"},
                        409: {"description": "Reload failed (wait=true); the last good index keeps serving"},
                        422: {"model": ErrorModel, "description": "Invalid query parameter"}})
async def post_reload(request: Request, wait: bool = False) -> JSONResponse:
    """Starts a reload in the background (or waits for it with ``?wait=true``); answers keep flowing."""
    await require_admin(request)
    reloader = request.app.state.reloader
    if wait:
        result = await run_in_threadpool(reloader.reload)
        return JSONResponse(result, status_code=200 if result["status"] == "ok" else 409)
    started = reloader.start()
    return JSONResponse({"status": "started" if started else "already running"}, status_code=202)
