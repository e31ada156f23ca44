"""HEAD under the server Forge runs (uvicorn with `forge serve`'s configuration), not only
under the test client.

HeadAsGetMiddleware routes HEAD as GET by setting the method in the scope, which the
server shares. Before: uvicorn, reading GET there, expected Content-Length bytes of body,
raised "Response content shorter than Content-Length" (logged as an unhandled error with
its traceback, for every `curl -I` of a monitor) and closed the connection, so the next
request a client sent on it got no answer. Now the answer is GET's head, no body, no
error, and the connection stays open for the next request.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from ..security.test_malformed_http import served

pytestmark = pytest.mark.usefixtures("sqlite_only_store")


def _answer(sock: socket.socket, head_only: bool) -> tuple[bytes, bytes]:
    """One answer's head and (unless `head_only`) its Content-Length bytes of body."""
    reply = b""
    while b"\r\n\r\n" not in reply and (chunk := sock.recv(65536)):
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:"))
    while not head_only and len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head, body


def test_head_keeps_the_connection_and_logs_no_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with served(tmp_path) as port, caplog.at_level(logging.ERROR), \
            socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = _answer(sock, head_only=True)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b"content-length: " in head.lower() and body == b""
        # The same connection answers the next request (before: closed, nothing came).
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, body = _answer(sock, head_only=False)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b'"status":"ok"' in body
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[:2000]
