"""Helpers for runtime tests: lab shapes, in-lab TCP probes, terminal I/O, the leak check."""

from __future__ import annotations

import asyncio
import os
import re

from pyroute2 import IPRoute

from forge.runtime import ExecResult, HostSpec, LabSpec, Limits, SubnetSpec, TtySession
from forge.runtime.local import LocalRuntime
from forge.runtime.local.launch import mount_points
from forge.runtime.local.netns import list_netns

SERVER = """#!/usr/bin/env python3
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[2].encode())
    c.close()
"""

PROBE = """
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("ok:" + s.recv(100).decode())
except OSError as e:
    import errno
    print("err:" + (errno.errorcode.get(e.errno, "") if e.errno else "timeout"))
"""

# An ICMP echo from an unprivileged ICMP socket (no CAP_NET_RAW): prints "reply".
ICMP_ECHO = """
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.settimeout(2)
s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"forge", (sys.argv[1], 0))
data, _ = s.recvfrom(1024)
print("reply" if data[0] == 0 else "other")
"""


def sh(runtime: LocalRuntime, lab: str, host: str, script: str, **kw: object) -> ExecResult:
    """Run a shell script in a lab host (Runtime.exec with ``shell=``)."""
    return runtime.exec(lab, host, shell=script, **kw)  # type: ignore[arg-type]


def serve(port: int, text: str) -> tuple[str, dict[str, str | bytes]]:
    """(command, files) making a host answer ``text`` to every TCP connection on ``port``."""
    return f"python3 /srv/serve.py {port} {text}", {"/srv/serve.py": SERVER}


def probe(runtime: LocalRuntime, lab: str, host: str, addr: str, port: int,
          timeout: float = 3.0) -> str:
    """Connect from a lab host: ``ok:<what the server said>`` or ``err:<errno name>``."""
    res = runtime.exec(lab, host, ["python3", "-c", PROBE, addr, str(port), str(timeout)],
                       timeout=timeout + 10)
    assert res.exit_code == 0, res.stderr_text
    return res.stdout_text.strip()


def wait_ok(runtime: LocalRuntime, lab: str, host: str, addr: str, port: int) -> str:
    """Probe until a freshly started service answers (services start asynchronously)."""
    out = ""
    for _ in range(50):
        out = probe(runtime, lab, host, addr, port)
        if out.startswith("ok:"):
            return out
    return out


def tty_send(tty: TtySession, data: bytes) -> None:
    """Type `data` into a terminal through its async stream (from synchronous test code)."""
    asyncio.run(tty.write(data))


def tty_read_until(tty: TtySession, pattern: bytes, timeout: float = 10.0) -> bytes:
    """Read the terminal's stream until its output matches the regex `pattern`; fails if the
    terminal ends first (or nothing matches within `timeout` seconds)."""
    async def until() -> bytes:
        buf = b""
        while re.search(pattern, buf) is None:
            chunk = await tty.read()
            assert chunk, f"terminal ended before {pattern!r}: {buf!r}"
            buf += chunk
        return buf
    return asyncio.run(asyncio.wait_for(until(), timeout))


def tty_read(tty: TtySession) -> bytes:
    """One read of the terminal's stream (``b""`` once it ended)."""
    return asyncio.run(tty.read())


def simple_lab(lab_id: str, limits: Limits | None = None, **host: object) -> LabSpec:
    """A one-subnet, one-host lab named ``box``."""
    return LabSpec(
        lab_id, [SubnetSpec("lan", "10.200.0.0/24")],
        [HostSpec("box", networks=[("lan", None)], **host)],  # type: ignore[arg-type]
        limits=limits or Limits(),
    )


def leftovers(prefix: str, state_dir: str) -> list[str]:
    """Every object of this prefix still present: namespaces, root-namespace links,
    cgroups, processes referencing the state dir, mounts and folders in the state dir."""
    found = [f"netns {n}" for n in list_netns() if n.startswith(prefix + ".")]
    with IPRoute() as ipr:
        found += [f"link {link.get('ifname')}" for link in ipr.get_links()
                  if (link.get("ifname") or "").startswith(prefix)]
    for base in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu",
                 "/sys/fs/cgroup"):
        if os.path.isdir(base):
            found += [f"cgroup {base}/{d}" for d in os.listdir(base)
                      if d.startswith(prefix + ".")]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if state_dir.encode() in cmd:
            found.append(f"process {pid}")
    with open("/proc/self/mountinfo", "rb") as fh:
        found += [f"mount {p}" for p in mount_points(fh.read())
                  if p.startswith(os.path.join(state_dir, prefix + "."))]
    if os.path.isdir(state_dir):
        found += [f"dir {d}" for d in os.listdir(state_dir) if d.startswith(prefix + ".")]
    return found


def root_processes(runtime: LocalRuntime,
                   lab_id: str) -> dict[int, tuple[str, str, dict[str, str]]]:
    """pid -> (command name, state, environment) of each of the lab's processes running as
    root (read from the machine's /proc; one gone meanwhile is left out)."""
    found = {}
    for pid in runtime.cgroups.pids(runtime.names.lab(lab_id)):
        try:
            if os.stat(f"/proc/{pid}").st_uid != 0:
                continue
            with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
                head, tail = fh.read().rsplit(")", 1)
            with open(f"/proc/{pid}/environ", "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            continue
        found[pid] = (head.split("(", 1)[1], tail.split()[0],
                      dict(p.decode(errors="replace").split("=", 1)
                           for p in raw.split(b"\0") if b"=" in p))
    return found
