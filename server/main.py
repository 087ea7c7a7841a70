"""Entry point of ``qa serve`` and ``make run``: load once, then serve with uvicorn."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from qa.errors import QAError
from server.observability import configure_logging
from server.settings import ServerSettings

log = logging.getLogger("server")


def serve(host: str | None = None, port: int | None = None) -> int:
    """Loads the engine (building the index if needed) and serves until SIGINT/SIGTERM.

    Args:
        host: bind address (default: QA_HOST or 127.0.0.1).
        port: port (default: QA_PORT or 8000).

    Returns:
        The exit status: 0 after a clean shutdown, 1 when the model or the FAQ cannot be loaded.
        On SIGTERM or SIGINT, uvicorn stops accepting connections, lets requests in flight finish
        (10 s at most), then re-raises the signal, so the process ends with that signal's status.
    """
    import uvicorn

    from server.app import create_app, load_engine

    try:
        overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
        settings = ServerSettings(**overrides)
    except ValueError as exc:
        print(f"qa serve: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    start = time.perf_counter()
    try:
        engine = load_engine(settings)
    except (QAError, OSError, ValueError) as exc:
        print(f"qa serve: cannot start: {exc}", file=sys.stderr)
        return 1
    log.info("engine ready in %.2fs: %d entries, model %s", time.perf_counter() - start,
             len(engine.kb.entries), engine.dense.model)
    app = create_app(settings, engine)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10, server_header=False, timeout_keep_alive=30)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve())
