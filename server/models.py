"""The JSON error shape of every HTTP response that is not an answer (defined in qa.contract)."""

from __future__ import annotations

from starlette.responses import JSONResponse

from qa.contract import ErrorBody

ErrorModel = ErrorBody  # the name the routes' OpenAPI `responses` use


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": {"code", "message"}}`` with the given status."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
