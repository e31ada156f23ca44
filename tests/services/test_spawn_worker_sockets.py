"""spawn_service's worker processes share a class's connections evenly (FORGE_SPAWN_WORKERS).

With one shared listening socket, the worker whose event loop woke first accepted every
pending connection, and keep-alive clients stayed with it: 32 connections opened at once
all went to one worker in two rounds of five, and under load one worker ran at 88 % of a
core while the other idled at 35 %. Each worker now accepts from its own SO_REUSEPORT
socket, which the kernel fills evenly. Real `forge serve spawn` with two workers, real
nats-server, SQLite.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from forge.bus import NatsServer
from forge.services.common.listener import bind_listener
from forge.services.common.workers import START_GRACE_S
from forge.store.migrate import upgrade

from ..security.spawn_workers import WORKERS, children, spawn_workers
from .conftest import prod_environ

ROUNDS = 5
AT_ONCE = 32
# Spread by the kernel's hash, each worker's share of 32 is binomial: either worker getting
# fewer than 4 happens about once in 780,000 rounds; the shared socket gave one worker
# none in two rounds of five.
FEWEST = 4


async def _workers_answering(port: int, count: int) -> list[int]:
    """Open `count` connections at once, then ask /healthz on each: the worker pids."""
    conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                   for _ in range(count)))
    for _reader, writer in conns:
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: forge\r\n\r\n")
    pids = []
    for reader, writer in conns:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        pids.append(json.loads(await reader.readexactly(length))["worker_pid"])
        writer.close()
    return pids


def _sockets_held(pid: int) -> set[str]:
    """The sockets a process holds; a descriptor it closes while they are listed is skipped."""
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except FileNotFoundError:  # closed between the listing and the read
            continue
        if link.startswith("socket:"):
            links.add(link)
    return links


@pytest.mark.usefixtures("sqlite_only_store")
def test_connections_opened_at_once_are_spread_over_the_workers(
        tmp_path: Path, nats: NatsServer) -> None:
    with spawn_workers(tmp_path, nats, f"sqlite:///{tmp_path}/forge.db") as (url, pid, _db):
        port = int(url.rsplit(":", 1)[1])
        workers = set(children(pid))
        for _ in range(ROUNDS):
            served = Counter(asyncio.run(_workers_answering(port, AT_ONCE)))
            assert set(served) == workers, served
            assert min(served.values()) >= FEWEST, served

        # A second spawn_service on the same port is refused, workers or not (it binds
        # without SO_REUSEPORT first; a process of the service's own user could still join
        # the workers' sockets: see the runbook).
        for workers_setting in ("2", "1"):
            env = {**os.environ, **prod_environ(tmp_path / "second", **nats.client_env(),
                                                FORGE_DB_URL=f"sqlite:///{tmp_path}/2.db",
                                                FORGE_SPAWN_WORKERS=workers_setting)}
            second = subprocess.run([sys.executable, "-m", "forge", "serve", "spawn",
                                     "--port", str(port)], env=env, capture_output=True,
                                    text=True, timeout=60, check=False)
            assert second.returncode != 0
            assert f"cannot listen on 127.0.0.1:{port}: already in use" in second.stderr, \
                second.stderr[-2000:]
        assert set(children(pid)) == workers


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_restarted_worker_serves_the_connections_that_waited_for_it(
        tmp_path: Path, nats: NatsServer) -> None:
    with spawn_workers(tmp_path, nats, f"sqlite:///{tmp_path}/forge.db") as (url, pid, _db):
        port = int(url.rsplit(":", 1)[1])
        time.sleep(START_GRACE_S)  # past its start: a worker that dies now is started again
        victim = children(pid)[0]
        os.kill(victim, signal.SIGKILL)
        # Connections hashed to its socket wait in the kernel's queue (the parent holds the
        # socket) until the new worker takes them: every request is answered.
        served = Counter(asyncio.run(_workers_answering(port, AT_ONCE)))
        assert sum(served.values()) == AT_ONCE
        now = set(children(pid))
        assert len(now) == WORKERS and victim not in now
        # Both the survivor and the worker started in the victim's place served some (the
        # replacement, those that waited on the victim's socket).
        assert set(served) == now, served


@pytest.mark.usefixtures("sqlite_only_store")
def test_workers_share_a_socket_handed_down_by_a_supervisor(
        tmp_path: Path, nats: NatsServer) -> None:
    # `forge up` holds the port across restarts and hands it down (FORGE_LISTEN_FD): the
    # workers accept from that one socket, so connections wait in it through a restart.
    upgrade(f"sqlite:///{tmp_path}/forge.db")
    sock = bind_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    env = {**os.environ, **prod_environ(tmp_path / "storage", **nats.client_env(),
                                        FORGE_DB_URL=f"sqlite:///{tmp_path}/forge.db",
                                        FORGE_SPAWN_WORKERS=str(WORKERS),
                                        FORGE_LISTEN_FD=str(sock.fileno()))}
    proc = subprocess.Popen([sys.executable, "-m", "forge", "serve", "spawn", "--port",
                             str(port)], env=env, pass_fds=(sock.fileno(),),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        served: Counter[int] = Counter()
        for _ in range(600):  # bounded: 60 s to start
            try:
                served = Counter(asyncio.run(_workers_answering(port, 4)))
                break
            except (OSError, AssertionError, asyncio.IncompleteReadError):
                time.sleep(0.1)
        assert sum(served.values()) == 4
        mine = f"socket:[{os.fstat(sock.fileno()).st_ino}]"
        workers = children(proc.pid)
        assert len(workers) == WORKERS
        for worker in workers:
            assert mine in _sockets_held(worker), worker
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sock.close()
