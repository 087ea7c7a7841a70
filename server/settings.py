"""Server settings: the engine's settings plus what only the server needs (``QA_`` prefix)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from qa.settings import Settings


class ServerSettings(Settings):
    """Everything ``qa serve`` and ``make run`` read from the environment."""

    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8000, ge=1, le=65535, description="port")
    slack_signing_secret: SecretStr | None = Field(None, description="Slack app signing secret; the slash "
                                                   "command answers 503 until it is set")
    slack_command: str = Field("/kruise-faq", description="the slash command's name, for help texts")
    log_format: Literal["text", "json"] = Field("text", description="'json' for one JSON object a log line")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field("info", description="log level")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="request bodies larger than this get 413")
    max_question_chars: int = Field(2000, ge=10, description="longer questions get 422")
    rate_limit: str = Field("120/minute", description="per client (and per Slack team+user); 'off' disables")
    admin_token: SecretStr | None = Field(None, description="bearer token for /admin/*; unset → 404")
    frame_ancestors: str = Field("'none'", description="CSP frame-ancestors, to allow embedding the page")
    watch: bool = Field(False, description="rebuild the index when files under the data folder change")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("rate_limit")
    @classmethod
    def _valid_rate(cls, v: str) -> str:
        from server.ratelimit import RateLimiter

        RateLimiter(v)  # raises ValueError on a rate string the limits library cannot parse
        return v

    @field_validator("slack_signing_secret", "admin_token", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v
