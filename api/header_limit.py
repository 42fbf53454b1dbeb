"""A bound on the size of a request head, for uvicorn's httptools protocol (which has
none: a client could send megabytes of header lines within the header timeout).

``HeaderSizeLimit`` counts the bytes a connection delivers while a request head is
incomplete; past ``LUGPI_MAX_HEADER_BYTES`` it answers ``431 Request Header Fields Too
Large`` and closes the connection. The count is checked after each read has been parsed,
so a head that ends inside a read is never refused for the body bytes that follow it:
the bound is the limit plus at most one read. Mixed into ``api.http_protocol``'s
protocol class.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cache

from api.settings import ApiSettings

log = logging.getLogger("lugpi.api")

TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)


@cache
def max_header_bytes() -> int:
    # Read once per process: the protocol is built per connection, the settings never change.
    return ApiSettings().max_header_bytes


class HeaderSizeLimit:
    """Mixin for an ``HttpToolsProtocol`` subclass (put it first among the bases)."""

    transport: asyncio.Transport
    _head_bytes = 0
    _in_head = True
    _heads_done = 0

    def data_received(self, data: bytes) -> None:
        counting, heads_before = self._in_head, self._heads_done
        super().data_received(data)  # type: ignore[misc]
        # Only a read that began and ended inside one head counts whole: one that ended a
        # head went on with its body, one that began in a body was body.
        if not counting or self._heads_done != heads_before or not self._in_head:
            return
        if self.transport.is_closing():
            return
        self._head_bytes += len(data)
        limit = max_header_bytes()
        if self._head_bytes > limit:
            log.info("closing a connection whose request head passed %d bytes", limit)
            body = (
                b'{"detail": "request head larger than %d bytes (LUGPI_MAX_HEADER_BYTES): '
                b'send fewer or shorter headers"}' % limit
            )
            self.transport.write(TOO_LARGE % (len(body), body))
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._heads_done += 1
        super().on_headers_complete()  # type: ignore[misc]

    def on_message_complete(self) -> None:
        self._in_head = True  # the next bytes on a kept-alive connection are a new head
        super().on_message_complete()  # type: ignore[misc]
