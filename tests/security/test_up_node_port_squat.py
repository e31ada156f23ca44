"""Attack: a local process squats the port a second lab node would get (node 1's port + 1)
to receive the terminals and grading meant for that node.

Before (no `--nodes`): there was no second node. Now a node without a fixed port gets the
next port `forge up` can bind itself: a squatted port is skipped, and the node's URL
(`FORGE_NODE_URL`, the status table) names the socket `forge up` holds. (Readiness needs
the pid `forge up` started, so a squatter is not taken for a node either:
`tests/stack/test_supervisor.py`.)
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from forge.stack.supervisor import Child, Supervisor
from forge.stack.topology import plan

from ..live_server import distinct_ports, free_port


class SleepSupervisor(Supervisor):
    """The real binding and node environment over `sleep` processes (no services)."""

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(["sleep", "600"], start_new_session=True)


def squat_after() -> tuple[int, socket.socket]:
    """A free port P whose successor P+1 this test now holds (listening)."""
    for _ in range(50):
        port = free_port()
        squatter = socket.socket()
        try:
            squatter.bind(("127.0.0.1", port + 1))
        except OSError:
            squatter.close()
            continue
        squatter.listen()
        return port, squatter
    raise AssertionError("no free pair of ports")


def test_a_squatted_next_port_is_skipped_and_never_given_to_the_node(tmp_path: Path) -> None:
    first, squatter = squat_after()
    squatted = first + 1
    spawn, scoreboard = distinct_ports(2, first)
    ports = {"spawn": spawn, "orchestrator": first, "scoreboard": scoreboard}
    storage = tmp_path / "storage"
    storage.mkdir()
    sup = SleepSupervisor({"NATS_URL": "nats://127.0.0.1:1"}, storage, ports=ports,
                          topology=plan(storage, ports, base_prefix="q", nodes=2))
    try:
        sup.start()
        node2 = sup.children["orchestrator-2"]
        assert node2.port != squatted
        assert node2.sock is not None and node2.sock.getsockname()[1] == node2.port
        assert node2.env["FORGE_NODE_URL"] == f"http://127.0.0.1:{node2.port}"
        assert node2.env["FORGE_NODE_ID"] == "node-2" and node2.env["FORGE_RUNTIME_PREFIX"] == "qn2"
        assert sup.url("orchestrator-2") == node2.env["FORGE_NODE_URL"]
    finally:
        sup.stop()
        squatter.close()
