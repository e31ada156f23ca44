"""Attack: a local user of the machine waits for `forge up`'s nats-server to die and binds
its loopback port before the supervisor starts it again (the back-off gives them seconds).

The services reconnect to whatever listens there. Over plain TCP they sent it their
CONNECT, password included, then everything they published; a cluster node sent its
route password, with which a rogue server joins the cluster. With the bus's TLS
(`forge.bus.tls`) a client speaks TLS before any byte of NATS and goes on only with a
certificate of the CA `forge up` made; the route peers verify each other the same way. The
squatter gets a TLS hello and nothing else.

Each test first shows the squatter catching the password where TLS is off (the same
harness, so the TLS case cannot pass for a harness that catches nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.bus.cluster import NatsCluster
from forge.bus.dial import ConnectionState, connect
from forge.bus.errors import NatsServerError
from forge.bus.server import NatsServer
from forge.bus.tls import BusTls
from forge.stack.embedded_nats import EmbeddedNats

from ..support.polling import until

FAKE_INFO = (b'INFO {"server_id":"squatter","version":"2.10.0","auth_required":true,'
             b'"tls_required":false,"max_payload":1048576}\r\n')


class Squatter:
    """Binds a port as soon as it is free and records every byte each connection sends
    (after a plaintext NATS INFO, or inside TLS with a certificate of its own)."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.context = context
        self.received = bytearray()
        self.connections = 0
        self.handshake_errors: list[str] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:  # the dead server's port frees at once; take it the moment it does
            try:
                self._sock.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline, f"port {port} never became free"
                time.sleep(0.01)
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(3)
        with conn:
            try:
                if self.context is not None:
                    conn = self.context.wrap_socket(conn, server_side=True)
                else:
                    conn.sendall(FAKE_INFO)
                for _ in range(64):  # bounded: 64 reads of at most 64 KiB
                    data = conn.recv(65536)
                    if not data:
                        return
                    self.received += data
            except ssl.SSLError as exc:
                self.handshake_errors.append(str(exc))
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def _client(server: NatsServer, state: ConnectionState) -> Iterator[None]:
    """A service's client (its own identity) connected to ``server`` and reconnecting every
    0.1 s, in a thread of its own, for the block."""
    loop = asyncio.new_event_loop()
    ready, stop = threading.Event(), threading.Event()

    async def run() -> None:
        nc = await connect(server.url, "forge-spawn", state=state, reconnect_wait=0.1,
                           credentials=server.credentials("spawn"))
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await nc.close()

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), daemon=True)
    thread.start()
    try:
        assert ready.wait(20), "the client never connected"
        yield
    finally:
        stop.set()
        thread.join(timeout=20)
        loop.close()


def _squat_the_restart(server: NatsServer, context: ssl.SSLContext | None = None,
                       ) -> Squatter:
    """Kill ``server`` (a crash), take its port while the client reconnects, and record;
    then start the server again and wait for the client to be back."""
    state = ConnectionState()
    with _client(server, state):
        port = server.port
        server.kill()
        squatter = Squatter(port, context)
        try:
            until(lambda: squatter.connections >= 2, "the client dialling the squatter", 20)
            time.sleep(0.5)  # what it sends after the INFO (or the handshake) has arrived
        finally:
            squatter.close()
        server.start()
        until(lambda: state.connected and state.reconnects >= 1,
              "the client reconnecting to the real server", 30)
    return squatter


@pytest.fixture
def tls(tmp_path: Path) -> BusTls:
    return BusTls.generate(tmp_path / "tls")


def test_without_tls_the_squatter_gets_the_password(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "plain") as server:
        password = server.credentials("spawn").password
        squatter = _squat_the_restart(server)
    assert b"CONNECT" in squatter.received and password.encode() in squatter.received


def test_a_squatter_on_the_client_port_gets_no_password(tmp_path: Path, tls: BusTls) -> None:
    with NatsServer(tmp_path / "tls-server", tls=tls) as server:
        password = server.credentials("spawn").password
        squatter = _squat_the_restart(server)
    assert squatter.connections >= 2
    assert b"CONNECT" not in squatter.received
    assert password.encode() not in squatter.received
    assert squatter.received.startswith(b"\x16\x03")  # a TLS ClientHello, nothing else


def test_a_squatter_with_a_certificate_of_its_own_gets_no_password(
        tmp_path: Path, tls: BusTls) -> None:
    # Its own CA, the same names (127.0.0.1): only the CA differs from the real server's.
    own = BusTls.generate(tmp_path / "squatter-tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(own.cert_file, own.key_file)
    with NatsServer(tmp_path / "tls-server", tls=tls) as server:
        password = server.credentials("spawn").password
        squatter = _squat_the_restart(server, context)
    assert squatter.connections >= 2 and squatter.handshake_errors  # the client hung up
    assert squatter.received == b""
    assert password.encode() not in squatter.received


def _route_squatter(cluster: NatsCluster) -> Squatter:
    """Kill node 2 and take its route port while nodes 0 and 1 dial it again."""
    port = cluster.route_port(2)
    cluster.kill(2)
    squatter = Squatter(port)
    try:
        until(lambda: squatter.connections >= 1, "a peer dialling the dead node's route", 30)
        time.sleep(1.0)
    finally:
        squatter.close()
    return squatter


def test_a_squatter_on_a_route_port_gets_no_route_password(tmp_path: Path,
                                                            tls: BusTls) -> None:
    with NatsCluster(3, tmp_path / "plain") as plain:
        caught = _route_squatter(plain)
    assert plain._route_password.encode() in caught.received  # the attack, without TLS
    with NatsCluster(3, tmp_path / "tls", tls=tls) as cluster:
        squatter = _route_squatter(cluster)
        assert cluster._route_password.encode() not in squatter.received
        assert b"CONNECT" not in squatter.received
        cluster.restart(2)  # and the real node rejoins over TLS
        assert cluster.routes(2) == [cluster.node_name(0), cluster.node_name(1)]


def test_forge_ups_nats_speaks_tls_only(tmp_path: Path) -> None:
    """The embedded NATS of `forge up`: its URL is tls://, its services get the CA, and a
    client without it (or speaking plain NATS) is never answered."""
    nats = EmbeddedNats(tmp_path, None)
    nats.start()
    try:
        env = nats.client_env()
        assert env["NATS_URL"].startswith("tls://127.0.0.1:")
        assert Path(env["FORGE_NATS_CA"]) == tmp_path / "nats-tls" / "ca.pem"
        assert (tmp_path / "nats-tls" / "server-key.pem").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "nats-tls").stat().st_mode & 0o777 == 0o700
        with pytest.raises(NatsServerError):  # a URL cannot carry the CA: no admin URL
            _ = nats.members[0].server.admin_url
        with socket.create_connection(("127.0.0.1", nats.port), timeout=5) as plain:
            plain.settimeout(3)
            try:
                first = plain.recv(1024)  # the server waits for a TLS hello, then hangs up
            except TimeoutError:
                first = b""
            assert not first.startswith(b"INFO"), first
    finally:
        nats.stop()
