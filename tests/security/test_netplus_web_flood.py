"""Attack: a learner floods the netplus lab's web server with idle connections.

The target's server (the template's own command) takes one descriptor per connection, and
a thread or a process for it. Past the lab's descriptors (or its pids limit, for the threads) its accept loop
used to raise and the server exited for good: the lab's one web server was gone, and with
it the answer the learner was sent to find. Now it drops what it cannot take and serves
again once the flood ends. The command runs here as the lab runs it, with its file folder
pointed at a temporary one and a low descriptor limit standing in for the lab's.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from forge.content import TEMPLATES, content_path

from ..live_server import distinct_ports

NOFILE = 32  # the server's descriptors: well below the flood


def _server_argv(www: Path) -> list[str]:
    doc = yaml.safe_load((content_path(TEMPLATES) / "netplus.yaml").read_text())
    target = next(c for c in doc["spec"]["assets"]["containers"] if c["name"] == "target")
    argv = list(target["command"])
    assert "/srv/www" in argv[-1]
    argv[-1] = argv[-1].replace("/srv/www", str(www))
    return argv


def _sockets_held(pid: int) -> int:
    """Sockets open in `pid` and its children: a server holds each connection in a thread
    of its own or in a process it forked for it."""
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as kids:
                pids += [int(k) for k in kids.read().split()]
    held = set()
    for each in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{each}/fd"):
                with contextlib.suppress(OSError):
                    held.add(os.readlink(f"/proc/{each}/fd/{fd}"))
    return sum(1 for target in held if target.startswith("socket:")) - 1  # less the listener


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def test_a_flood_of_idle_connections_does_not_end_the_web_server(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_bytes(b"<p>intranet</p>\n")
    (port,) = distinct_ports(1)
    server = subprocess.Popen(_server_argv(www), env={"FG_PORT": str(port)},
                              preexec_fn=_low_nofile, stderr=subprocess.PIPE)
    try:
        first = None
        while first is None:  # until it listens (or has died: then the assert below says so)
            assert server.poll() is None, server.stderr.read() if server.stderr else b""
            with contextlib.suppress(OSError):
                first = socket.create_connection(("127.0.0.1", port), timeout=5)
        flood = [first]
        for _ in range(NOFILE * 2):  # more idle connections than it has descriptors
            with contextlib.suppress(OSError):  # its backlog full: the SYN waits
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        # Until it holds as many of them as its descriptors allow (or died for want of
        # one), in its own process or in those it started for them.
        while server.poll() is None and _sockets_held(server.pid) < NOFILE - 8:
            time.sleep(0.05)
        for conn in flood:
            conn.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as answer:
            assert answer.status == 200
            assert answer.read() == b"<p>intranet</p>\n"
        assert server.poll() is None
    finally:
        server.kill()
        server.wait()
        if server.stderr:
            server.stderr.close()
