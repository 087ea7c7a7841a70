"""SIGTERM on the real entry point (``python -m server.main``): requests in flight finish, new ones are refused.

A request is held in flight by sending its headers and only half its body: the server has
started it and is waiting for the rest when SIGTERM arrives. The fake encoder (``QA_MODEL=hash``)
keeps start-up fast; shutdown does not depend on the model.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qa.contract import Answer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    env = {**os.environ, "QA_MODEL": "hash", "QA_INDEX_DIR": str(tmp_path / "index"), "QA_HOST": "127.0.0.1",
           "QA_PORT": str(port), "QA_RATE_LIMIT": "off", "QA_LOG_LEVEL": "info",
           "QA_STATE_DIR": str(tmp_path / "state")}  # its records, in a folder of its own
    proc = subprocess.Popen([sys.executable, "-m", "server.main"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"the server did not start:\n{proc.communicate()[0]}")


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the body"
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def test_sigterm_finishes_requests_in_flight_then_exits_cleanly(tmp_path: Path) -> None:
    proc, port = _start(tmp_path)
    try:
        body = json.dumps({"question": "CloneSet 和 Deployment 有什么区别？"}, ensure_ascii=False).encode()
        half = len(body) // 2
        in_flight = []
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"POST /api/ask HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:half])
            in_flight.append(sock)
        time.sleep(0.5)  # the server has the headers and waits for the rest of each body

        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert proc.poll() is None, "the server quit with requests in flight"
        with pytest.raises(httpx.TransportError):  # no new connections while it drains
            httpx.post(f"http://127.0.0.1:{port}/api/ask", json={"question": "x"}, timeout=3)

        for sock in in_flight:
            sock.sendall(body[half:])
            status, payload = _read_response(sock)
            sock.close()
            assert status == 200, payload
            assert Answer.model_validate(json.loads(payload)).match is not None
        # uvicorn ends by re-raising the signal it caught, so the status says "ended by SIGTERM";
        # the log below tells a drained shutdown from a killed process.
        assert proc.wait(timeout=15) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        log = proc.communicate()[0]
    assert "Traceback" not in log, log
    lines = log.splitlines()
    stop = next(i for i, line in enumerate(lines) if "Shutting down" in line)
    answered = [i for i, line in enumerate(lines) if "POST /api/ask 200" in line]
    done = next(i for i, line in enumerate(lines) if "Finished server process" in line)
    assert len(answered) == 3 and stop < min(answered) and max(answered) < done, log
