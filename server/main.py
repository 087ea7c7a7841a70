"""Entry point of ``qa serve`` and ``make run``: load once, then serve with uvicorn.

Before anything starts a thread, the process limits glibc's malloc arenas and raises its
file-descriptor limit; uvicorn then runs the guarded h11 protocol (server/protocol.py) with the
header limit, read deadline and connection cap from the settings, and believes proxy headers
only from ``QA_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import time
from typing import Any

from qa.errors import QAError
from server.observability import CountsCollector, configure_logging
from server.settings import ServerSettings

log = logging.getLogger("server")

MALLOC_ARENAS = 2  # glibc's default is 8 per core; each reload's allocations then spread over new arenas
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> str:
    """Caps glibc's malloc arenas, unless ``MALLOC_ARENA_MAX`` is set (glibc read it already).

    By default glibc gives threads up to 8 arenas per core and rarely returns their free memory:
    60 reloads under traffic took the server from 369 to 770 MiB resident, against 410–445 MiB
    with 2 arenas. Arenas are made as threads first allocate, so this must run before the
    process starts any thread (the encoder's, OpenMP's, the reloads'); ``mallopt`` does what the
    environment variable would, without re-executing the process.

    Returns:
        What was done, for the start-up log.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return f"MALLOC_ARENA_MAX={os.environ['MALLOC_ARENA_MAX']} (from the environment)"
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        version = libc.gnu_get_libc_version().decode()
    except (OSError, AttributeError):
        return "malloc arenas left alone (not glibc)"
    if libc.mallopt(_M_ARENA_MAX, arenas) != 1:
        return f"malloc arenas left alone (glibc {version} refused mallopt)"
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)  # children (none today) would inherit the same
    return f"malloc arenas capped at {arenas} (glibc {version})"


def raise_fd_limit() -> tuple[int, int]:
    """Raises the soft limit on open files to the hard one (each connection holds one).

    With the usual soft limit of 1,024, a thousand idle connections made every new request fail.

    Returns:
        The soft limit before and after.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return (soft, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return (soft, soft)
    return (soft, target)


def uvicorn_options(settings: ServerSettings, fd_limit: int) -> dict[str, Any]:
    """uvicorn's settings for this server: the guarded h11 protocol and its limits, proxy headers."""
    from server.protocol import guarded_protocol

    # Leave room under the descriptor limit for the process's own files (model, index, logs, sockets).
    max_connections = settings.max_connections if fd_limit < 0 else min(settings.max_connections,
                                                                        max(16, fd_limit - 128))
    trusted = settings.trusted_proxies
    return {
        "http": guarded_protocol(settings.read_timeout, max_connections),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or "",  # never uvicorn's default (127.0.0.1, or $FORWARDED_ALLOW_IPS)
        "timeout_keep_alive": 30,
        "timeout_graceful_shutdown": 10,
        "server_header": False,
        "access_log": False,
        "log_config": None,
    }


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
    arenas = limit_malloc_arenas()  # first: before any thread exists
    import uvicorn

    from server.app import create_app, load_engine
    from server.protocol import REFUSED

    try:
        overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
        settings = ServerSettings(**overrides)
    except ValueError as exc:
        print(f"qa serve: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    before, after = raise_fd_limit()
    log.info("%s; open files limit %s", arenas, before if before == after else f"{before} → {after}")
    if os.environ.get("FORWARDED_ALLOW_IPS") and not settings.trusted_proxies:
        log.warning("FORWARDED_ALLOW_IPS is ignored: set QA_TRUSTED_PROXIES to the proxies whose X-Forwarded-For "
                    "is to be believed")
    start = time.perf_counter()
    try:
        engine = load_engine(settings)
    except (QAError, OSError, ValueError) as exc:
        print(f"qa serve: cannot start: {exc}", file=sys.stderr)
        return 1
    log.info("engine ready in %.2fs: %d entries, model %s", time.perf_counter() - start,
             len(engine.kb.entries), engine.dense.model)
    app = create_app(settings, engine)
    app.state.metrics.registry.register(CountsCollector(
        "qa_http_connections_closed", "Connections closed by a limit: header_too_large (431), read_timeout "
        "(408), evicted (the oldest waiting one, at the connection cap), busy (503)", lambda: REFUSED))
    uvicorn.run(app, host=settings.host, port=settings.port, **uvicorn_options(settings, after))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve())
