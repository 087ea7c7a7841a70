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
    rate_limit_storage: SecretStr = Field(SecretStr("memory://"), description="where rate-limit counters live: "
                                          "memory:// (this process) or a Redis URL shared by every replica, "
                                          "e.g. redis://redis:6379/0")
    sync_interval: float = Field(2.0, gt=0, le=60, description="seconds between two looks at Redis: its health, "
                                                               "and reloads published by other replicas")
    admin_token: SecretStr | None = Field(None, description="bearer token for /admin/*; unset → 404")
    frame_ancestors: str = Field("'none'", description="CSP frame-ancestors, to allow embedding the page")
    watch: bool = Field(False, description="rebuild the index when files under the data folder change")
    # Limits a hostile client meets (README, "Operations and hardening"; server/protocol.py).
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="a request line and headers over this get 431")
    read_timeout: float = Field(10.0, gt=0, description="seconds a client has to send a whole request (line, "
                                                         "headers, body); then 408 and the connection is closed")
    max_connections: int = Field(2048, ge=16, description="open connections at most; past it the oldest one "
                                                          "waiting on its client is closed")
    trusted_proxies: str = Field("", description="comma-separated addresses or networks (CIDR) whose "
                                                 "X-Forwarded-For and X-Forwarded-Proto are believed; "
                                                 "empty: nobody's, '*': everybody's")
    auth_failure_limit: str = Field("10/minute", description="failed admin or Slack authentications per "
                                                             "client before 429; 'off' disables")
    record: bool = Field(True, description="record every question and feedback in the records database "
                                           "(QA_DATABASE_URL; see qa/records)")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, v: str) -> str:
        import ipaddress

        items = [item.strip() for item in v.split(",") if item.strip()]
        if "*" in items and len(items) > 1:
            raise ValueError("'*' trusts every address: give it alone")
        for item in items:
            if item != "*":  # an address, or a network with no host bits (10.244.0.0/16), as uvicorn reads them
                ipaddress.ip_network(item, strict=True)
        return ",".join(items)

    @field_validator("rate_limit", "auth_failure_limit")
    @classmethod
    def _valid_rate(cls, v: str) -> str:
        from server.ratelimit import RateLimiter

        RateLimiter(v)  # raises ValueError on a rate string the limits library cannot parse
        return v

    @field_validator("rate_limit_storage", mode="before")
    @classmethod
    def _valid_storage(cls, v: object) -> object:
        from qa.shared import check_redis_url
        from server.ratelimit import STORAGE_SCHEMES

        url = (v.get_secret_value() if isinstance(v, SecretStr) else str(v)).strip()
        if url in {"", "memory", "memory://"}:
            return "memory://"
        return check_redis_url(url, STORAGE_SCHEMES)

    @field_validator("slack_signing_secret", "admin_token", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v
