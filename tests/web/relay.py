"""A loopback TCP relay between the browser and the platform that a test can cut, so a
network drop in a browser test is a real one: every open connection dies and new ones are
refused until the relay is restored. A slow network for terminals: while `hold_terminals` is
on, a new terminal WebSocket's connection (of one host) is accepted but goes nowhere (the
page's socket stays connecting) until `release_terminals`. A stalled link: while `stall` is
on, connections stay open but nothing gets through either way (what is sent is lost), as
when a network hangs without a reset; `unstall` ends it, resetting those connections."""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class CuttableRelay:
    """A loopback TCP relay to `target` whose connections can all be cut at once."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = threading.Event()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.stalled = threading.Event()
        self.holding = threading.Event()
        self.hold_part = b"/terminal"
        self.held: list[tuple[socket.socket, bytes]] = []  # and its request line
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()  # the network is down: nothing gets through
                continue
            line = _request_line(client) if self.holding.is_set() else b""
            if b"/terminal" in line and self.hold_part in line:
                with self.lock:
                    self.held.append((client, line))
                continue
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        """Relay `client` to the target, both ways."""
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        with self.lock:
            self.open.update((client, upstream))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                if not self.stalled.is_set():
                    dst.sendall(data)
        for sock in (src, dst):
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self.lock:
            self.open.discard(sock)
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def cut(self) -> None:
        """The network goes down: every open connection dies, new ones are refused."""
        self.down.set()
        with self.lock:
            victims = list(self.open)
        for sock in victims:
            self._drop(sock)

    def restore(self) -> None:
        self.down.clear()

    def stall(self) -> None:
        """The link hangs: connections stay open, what is sent on them is lost."""
        self.stalled.set()

    def unstall(self) -> None:
        """The link works again; the connections that lost data meanwhile are reset."""
        with self.lock:
            victims = list(self.open)
            self.stalled.clear()
        for sock in victims:
            self._drop(sock)

    def hold_terminals(self, part: bytes = b"") -> None:
        """New terminal WebSockets (those whose request line contains `part`) hang,
        connecting, until `release_terminals`. (A browser opens one WebSocket to a host at
        a time: the page's other terminals wait behind a held one.)"""
        self.hold_part = part
        self.holding.set()

    def held_count(self) -> int:
        """Terminal connections held now."""
        with self.lock:
            return len(self.held)

    def release_terminals(self) -> None:
        """The held connections go through (their request is still unread), and new ones."""
        self.holding.clear()
        with self.lock:
            held, self.held = self.held, []
        for client, _ in held:
            self._connect(client)

    def close(self) -> None:
        self.closed.set()
        self.cut()
        self.listener.close()
        with self.lock:
            held, self.held = self.held, []
        for client, _ in held:
            client.close()


def _request_line(client: socket.socket) -> bytes:
    """The connection's HTTP request line, peeked (left for the target to read)."""
    client.settimeout(10)
    try:
        head = client.recv(4096, socket.MSG_PEEK)
    except OSError:
        return b""
    finally:
        client.settimeout(None)
    return head.split(b"\r\n", 1)[0]
