"""The JSON error shape of every HTTP response that is not an answer (defined in qa.contract)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from qa.contract import ErrorBody

ErrorModel = ErrorBody  # the name the routes' OpenAPI `responses` use

# The errors every JSON-body route can answer (the body checks and the rate limit), for its `responses`.
JSON_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorModel, "description": "Body is not valid JSON or not UTF-8"},
    413: {"model": ErrorModel, "description": "Body too large"},
    415: {"model": ErrorModel, "description": "Content type is not application/json"},
    429: {"model": ErrorModel, "description": "Too many requests"},
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": {"code", "message"}}`` with the given status."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
