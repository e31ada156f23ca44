"""ssh-hardening's `keys-only` check against a server that writes its own verdict line.

The check asks the ssh client which methods the server offers and matches the client's
verdict, `learner@10.66.1.10: Permission denied (publickey).` OpenSSH prints a server's
disconnect message at LogLevel=ERROR, and passes newlines in it through: a listener that
speaks just enough SSH to disconnect with "bye<newline>" and that line made a line-wise
match (`grep -x`) pass with no sshd at all (review BS). The check now takes the client's
whole output, which such a message can never be alone (the client prefixes it with
"Received disconnect from …").

The real OpenSSH client and the check's own command from the shipped template, pointed at
a loopback listener instead of the lab's 10.66.1.10 (no lab needed: the client is the
same program the lab's image runs).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
from collections.abc import Iterator

import pytest

from forge.content import content_path
from forge.templates import TemplateRegistry

LAB_ADDRESS = "10.66.1.10"
LINE = f"learner@{LAB_ADDRESS}: Permission denied (publickey)."


def _keys_only_command() -> list[str]:
    template = TemplateRegistry.load(content_path("templates")).get("ssh-hardening").template
    criterion = next(c for c in template.spec.success_criteria if c.id == "keys-only")
    check = next(ch for ch in criterion.checks if ch.container == "ops")
    return [part.replace(LAB_ADDRESS, "127.0.0.1") for part in check.command]


def _packet(payload: bytes) -> bytes:
    pad = 8 - (5 + len(payload)) % 8
    pad += 8 if pad < 4 else 0
    return struct.pack(">IB", 1 + len(payload) + pad, pad) + payload + b"\0" * pad


def _disconnect(text: bytes) -> bytes:
    """SSH_MSG_DISCONNECT (1), reason 2, description ``text``, no language tag."""
    return _packet(b"\x01" + struct.pack(">II", 2, len(text)) + text + struct.pack(">I", 0))


@pytest.fixture
def fake_server() -> Iterator[int]:
    """A listener that answers every client with a version line, then a disconnect whose
    description ends in the check's line (as the client would write it for loopback)."""
    text = b"bye\n" + LINE.replace(LAB_ADDRESS, "127.0.0.1").encode()
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                    conn.recv(1000)
                    conn.sendall(_disconnect(text))
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        srv.close()


def test_a_server_written_verdict_line_does_not_pass(fake_server: int) -> None:
    command = _keys_only_command()
    result = subprocess.run(command, input=f"{fake_server}\n", capture_output=True, text=True,
                            timeout=30, check=False)
    # The client did print the line the check looks for, on a line of its own...
    assert LINE.replace(LAB_ADDRESS, "127.0.0.1") in result.stdout.splitlines()
    # ...behind its own prefix, so the whole output is not the verdict: the check fails.
    assert "Received disconnect" in result.stdout
    assert result.returncode != 0, result.stdout
