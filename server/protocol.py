"""The HTTP/1.1 connection the server runs: uvicorn's h11 protocol with the limits a hostile client meets.

uvicorn bounds none of these by itself: a connection that never finishes its request line,
headers or body is kept forever (``timeout_keep_alive`` covers only the wait *between*
requests), and each such connection holds a file descriptor. This subclass adds, per connection:

- **Header size**: a request line and headers over ``h11_max_incomplete_event_size``
  (``QA_MAX_HEADER_BYTES``) are refused with ``431`` and the connection closed: h11 gives up as
  soon as that much of an unfinished head is buffered, and a head that arrived whole in one
  read is measured when parsed, before the app sees it (uvicorn would say 400, or let it in).
- **Read deadline**: from a connection's first moment, or from the first byte of a later request
  on a kept-alive one, the whole request (line, headers, body) must arrive within
  ``read_timeout`` seconds (``QA_READ_TIMEOUT``), however slowly it trickles in; otherwise
  ``408`` and the connection is closed (closed without a word if not a byte came). An app
  waiting for the rest of the body sees the client as gone (``http.disconnect``).
- **Connection cap**: at most ``max_connections`` (``QA_MAX_CONNECTIONS``) are open; a new
  one past the cap closes the oldest connection that the server is waiting on (an unfinished
  request or an idle keep-alive), or, when every connection has a request being answered, is
  refused with ``503``. A flood of half-open connections thus cannot lock out a client that
  sends its request at once.

Refusals are counted in :data:`REFUSED` (``qa_http_connections_closed_total`` on ``/metrics``) and
not logged one by one (uvicorn still logs its one-line warning for a head it cannot parse).

Why h11 and not httptools: h11 enforces the header limit inside the parser (httptools has no
such limit, and parsed a 150 MiB header for 30 s), and the state it exposes (``their_state``)
tells exactly where a request stands. On the 2-core machine the two measured the same
requests per second under ``make load`` (README, "Operations and hardening").
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, OrderedDict
from typing import Any, ClassVar

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

# Connections closed by a limit, by reason: header_too_large, read_timeout, evicted, busy.
REFUSED: Counter[str] = Counter()


class _SizedConnection(h11.Connection):
    """h11's server connection, which also refuses a complete request whose head is over the limit
    (h11 itself limits only a head still incomplete, so one that arrives whole in a read passes)."""

    too_large = False

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.too_large = exc.error_status_hint == 431
            raise
        if isinstance(event, h11.Request):
            size = len(event.method) + len(event.target) + 12 + sum(len(k) + len(v) + 4 for k, v in event.headers)
            if size > self._max_incomplete_event_size:
                self.too_large = True
                raise h11.RemoteProtocolError("request line and headers too large", error_status_hint=431)
        return event


def _raw_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "x-content-type-options: nosniff\r\nconnection: close\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header limit that answers 431, a read deadline and a connection cap.

    Use :func:`guarded_protocol` to get a subclass with the limits set; uvicorn instantiates it
    once per connection.
    """

    read_timeout: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 2048
    # Connections the server is waiting on (unfinished request, or idle between requests), oldest first.
    waiting: ClassVar[OrderedDict[GuardedH11Protocol, None]] = OrderedDict()

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _SizedConnection(h11.SERVER, config.h11_max_incomplete_event_size
                                     or h11._connection.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE)
        self.deadline: asyncio.TimerHandle | None = None

    # -- the connection's life ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        while len(self.connections) > self.max_connections:
            oldest = next(iter(self.waiting), None)
            if oldest is None:  # every connection has a request being answered: this one waits its turn elsewhere
                self._refuse(503, "Service Unavailable", "busy", "too many connections; retry shortly", "busy")
                return
            if oldest._close_waiting("evicted"):
                break  # its connection_lost comes on the next turn of the loop
        self._wait_for_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._stop_waiting()
        elif self.conn.their_state is h11.IDLE or self.conn.their_state is h11.SEND_BODY:
            self._wait_for_request()  # part of a request: the deadline runs (armed once per request)
        else:  # DONE: the whole request is in, the server is answering
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY or (self.conn.their_state is h11.IDLE
                                                      and self.conn.trailing_data[0]):
            self._wait_for_request()  # a pipelined request, or a body still coming: under the deadline
        else:  # idle keep-alive (uvicorn's keep-alive timer ends it); the oldest of these goes first at the cap
            self.waiting[self] = None
            self.waiting.move_to_end(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        if isinstance(self.conn, _SizedConnection) and self.conn.too_large:
            self._refuse(431, "Request Header Fields Too Large", "header_too_large",
                         f"request line and headers over {self.conn._max_incomplete_event_size} bytes",
                         "header_too_large")
            return
        super().send_400_response(msg)

    # -- the deadline and the waiting list ---------------------------------------------------------

    def _wait_for_request(self) -> None:
        if self not in self.waiting:
            self.waiting[self] = None
        if self.deadline is None:
            self.deadline = self.loop.call_later(self.read_timeout, self._close_waiting, "read_timeout")

    def _stop_waiting(self) -> None:
        self.waiting.pop(self, None)
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _close_waiting(self, reason: str) -> bool:
        """Ends a connection the server is waiting on: 408 when part of a request came and was not answered;
        a connection on which nothing came (a fresh one, or idle between requests) is closed without a word.

        Returns:
            Whether it was closed (not when a response is being sent on it, or it is closing already).
        """
        self.deadline = None
        self.waiting.pop(self, None)
        if self.transport.is_closing():
            return False
        cycle = self.cycle
        state = self.conn.their_state
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            return False  # a response is being sent: it finishes, then the connection closes or waits anew
        unanswered_body = state is h11.SEND_BODY and cycle is not None and not cycle.response_started
        unfinished_head = state is h11.IDLE and bool(self.conn.trailing_data[0])  # bytes of a request came
        if unanswered_body:
            cycle.disconnected = True  # the app waiting for the body sees the client as gone
            cycle.message_event.set()
        REFUSED[reason] += 1
        if unanswered_body or unfinished_head:
            self.transport.write(_raw_response(408, "Request Timeout", "request_timeout",
                                               f"the request did not arrive within {self.read_timeout:g} s"))
        self.transport.close()
        return True

    def _refuse(self, status: int, reason: str, code: str, message: str, counter: str) -> None:
        REFUSED[counter] += 1
        self._stop_waiting()
        self.transport.write(_raw_response(status, reason, code, message))
        self.transport.close()


def guarded_protocol(read_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass with these limits (the header limit is uvicorn's
    ``h11_max_incomplete_event_size``), to pass as uvicorn's ``http``.

    Args:
        read_timeout: seconds a client has to send a whole request.
        max_connections: open connections at most.
    """
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {
        "read_timeout": read_timeout, "max_connections": max_connections, "waiting": OrderedDict()})
