"""Attack: a learner queues data on TCP connections inside the lab until the kernel refuses,
to take the machine's socket memory (tcp_mem) and with it every connection of the machine.

Socket buffers are kernel memory the lab's memory limit must bound: cgroup v2 charges them
to memory.max; cgroup v1 keeps them on a counter of their own (memory.kmem.tcp), unlimited
unless the runtime sets it. Before it did, 40 connections queued 161 MiB in a lab whose
memory cgroup said 27 MiB of 256.

Connections nobody accepts are not charged at all: each waits in its listener's accept queue
as a socket the kernel made in softirq context, outside every memory cgroup, with what its
client sent before closing. From a learner host (no capability), 12 listeners that never
accept held 49,000 such sockets (116 MB of the TCP slab, 49,000 pages of the machine's
``tcp_mem``) while the lab's memory cgroup said 52 MB in all. Now the orchestrator's reaper
pass aborts the listeners holding unaccepted connections of a host whose listeners hold
more than ``listen_queues.HOST_LIMIT`` together."""

from __future__ import annotations

import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from forge.runtime import Limits
from forge.runtime.local import listen_queues
from forge.runtime.local.cgroups import v1_tcp_limit
from tests.runtime.helpers import simple_lab
from tests.support.one_lab import one_lab
from tests.support.polling import until

pytestmark = pytest.mark.root

LAB_MEMORY_MB = 64
# Three listeners that never accept, each sent 50 connections whose clients wrote and
# closed, and a listener with nothing waiting; once told to go on, each tries to accept.
UNACCEPTED = """import errno, os, socket, time
held = []
for _ in range(3):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held.append(server)
    for _ in range(50):
        client = socket.create_connection(server.getsockname())
        client.sendall(b"x" * 1000)
        client.close()
tidy = socket.socket()
tidy.bind(("127.0.0.1", 0))
tidy.listen(8)
open("/workspace/ready", "w").close()
while not os.path.exists("/workspace/go"):
    time.sleep(0.05)
for server in held:
    server.setblocking(False)
    try:
        server.accept()
        print("accepted")
    except OSError as exc:
        print(errno.errorcode[exc.errno])
client = socket.create_connection(tidy.getsockname())
print("tidy" if tidy.accept() else "")
"""
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

        # Unaccepted connections: past the limit, the listeners holding them are aborted.
        assert rt.trim_listen_queues() == []
        workspace = os.path.join(rt.names.data_dir(lab, "box"), "workspace")
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(rt.exec, lab, "box", ["python3", "-c", UNACCEPTED], timeout=60)
            until(lambda: held.done() or os.path.exists(os.path.join(workspace, "ready")),
                  "the flood's sockets held")
            assert not held.done(), held.result()
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(listen_queues, "HOST_LIMIT", 100)
                assert rt.trim_listen_queues() == [(lab, "box", 150)]
                assert rt.trim_listen_queues() == []
            with open(os.path.join(workspace, "go"), "w"):
                pass
            res = held.result()
        assert res.stdout_text.split() == ["EINVAL"] * 3 + ["tidy"], res
