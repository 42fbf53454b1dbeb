"""uvicorn's HTTP protocol with a header-read timeout.

uvicorn has none: a client may open a connection and send nothing, or a header line
every few seconds (each byte re-arms nothing and cancels the keep-alive timer), and hold
a file descriptor for as long as it likes; a few thousand such clients exhaust the
process's descriptors. Here a connection must deliver a complete request head within
``LUGPI_HEADER_TIMEOUT_S`` of opening, and of the first byte of each later request on
it, or it is closed. Use it with

    uvicorn api.main:create_app --factory --http api.http_protocol:HeaderTimeoutProtocol

Bodies are not timed here: once the head is in, the request counts against uvicorn's
``--limit-concurrency``, and the app's body limit bounds its size.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.header_limit import HeaderSizeLimit
from api.settings import ApiSettings

log = logging.getLogger("lugpi.api")


@cache
def header_timeout_s() -> float:
    # Read once per process: the protocol is built per connection, the settings never change.
    return ApiSettings().header_timeout_s


class HeaderTimeoutProtocol(HeaderSizeLimit, HttpToolsProtocol):
    _head_timer: asyncio.TimerHandle | None = None

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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
