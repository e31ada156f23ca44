"""Attack: leave something behind in a pool lab for the next learner of the same uid.

A claimed pool lab is destroyed like any lab and its uid pair goes back to the range; the
pool's next build may take that very pair, and another learner then runs as the uid that
learner A ran as. If anything A made outlived A's lab (a double-forked daemon, SysV IPC,
an abstract unix socket, a route or nft table A added as the lab's NET_ADMIN user, a
file in any writable tree), the next learner of that uid would find it. And while a pool
lab waits for its claim it has the same addresses as every claimed lab of its template:
a claimed lab must not reach it, nor hold the pipe its init reads its start line from.
Nothing survives a lab; no lab reaches another."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from forge.runtime.base import ExecResult, HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime

from ..support.one_lab import own_runtime, pool_lab

RESIDUE = r"""
for d in /home /tmp /var/tmp /srv /workspace; do echo res-a > $d/res-a; done
setsid sh -c 'sleep 7771 & sleep 7772 &'; nohup sleep 7773 >/dev/null 2>&1 &
ipcmk -M 4096 >/dev/null; ipcmk -Q >/dev/null
setsid python3 -c 'import socket,time;s=socket.socket(socket.AF_UNIX);s.bind(b"\0res-a");s.listen();time.sleep(900)' &
ip route add 10.99.0.0/16 dev eth0; nft add table inet resa
sleep 0.3; ipcs; cat /proc/net/unix; ip route; nft list tables
"""
LOOK = ("ls -A /home /tmp /var/tmp /srv /workspace; ps ax; ipcs; cat /proc/net/unix; "
        "ip route; nft list tables")
LISTEN = ("python3 -c 'import socket;s=socket.socket();s.bind((\"0.0.0.0\",7000));s.listen();"
          "s.settimeout(20);c,_=s.accept();c.send(b\"pool-lab\")'")
CONNECT = ("python3 -c 'import socket,sys;s=socket.create_connection((sys.argv[1],7000),3);"
           "print(s.recv(20).decode())' {} 2>&1")


def lab(lab_id: str) -> LabSpec:
    return LabSpec(lab_id, [SubnetSpec("lan", "10.212.0.0/24")],
                   [HostSpec("box", networks=[("lan", None)], capabilities=["NET_ADMIN"],
                             command="exec sleep 1000"),
                    HostSpec("peer", networks=[("lan", None)])])


@pytest.fixture
def pooled(tmp_path: Path) -> Iterator[LocalRuntime]:
    """Two uid pairs of a range of this test's own: every other lab reuses a pair."""
    with own_runtime(tmp_path / "state", uid_pairs=2) as rt:
        rt.warm({"one": (lab("x"), 1)}, quiet_s=0.05, poll_s=0.1)
        yield rt


def open_files(pids: Iterable[int]) -> set[str]:
    """What the machine processes ``pids`` hold open (``pipe:[inode]`` for a pipe)."""
    held: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return held


def _running_as(uid: int) -> list[int]:
    """The machine's processes whose real, effective or saved uid is ``uid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/status", encoding="ascii",
                                                errors="replace") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    if str(uid) in line.split()[1:4]:
                        found.append(int(entry))
                    break
    return found


def test_nothing_of_a_learner_outlives_the_lab_for_the_next_learner_of_its_uid(
        pooled: LocalRuntime) -> None:
    rt = pooled
    a = "scn-00000000000000e1"
    pool_lab(rt)
    rt.create(lab(a))
    seen_a = rt.exec(a, "box", shell=RESIDUE)
    for made in (b"res-a", b"10.99.0.0/16", b"resa", b"0x"):  # A's objects exist...
        assert made in seen_a.stdout, seen_a.stderr

    # A ready pool lab, alive beside A: its own uids (no signal, ptrace or file of A's
    # reaches it by uid) and the same addresses: A reaches its own peer, never the pool's.
    waiting = pool_lab(rt)
    mine, theirs = rt.identity(a), rt.identity(waiting)
    assert {mine.learner, mine.grader}.isdisjoint({theirs.learner, theirs.grader})
    # Nor does any process of A's hold the pipe a waiting init reads its start line from
    # (whoever writes it runs a command as root in the next learner's lab).
    starts = {f"pipe:[{os.fstat(fd).st_ino}]" for fd in rt._held_go[waiting].values()}
    held = open_files(rt.cgroups.pids(rt.names.lab(a)))
    assert any(f.startswith("pipe:") for f in held)  # A's sandboxes hold their own pipes
    assert starts and starts.isdisjoint(held)
    peer = rt.exec(a, "peer", shell="ip -4 -o addr show eth0").stdout_text.split()[3]
    peer = peer.split("/")[0]
    listened: list[ExecResult] = []
    listener = threading.Thread(target=lambda: listened.append(
        rt.exec(waiting, "peer", shell=LISTEN, timeout=25)))
    listener.start()
    try:
        end = time.monotonic() + 20
        while ":1B58" not in rt.exec(waiting, "peer", ["cat", "/proc/net/tcp"]).stdout_text:
            assert time.monotonic() < end, "the pool lab's listener never started"
            time.sleep(0.05)
        assert "pool-lab" not in rt.exec(a, "box", shell=CONNECT.format(peer)).stdout_text
    finally:  # the pool lab's own host reaches it (and ends the listener)
        reached = rt.exec(waiting, "box", shell=CONNECT.format(peer)).stdout_text
        listener.join(30)
    assert "pool-lab" in reached

    uid = rt.identity(a).learner
    assert _running_as(uid)  # A's service and daemons run as A's uid until the lab ends
    rt.destroy(a)
    # Nothing runs as A's uid anywhere on the machine (a sandbox of C's is born in its own
    # pid, IPC and network namespaces, so a look from inside C alone would miss an escapee).
    assert _running_as(uid) == [], "a process of A's outlived its lab"
    # The next learner of A's uid: the pool lab waiting now holds the other pair, so the
    # one built after it is claimed with A's.
    b, c = "scn-00000000000000e2", "scn-00000000000000e3"
    rt.create(lab(b))
    pool_lab(rt)
    rt.create(lab(c))
    assert rt.identity(c).learner == uid
    for host in ("box", "peer"):
        seen = rt.exec(c, host, shell=LOOK).stdout
        for residue in (b"res-a", b"sleep 777", b"10.99.", b"resa", b"0x"):
            assert residue not in seen, (host, residue, seen)
