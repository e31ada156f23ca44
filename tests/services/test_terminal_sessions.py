"""A terminal that survives: one shell per (lab, host) on the lab node, outliving its sockets.

Before, a terminal was one WebSocket = one PTY: a dropped connection, a reload or a second tab
gave a fresh shell and lost the scrollback and the shell's state. Now a socket attaches to
the host's live session: it first gets `{"type": "attached", "new": …, "replayed": N}` and
the session's recent output, then shares the shell with every other socket attached to it.

Real spawn_service + orchestrator (uvicorn), nats-server, SQLite and the local lab runtime
(the `lab` fixture of tests/security/test_terminal_cap); the scrollback's trimming is checked
on its own.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from forge.services.orchestrator.terminal_output import RESET, Scrollback

from ..security.test_terminal_cap import Lab, closed_with, lab

__all__ = ["lab"]  # the module-scoped live platform
pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]


def attach(lab: Lab, sid: str, headers: dict[str, str], **size: int) -> tuple[
        ClientConnection, dict[str, Any], bytes]:
    """Open a terminal socket; return it with its `attached` frame and the replay."""
    query = "&".join(f"{k}={v}" for k, v in size.items())
    url = lab.spawn_url.replace("http://", "ws://") + f"/v1/scenarios/{sid}/terminal"
    ws = connect(url + (f"?{query}" if query else ""), additional_headers=headers,
                 open_timeout=30, max_queue=None).__enter__()  # closed by the caller
    first = ws.recv(timeout=30)
    assert isinstance(first, str)
    frame: dict[str, Any] = json.loads(first)
    assert frame["type"] == "attached", frame
    replay = b""
    if frame["replayed"]:
        data = ws.recv(timeout=30)
        assert isinstance(data, bytes)
        replay = data
    return ws, frame, replay


READ_KEEP = 1 << 20  # bytes of output kept while looking for a marker (a flood never ends)


def read_until(ws: ClientConnection, marker: bytes, timeout: float = 30) -> bytes:
    """Output until `marker` (at most the last READ_KEEP bytes of it); fails after `timeout`
    even while output keeps coming (a shell printing forever must not hang the test)."""
    seen = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{marker!r} not seen in {timeout} s; last: {bytes(seen[-200:])!r}"
        data = ws.recv(timeout=remaining)
        start = max(0, len(seen) - len(marker))
        seen += data if isinstance(data, bytes) else data.encode()
        if marker in seen[start:]:
            return bytes(seen)
        if len(seen) > READ_KEEP:
            del seen[:len(seen) - READ_KEEP]


def end_sockets_on_the_node(lab: Lab, sid: str) -> None:
    """The connection drops, server side: the node ends every socket of the lab's sessions
    (as when a proxy or the network cuts it), while the shells stay."""
    async def drop() -> None:
        for session in lab.orch.terminal_sessions.of_lab(sid):
            for att in list(session.attached):
                att.end(None)
    lab.in_loop(drop)


def test_a_dropped_terminal_reattaches_to_the_same_shell_with_its_scrollback(
        lab: Lab) -> None:
    """Type, drop the socket server side, reconnect: the replay holds what was printed and
    the shell is the same one (its variable is still set); a second socket at the same time
    sees the same output, either one types, the latest resize wins."""
    headers = lab.learner("sam")
    sid = lab.spawn_running(headers)
    ws, frame, replay = attach(lab, sid, headers)
    assert frame["new"] is True and replay == b""
    ws.send(b"PS1='at-$((2+3))> '; echo marker-$((6*7)); export X=1\n")
    read_until(ws, b"at-5> ")  # at its prompt: readline has read and written the size back
    end_sockets_on_the_node(lab, sid)
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=30)

    again, frame2, replay = attach(lab, sid, headers, rows=30, cols=100)
    assert frame2["new"] is False and frame2["session"] == frame["session"]
    assert replay.startswith(RESET) and b"marker-42" in replay
    assert frame2["replayed"] == len(replay) - len(RESET)
    other, frame3, replay3 = attach(lab, sid, headers, rows=40, cols=120)  # a second tab
    assert frame3["session"] == frame["session"] and b"marker-42" in replay3
    with again, other:
        again.send(b"echo X=$X-$((1+1))\n")  # the same shell: X is still set
        for sock in (again, other):
            assert b"X=1-2" in read_until(sock, b"X=1-2")
        other.send(b"stty size; echo size-$((2+2))\n")  # typed in the other tab;
        for sock in (again, other):  # both see it, and the last resize (40x120) holds
            assert b"40 120" in read_until(sock, b"size-4")
    assert lab.held(sid) == 1


def test_a_reattach_without_a_size_keeps_the_shells_size(lab: Lab) -> None:
    """A socket that gives no size (the CLI, an older page) shares the shell at the size
    the tabs set; before, spawn_service passed 24x80 for it and the shell shrank to that
    under every other tab."""
    headers = lab.learner("uma")
    sid = lab.spawn_running(headers)
    ws, frame, _ = attach(lab, sid, headers, rows=40, cols=120)
    with ws:
        assert frame["new"] is True
        ws.send(b"PS1='at-$((2+3))> '\n")
        read_until(ws, b"at-5> ")  # at its prompt: readline has read and written the size
    bare, frame2, _ = attach(lab, sid, headers)
    with bare:
        assert (frame2["new"], frame2["session"]) == (False, frame["session"])
        bare.send(b"stty size; echo size-$((2+2))\n")
        assert b"40 120\r\nsize-4" in read_until(bare, b"size-4")


def test_a_reload_storm_never_hits_the_terminal_cap(lab: Lab) -> None:
    """Twenty reloads in a row (close, open): every one reattaches, none is refused."""
    headers = lab.learner("rita")
    sid = lab.spawn_running(headers)
    ws, first, _ = attach(lab, sid, headers)
    ws.close()
    for n in range(20):
        ws, frame, _replay = attach(lab, sid, headers)
        assert (frame["new"], frame["session"]) == (False, first["session"]), n
        ws.close()
    assert lab.held(sid) == 1


def test_an_exited_shell_ends_and_the_next_attach_starts_a_new_one(lab: Lab) -> None:
    """`exit` ends the session (its socket is closed normally, its place freed); the next
    attach gets a fresh shell without the old one's state. (A shell that idles out, attached
    or not: tests/security/test_terminal_cap.py.)"""
    headers = lab.learner("ivy")
    sid = lab.spawn_running(headers)
    ws, frame, _ = attach(lab, sid, headers)
    ws.send(b"export Y=7; exit\n")
    control, code, _ = closed_with(ws)
    assert (control, code) == ({}, 1000)  # a plain close, no reason: the shell ended
    lab.wait_held(sid, 0)

    ws, fresh, _ = attach(lab, sid, headers)
    with ws:
        assert fresh["new"] is True and fresh["session"] != frame["session"]
        ws.send(b"echo Y=${Y:-unset}-$((1+2))\n")
        assert b"Y=unset-3" in read_until(ws, b"-3\r")


def test_the_scrollback_ring_keeps_exactly_its_last_bytes() -> None:
    """Chunk after chunk, the ring holds exactly the last `limit` bytes of the output (whole
    chunks dropped, at most one sliced), as the old copy-on-every-chunk buffer did."""
    ring = Scrollback(limit=100)
    everything = b""
    for n in range(300):
        chunk = (f"{n:03d}:" + "x" * (n % 37) + "\n").encode()
        ring.add(chunk)
        everything += chunk
        assert ring.size == min(len(everything), 100)
    assert ring.replay() == everything[-100:][everything[-100:].find(b"\n") + 1:]
    big = Scrollback(limit=10)
    big.add(b"0123456789abcdef\n")  # one chunk larger than the ring
    assert big.size == 10 and big.replay() == b""


def test_the_replay_starts_cleanly_after_trimming() -> None:
    """Once older output is dropped, the replay starts after a newline (never inside a UTF-8
    character or an escape sequence); untrimmed output is replayed whole."""
    back = Scrollback(limit=16)
    back.add(b"abc\n")
    assert back.replay() == b"abc\n"
    back.add(b"\x1b[31m\xc3\xa9t\xc3\xa9\n\x1b[0mok\n")  # 20 bytes more: the start is cut
    assert back.replay() == b"\x1b[0mok\n"
    line = Scrollback(limit=5)
    line.add("ééé".encode())  # 6 bytes, no newline: the cut lands inside the first é
    assert line.replay() == "éé".encode()
