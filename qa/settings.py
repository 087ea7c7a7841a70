"""Configuration: the one place that reads the environment (``QA_`` prefix, or a ``.env`` file).

The server extends these settings with its own (``server.settings.ServerSettings``); library
classes never read the environment and take plain arguments (or a settings object) instead.
This module imports nothing heavy, so ``qa --help`` starts fast.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "multilingual-e5-small"
DEFAULT_THRESHOLD = 0.5
MAX_QUESTION_CHARS = 4000  # the engine cuts longer questions; the encoder cuts again at its token limit


class Settings(BaseSettings):
    """Engine settings shared by the CLI and the server."""

    model_config = SettingsConfigDict(env_prefix="QA_", env_file=".env", extra="ignore")

    model: str = Field(DEFAULT_MODEL, description="encoder: 'multilingual-e5-small' (bundled), or a "
                                                  "sentence-transformers model folder or packaged name")
    data_dir: Path = Field(ROOT / "data", description="folder with alternates, glossary, out-of-scope topics")
    faq_dir: Path | None = Field(None, description="FAQ markdown folder (default: DATA_DIR/faq)")
    index_dir: Path = Field(ROOT / "index", description="where the built index is kept")
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0, description="confidence below which there is no match")
    cache_size: int = Field(1024, ge=0, description="answers kept for repeated questions")
    # Shared by several replicas (qa/answer_cache.py, qa/shared.py); unset: everything stays in the process.
    cache_url: SecretStr | None = Field(None, description="Redis URL of the answer cache that replicas share, "
                                        "e.g. redis://redis:6379/1 (unset: in the process only)")
    cache_ttl: int = Field(3600, ge=1, description="seconds an answer stays in the shared cache")
    redis_timeout: float = Field(0.25, gt=0, le=5, description="seconds a Redis call may take (connect or "
                                                                "reply) before the bot goes on without it")
    allow_warnings: bool = Field(False, description="build the index even when the FAQ or data files have "
                                                    "problems and a good index exists (which they would replace)")
    # Records of questions and feedback (qa/records): the server writes them, `qa report` reads them.
    database_url: SecretStr | None = Field(None, description="SQLAlchemy URL of the records database, e.g. "
                                           "postgresql+psycopg://user:pass@host/db (unset: SQLite in STATE_DIR)")
    state_dir: Path = Field(ROOT / "var", description="folder of the default SQLite records database")
    record_days: int = Field(90, ge=0, description="records older than this many days are deleted (0: kept)")
    record_salt: SecretStr | None = Field(None, description="salt of the askers' pseudonyms (unset: generated "
                                          "once and kept in the database)")

    @field_validator("cache_url", mode="before")
    @classmethod
    def _redis_url(cls, v: object) -> object:
        from qa.shared import check_redis_url

        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        return check_redis_url(v.get_secret_value() if isinstance(v, SecretStr) else str(v))
