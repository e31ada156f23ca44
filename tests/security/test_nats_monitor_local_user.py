"""A local user of the server reading the bus through nats-server's monitoring port.

nats-server's monitoring (/connz, /subsz, /jsz) has no password, and it listens on
loopback, where every user of the machine can dial it: before, user `nobody` read every
connection's name and subscription of `forge up`'s bus. Now `forge up` (root) closes the
monitoring ports to every other user id with an nftables table of its own; the client
port, which the services (machine accounts of their own) use, stays open to all. Real
nats-server, real nftables, a real other user.
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest

from forge.bus.permissions import BusAuth
from forge.stack.embedded_nats import EmbeddedNats
from forge.stack.monitor_guard import MonitorGuard, ruleset, table_name

pytestmark = pytest.mark.root

DIAL = ("import socket, sys\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5).close()\n"
        "    print('open')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n")


def dial_as_nobody(port: int) -> str:
    """What user `nobody` gets dialling 127.0.0.1:`port`: "open" or the error's name."""
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "/usr/bin/python3", "-c", DIAL, str(port)],
                          capture_output=True, text=True, timeout=30, cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def test_another_local_user_cannot_read_the_monitoring_port(tmp_path: Path) -> None:
    nats = EmbeddedNats(tmp_path, BusAuth.generate())
    nats.start()
    try:
        server = nats.members[0].server
        assert nats.monitor_open is None
        assert dial_as_nobody(server.monitor_port) == "ConnectionRefusedError"
        assert dial_as_nobody(server.port) == "open"  # the services' port
        # forge up itself (this process's user) still reads it.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(server.monitor_url + "/connz", timeout=10) as resp:
            assert resp.status == 200
        # A server restarted by the supervision comes back on its ports: still closed.
        server.restart()
        assert dial_as_nobody(server.monitor_port) == "ConnectionRefusedError"
    finally:
        nats.stop()
    assert table_name(tmp_path) not in tables()


def test_a_table_left_by_a_killed_forge_up_is_replaced_not_doubled(tmp_path: Path) -> None:
    MonitorGuard.install(tmp_path, [1])  # what a `forge up` killed with -9 leaves
    nats = EmbeddedNats(tmp_path, BusAuth.generate())
    nats.start()
    try:
        listed = subprocess.run(["nft", "list", "table", "ip", table_name(tmp_path)],
                                capture_output=True, text=True, check=True,
                                timeout=30).stdout
        port = nats.members[0].server.monitor_port
        assert f"dport {port}" in listed and "dport 1 " not in listed
        assert tables().count(table_name(tmp_path)) == 1
    finally:
        nats.stop()
    assert table_name(tmp_path) not in tables()


def test_the_ruleset_refuses_what_is_not_a_port() -> None:
    for ports in ([], [0], [70000], ["22; flush ruleset"]):
        with pytest.raises(ValueError, match="TCP ports"):
            ruleset("forge_nats_monitor_x", ports, 0)  # type: ignore[arg-type]
    assert "{ 4222, 8222 }" in ruleset("t", [8222, 4222, 8222], 0)
