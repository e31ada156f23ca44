"""Attack: a local user reads OPERATOR_TOKEN from the process table while the operator
follows the runbook.

The runbook's readiness and scenario-view commands were `curl -H "Authorization: Bearer
$OPERATOR_TOKEN" …`: the shell expands the token into curl's arguments, and
/proc/PID/cmdline is world-readable, so any shell account on the server read the whole
token while curl ran (reproduced against a service that does not answer, which is when
the operator runs it). The documented commands now hand curl the header on its standard
input (`printf … | curl -H @-`; printf is a shell builtin, no process). Here the
runbook's own command runs against a real loopback HTTP server that holds its answer until
every command line of the machine has been read: the token is in none of them, and the
server still got it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ..support.http_stub import serving
from ..support.proc import machine_cmdlines

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUNBOOK = REPO / "docs" / "operator_runbook.md"
TOKEN_VAR = "$OPERATOR_TOKEN"
DOCUMENTED_URL = "http://127.0.0.1:8082/readyz"


def _command_lines(doc: Path) -> list[str]:
    """The document's lines, a shell line continued with a backslash joined to the next."""
    return doc.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()


def test_no_documented_curl_takes_the_operator_token_as_an_argument() -> None:
    sends = [(d.name, line) for d in DOCS for line in _command_lines(d)
             if "curl" in line and TOKEN_VAR in line]
    assert sends, "the runbook documents authenticated curl calls"
    for name, line in sends:
        before, _, after = line.partition("curl")
        assert TOKEN_VAR in before and "-H @-" in after, (name, line)


class _Held(BaseHTTPRequestHandler):
    """Records the Authorization header, then answers only once released."""

    seen: list[str] = []
    arrived = threading.Event()
    release = threading.Event()

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization", ""))
        type(self).arrived.set()
        type(self).release.wait(timeout=120)
        body = b'{"status":"ready"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def held_server() -> Iterator[str]:
    _Held.seen, _Held.arrived, _Held.release = [], threading.Event(), threading.Event()
    with serving(_Held) as url:
        try:
            yield url
        finally:
            _Held.release.set()


def _runbook_readyz_command() -> str:
    lines = [line for line in _command_lines(RUNBOOK)
             if TOKEN_VAR in line and DOCUMENTED_URL in line]
    assert len(lines) == 1, lines
    return lines[0].strip()


def test_the_runbooks_readyz_command_keeps_the_token_off_every_command_line(
        held_server: str) -> None:
    assert shutil.which("curl"), "curl is what the runbook runs"
    token = "op-" + secrets.token_hex(24)
    command = _runbook_readyz_command().replace(DOCUMENTED_URL, f"{held_server}/readyz")
    proc = subprocess.Popen(["/bin/sh", "-c", command], env={**os.environ,
                            "OPERATOR_TOKEN": token}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert _Held.arrived.wait(timeout=60), "curl never reached the server"
        leaked = {pid: line for pid, line in machine_cmdlines().items()
                  if token.encode() in line}
        _Held.release.set()
        out, err = proc.communicate(timeout=60)
    finally:
        _Held.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert leaked == {}
    assert proc.returncode == 0, err
    assert _Held.seen == [f"Bearer {token}"]
    assert b'"ready"' in out
