"""Attack: a learner queues data on TCP connections inside the lab until the kernel refuses,
to take the machine's socket memory (tcp_mem) and with it every connection of the machine.

Socket buffers are kernel memory the lab's memory limit must bound: cgroup v2 charges them
to memory.max; cgroup v1 keeps them on a counter of their own (memory.kmem.tcp), unlimited
unless the runtime sets it. Before it did, 40 connections queued 161 MiB in a lab whose
memory cgroup said 27 MiB of 256."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from forge.runtime import Limits
from forge.runtime.local.cgroups import v1_tcp_limit
from tests.runtime.helpers import simple_lab
from tests.support.one_lab import one_lab

pytestmark = pytest.mark.root

LAB_MEMORY_MB = 64
QUEUE = """import socket
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(64)
queued, held, chunk = 0, [], b"x" * 65536
for _ in range(32):
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()  # never read: what is sent stays queued on both ends
    client.setblocking(False)
    held += [client, peer]
    while True:
        try:
            queued += client.send(chunk)
        except BlockingIOError:
            break
print(queued)
"""


def test_a_lab_cannot_queue_more_socket_memory_than_its_limit(tmp_path: Path) -> None:
    lab = "tcp-" + secrets.token_hex(3)
    with one_lab(tmp_path / "state", simple_lab(lab, Limits(memory_mb=LAB_MEMORY_MB))) as rt:
        res = rt.exec(lab, "box", ["python3", "-c", QUEUE], timeout=60)
        assert res.exit_code == 0, res.stderr_text
        queued = int(res.stdout_text)
        # 32 connections of autotuned buffers queue ~128 MiB when nothing bounds them.
        assert 0 < queued < LAB_MEMORY_MB << 20, queued
        if rt.cgroups.version == 1:  # bounded by the socket-buffer limit, not the lab's
            memory = os.path.join(rt.cgroups.root, "memory", rt.names.lab(lab))
            with open(os.path.join(memory, "memory.kmem.tcp.limit_in_bytes")) as fh:
                limit = int(fh.read())
            assert limit == v1_tcp_limit(Limits(memory_mb=LAB_MEMORY_MB))
            assert queued < 2 * limit, (queued, limit)
        assert rt.exec(lab, "box", ["echo", "alive"]).stdout == b"alive\n"
