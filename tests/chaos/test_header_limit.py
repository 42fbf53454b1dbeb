"""A request head larger than LUGPI_MAX_HEADER_BYTES is answered 431 and the connection
closed (issue 27 item 11: uvicorn's httptools protocol takes heads of any size; a client
could send megabytes of header lines within the header timeout). The server as deployed,
in a child process under an RSS guard."""

from __future__ import annotations

import contextlib
import socket

import httpx

from tests.chaos.test_child_server import TEXT, child  # noqa: F401


def _send_head(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        # The server may close while we still send: that is a refusal too.
        with contextlib.suppress(OSError):
            s.sendall(head)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
        return b"".join(chunks)


def test_an_oversized_request_head_is_refused(child: object) -> None:  # noqa: F811
    server = child(LUGPI_MAX_HEADER_BYTES="16384")  # type: ignore[operator]
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(2000))  # ~2 MB
    answer = _send_head(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + pad + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert not server.killed_for_memory
    # Heads under the limit (and bodies of any allowed size) are unaffected.
    small = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 100) for i in range(50))
    ok = _send_head(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + small + b"\r\n"
    )
    assert ok.startswith(b"HTTP/1.1 200"), ok[:200]
    big_body = {"texts": ["a fine film " * 750] * 6, "model": "sentiment"}  # a 54 KB body
    assert httpx.post(server.url + "/classify", json=big_body).status_code == 200
    assert httpx.post(server.url + "/classify", json=TEXT).status_code == 200
