"""A small OPA-compatible server (REST Data API subset) backed by the embedded engine.

For tests and development where a real OPA binary is not installed:

    python -m forge.policy.opa_server --policies DIR --port N [--host 127.0.0.1]

Endpoints: `GET /health`; `POST /v1/data/<path>` with `{"input": …}` and `GET /v1/data/<path>`
answer `{"result": value}`, or `{}` when the document is undefined, as OPA does. Errors use
OPA's shape `{"code": …, "message": …}`.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from forge.policy.decision import PolicyError, PolicyEvaluationError, PolicyInputError
from forge.policy.embedded import EmbeddedEngine

MAX_BODY = 1024 * 1024
_PATH_RE = re.compile(r"^/v1/data/([a-z][a-z0-9_]*(?:/[a-z][a-z0-9_]*)*)/?\Z")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OpaServer

    def setup(self) -> None:
        """Disable Nagle: headers and body go out in separate writes, and with delayed ACKs
        every keep-alive request would otherwise wait ~40 ms."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (inputs may be large)."""

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, code: str, message: str) -> None:
        self._send(status, {"code": code, "message": message})

    def do_GET(self) -> None:
        """Health and input-less data reads."""
        if self.path.split("?")[0] == "/health":
            self._send(HTTPStatus.OK, {})
            return
        self._data(None)

    def do_POST(self) -> None:
        """Data API query with an input document."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "invalid_parameter", "body too large")
            self.close_connection = True
            return
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "invalid_parameter", "body is not valid JSON")
            return
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "invalid_parameter", "body must be an object")
            return
        self._data(body.get("input"))

    def _data(self, input_doc: Any) -> None:
        m = _PATH_RE.match(self.path.split("?")[0])
        if not m:
            self._error(HTTPStatus.NOT_FOUND, "resource_not_found", "unknown path")
            return
        dotted = m.group(1).replace("/", ".")
        try:
            value = self.server.engine.evaluate(dotted, input_doc)
        except PolicyInputError as exc:
            self._error(HTTPStatus.BAD_REQUEST, "invalid_parameter", str(exc))
            return
        except (PolicyEvaluationError, PolicyError) as exc:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", str(exc))
            return
        self._send(HTTPStatus.OK, {} if value is None else {"result": value})


class OpaServer(ThreadingHTTPServer):
    """Threaded HTTP server answering the Data API from an EmbeddedEngine."""

    daemon_threads = True

    def __init__(self, engine: EmbeddedEngine, host: str = "127.0.0.1", port: int = 0) -> None:
        self.engine = engine
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8181."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread (tests); stop with `shutdown()` then `server_close()`."""
        t = threading.Thread(target=self.serve_forever, name="opa-server", daemon=True)
        t.start()
        return t


def main(argv: list[str] | None = None) -> int:
    """CLI entry: serve the policies of a directory on a port."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--policies", type=Path, required=True, help="policy directory")
    ap.add_argument("--port", type=int, default=8181)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)
    engine = EmbeddedEngine(args.policies)
    server = OpaServer(engine, args.host, args.port)
    print(f"opa-compatible server on {server.url} policy_hash={engine.policy_hash}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
