"""uvicorn's HTTP protocol with the slow-client limits uvicorn lacks.

uvicorn has none of these: a client may open a connection and send nothing, or a header
line every few seconds, or a body byte every few seconds, and hold a file descriptor and
a request slot for as long as it likes. Use it with

    uvicorn api.main:create_app --factory --http api.http_protocol:HeaderTimeoutProtocol

- **Head:** a connection must deliver a complete request head within
  ``LUGPI_HEADER_TIMEOUT_S`` of opening, and of the first byte of each later request on
  it, or it is closed.
- **Body:** once the head is in, the body must be complete within ``LUGPI_BODY_TIMEOUT_S``
  and arrive at ``LUGPI_MIN_BODY_BYTES_PER_S`` on average (checked every second; time
  during which the app has paused reading does not count), or the connection is closed.
- **Concurrency:** uvicorn's ``--limit-concurrency`` counted every open connection, idle
  keep-alive ones and those still sending their head included, so 256 idle sockets made
  every request a 503. Here it counts only requests being worked on (body complete, or
  none); requests still receiving their body are bounded apart, by
  ``LUGPI_MAX_RECEIVING_REQUESTS``, and idle connections by the header timeout alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import cache
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.header_limit import HeaderSizeLimit
from api.settings import ApiSettings

log = logging.getLogger("lugpi.api")

# How often a body in progress is checked against the minimum rate and the timeout.
BODY_CHECK_S = 1.0


@cache
def _settings() -> ApiSettings:
    # Read once per process: the protocol is built per connection, the settings never change.
    return ApiSettings()


def header_timeout_s() -> float:
    return _settings().header_timeout_s


class HeaderTimeoutProtocol(HeaderSizeLimit, HttpToolsProtocol):
    # Requests of this process whose head is in and whose body is not (all connections).
    receiving: ClassVar[int] = 0

    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _body_started = 0.0
    _body_paused_s = 0.0  # seconds the app held reading paused (flow control), not counted
    _body_bytes = 0
    _body_counted = False  # whether it counts in ``receiving`` (a refused one does not)
    _request_limit: int | None = None

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(header_timeout_s(), self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection that sent no complete request head in time")
            self.transport.close()

    # --- bodies -------------------------------------------------------------------------
    def _expects_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"0", b"")
            if name == b"transfer-encoding":
                return True
        return False

    def _start_body(self, counted: bool) -> None:
        self._body_counted = counted
        if counted:
            type(self).receiving += 1
        self._body_started = time.monotonic()
        self._body_paused_s = 0.0
        self._body_bytes = 0
        self._body_timer = self.loop.call_later(BODY_CHECK_S, self._check_body)

    def _end_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
            if self._body_counted:
                type(self).receiving -= 1

    def _check_body(self) -> None:
        settings = _settings()
        elapsed = time.monotonic() - self._body_started
        if self.flow is not None and self.flow.read_paused:
            # The app has not read what it has: the client is not the slow one.
            self._body_paused_s += BODY_CHECK_S
        sending = elapsed - self._body_paused_s
        too_long = elapsed > settings.body_timeout_s
        too_slow = self._body_bytes < settings.min_body_bytes_per_s * sending
        if (too_long or too_slow) and not self.transport.is_closing():
            why = "took too long" if too_long else "arrived too slowly"
            log.info("closing a connection whose request body %s (%d bytes)", why, self._body_bytes)
            self._end_body()
            self.transport.close()
            return
        self._body_timer = self.loop.call_later(BODY_CHECK_S, self._check_body)

    # --- uvicorn's callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._request_limit is None:
            self._request_limit = self.limit_concurrency
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        limit = self._request_limit
        body = self._expects_body()
        # Working requests: the tasks of this process, less those still receiving a body.
        working = len(self.tasks) - type(self).receiving
        over = (limit is not None and working >= limit) or (
            body and type(self).receiving >= _settings().max_receiving_requests
        )
        # uvicorn answers 503 itself when its limit is exceeded: 0 forces that, None skips
        # its own check (which counts idle connections).
        self.limit_concurrency = 0 if over else None
        try:
            super().on_headers_complete()
        finally:
            self.limit_concurrency = limit
        if body:  # a refused request's body is timed too, or it could hold the connection
            self._start_body(counted=not over)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._end_body()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._end_body()
        super().connection_lost(exc)
