"""Stop waiting for work whose client went away.

Starlette does not cancel a handler when its client disconnects, so a request whose
client gave up would still be tokenized and run. ``unless_disconnected`` races the work
against the connection: when the ASGI server reports ``http.disconnect`` first, the work
is cancelled (a request still queued in the batcher is then dropped unrun) and
``ClientGone`` is raised.

Called only after the body has been read, so the only message ``receive`` can still
deliver is ``http.disconnect``: the client closed the connection, or the response is
complete (which cannot happen while the handler still waits).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from contracts.errors import ClientGone

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
        watcher.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task  # let the cancellation land before the handler returns
    raise ClientGone("the client disconnected before its answer was ready")
