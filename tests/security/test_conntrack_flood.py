"""Attack: a learner with NET_ADMIN piles up connection-tracking entries (DQ).

From nft-firewall's learner router (NET_ADMIN, TEAM plan; ccna and vlan-segment give it on
PRO), `nft add chain … { … ct state new accept; }` turns connection tracking on in the
host's namespace, `echo > /proc/sys/net/netfilter/nf_conntrack_udp_timeout` keeps entries
for days, and one UDP packet per destination (bash's `/dev/udp`) makes one entry each:
20,000 grew the machine's `nf_conntrack` slab by 20,000 objects (256 bytes each) while the
lab's memory cgroup (`memory.kmem.usage_in_bytes`) did not move. The kernel counts entries
per namespace against the machine's `nf_conntrack_max` (262,144), so each such host could
hold ~64 MiB outside its lab's limit for the lab's life. Now the orchestrator's reaper pass
flushes the table of a NET_ADMIN host holding more than `conntrack.HOST_LIMIT` entries
(looked at only while the machine holds more than `conntrack.GUARD_ENTRIES`).

Traffic-control objects are the same: `tc class add` of 9,000 `htb` classes on eth0 took
about 26 MB of the machine's unreclaimable kernel memory, the lab's cgroup unmoved, kept
for the lab's life (9,000 u32 filters: about 2 MB). The reaper pass now deletes the root
and ingress qdiscs (and all below them) of a NET_ADMIN host holding more than
`traffic_control.HOST_LIMIT` qdiscs, classes and filters.

Nexthop objects are the same: `ip -batch` of 100,000 `nexthop add id N via …` lines took
5.7 s and 30 MB of `kmalloc-192` (never the cgroup-charged `kmalloc-cg-192`), the lab's
cgroup unmoved. The reaper pass now deletes every nexthop of a NET_ADMIN host holding more
than `nexthops.HOST_LIMIT`.

IPv6 address labels are the same: `ip -batch` of 40,000 `addrlabel add prefix … label N`
lines took 0.4 s and 40,000 objects of `kmalloc-64`, the lab's cgroup unmoved, with no limit
but the lab's life. The reaper pass now deletes all but the kernel's own labels of a
NET_ADMIN host holding more than `addrlabels.HOST_LIMIT`.

Half-open TCP connections are the same, 320 bytes each outside every cgroup: a host that
drops its handshakes' last ACK (and may raise `somaxconn` and `tcp_synack_retries`) keeps as
many as it sends SYNs. The reaper pass now counts them with the unaccepted ones
(`listen_queues`, tests/security/test_lab_socket_memory.py) and aborts the listeners
holding them.

Routes and addresses are the same: 100,000 routes with distinct metrics took about 25 MB of
kernel memory, 20,000 `/32` addresses about 6 MB, the lab's cgroup unmoved. The reaper pass
now deletes the addresses and routes of a NET_ADMIN host holding more than
`route_trim.HOST_LIMIT` of either, but the runtime's own (the plan's addresses, the kernel's
routes for them, the template's routes), in a lab not sealed: at seal the runtime adds
grading addresses and identities' routing tables no trim may take. IPv6's too: no lab is
given any, but `lo` takes IPv6 routes and addresses (30,000 routes took 20 MB, 12 MB of it
charged to no lab; 10,000 addresses 22 MB, 14 MB) and were never trimmed; now all but `::1`
and its route go past the limit.
"""

from __future__ import annotations

import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import addrlabels, conntrack, listen_queues, nexthops, route_trim

from ..support.one_lab import one_lab
from ..support.polling import until

pytestmark = pytest.mark.root

TRACK = ("nft add table inet t && nft add chain inet t c "
         "'{ type filter hook output priority 0; ct state new accept; }' && "
         "echo 864000 > /proc/sys/net/netfilter/nf_conntrack_udp_timeout")


SHAPE = "tc qdisc add dev eth0 root handle 1: htb && tc qdisc add dev eth0 ingress && " \
    "exec tc -batch -"


def _classes(count: int, filters: int = 0) -> bytes:
    """`tc -batch` lines adding ``count`` htb classes below SHAPE's qdisc and ``filters``
    u32 filters on it."""
    return ("".join(f"class add dev eth0 parent 1: classid 1:{i:x} htb rate 1mbit\n"
                    for i in range(1, count + 1))
            + "".join(f"filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst "
                      f"10.9.{i // 250}.{i % 250 + 1}/32 flowid 1:1\n" for i in range(filters))
            ).encode()


# A listener on the host's loopback whose handshakes never complete (their last ACK is
# dropped), sent 150 connections; once told to go on, it tries to accept.
HALF_OPEN = r"""import errno, os, socket, subprocess, time
subprocess.run(["nft", "-f", "-"], check=True, text=True, input=(
    "table inet half {\n chain in {\n  type filter hook input priority 0\n"
    "  tcp dport 7000 tcp flags & (syn | ack) == ack drop\n }\n}\n"))
server = socket.socket()
server.bind(("127.0.0.1", 7000))
server.listen(200)
clients = [socket.socket() for _ in range(150)]
for client in clients:
    client.setblocking(False)
    try:
        client.connect(("127.0.0.1", 7000))
    except BlockingIOError:
        pass
open("/workspace/ready", "w").close()
while not os.path.exists("/workspace/go"):
    time.sleep(0.05)
server.setblocking(False)
try:
    server.accept()
    print("accepted")
except OSError as exc:
    print(errno.errorcode[exc.errno])
"""


def _flood(count: int) -> str:
    """A shell loop sending one UDP packet to each of ``count`` loopback destinations."""
    return (f"for i in $(seq 0 {count - 1}); do "
            "echo x 2>/dev/null > /dev/udp/127.1.$((i/250)).$((i%250+1))/9; done; "
            "cat /proc/sys/net/netfilter/nf_conntrack_count")


def test_a_host_piling_up_conntrack_entries_has_them_flushed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = "ct-" + secrets.token_hex(4)
    spec = LabSpec(lab, [SubnetSpec("lan", "10.203.0.0/24")], [
        HostSpec("flood", networks=[("lan", "10.203.0.10")], capabilities=["NET_ADMIN"],
                 routes=[("10.99.0.0/16", "10.203.0.11")]),
        HostSpec("tidy", networks=[("lan", "10.203.0.11")], capabilities=["NET_ADMIN"]),
    ])
    monkeypatch.setattr(conntrack, "HOST_LIMIT", 100)
    with one_lab(tmp_path / "state", spec) as rt:
        for host, flows in (("flood", 300), ("tidy", 5)):
            made = rt.exec(lab, host, ["bash", "-c", f"{TRACK} && {_flood(flows)}"],
                           timeout=60)
            assert made.exit_code == 0, made.stderr_text
            assert int(made.stdout_text) == flows  # entries the lab's cgroup never sees

        # Below the machine-wide guard nothing is looked at (the cheap common case).
        monkeypatch.setattr(conntrack, "GUARD_ENTRIES", 10**9)
        assert rt.trim_conntrack() == []
        monkeypatch.setattr(conntrack, "GUARD_ENTRIES", 0)
        assert rt.trim_conntrack() == [(lab, "flood", 300)]
        count = ["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]
        assert int(rt.exec(lab, "flood", count).stdout_text) == 0
        # A host keeping a few flows, as a lab's own traffic does, keeps them.
        assert int(rt.exec(lab, "tidy", count).stdout_text) == 5
        assert rt.trim_conntrack() == []

        # Queueing classes: past the limit, the host's links lose their qdiscs.
        # (classes and filters, neither alone past it: filters are kernel memory too)
        for host, classes, filters in (("flood", 600, 600), ("tidy", 3, 3)):
            shaped = rt.exec(lab, host, ["bash", "-c", SHAPE], stdin=_classes(classes, filters))
            assert shaped.exit_code == 0, (host, shaped.stderr_text)
        trimmed = rt.trim_traffic_control()
        assert [(lab_id, host) for lab_id, host, _ in trimmed] == [(lab, "flood")], trimmed
        assert trimmed[0][2] > 1_200, trimmed
        for kind in ("class", "filter"):
            assert rt.exec(lab, "flood", ["tc", kind, "show", "dev", "eth0"]).stdout_text == ""
        # A host shaping its traffic with a few classes, as a lab task may ask, keeps them.
        kept = rt.exec(lab, "tidy", ["tc", "class", "show", "dev", "eth0"]).stdout_text
        assert len(kept.splitlines()) == 3, kept
        assert rt.trim_traffic_control() == []

        # Nexthop objects: past the limit, the host's are all deleted (and routes via them).
        monkeypatch.setattr(nexthops, "HOST_LIMIT", 100)
        for host, count, peer in (("flood", 300, "10.203.0.11"), ("tidy", 3, "10.203.0.10")):
            added = rt.exec(lab, host, ["ip", "-batch", "-"], stdin="".join(
                f"nexthop add id {i} via {peer} dev eth0\n"
                for i in range(1, count + 1)).encode() + b"route add 10.9.0.0/16 nhid 1\n")
            assert added.exit_code == 0, (host, added.stderr_text)
        assert rt.trim_nexthops() == [(lab, "flood", 300)]
        left = rt.exec(lab, "flood", ["ip", "nexthop", "show"])
        assert left.exit_code == 0 and left.stdout_text == "", left
        assert "10.9.0.0" not in rt.exec(lab, "flood", ["ip", "route"]).stdout_text
        # A host routing through a few, as a routing task may ask, keeps them.
        kept = rt.exec(lab, "tidy", ["ip", "nexthop", "show"]).stdout_text
        assert len(kept.splitlines()) == 3, kept
        assert rt.trim_nexthops() == []

        # IPv6 address labels: past the limit, all but the kernel's own go.
        monkeypatch.setattr(addrlabels, "HOST_LIMIT", 100)
        show = ["ip", "-6", "addrlabel", "show"]
        kernel = rt.exec(lab, "flood", show).stdout_text
        for host, count in (("flood", 300), ("tidy", 3)):
            added = rt.exec(lab, host, ["ip", "-batch", "-"], stdin="".join(
                f"addrlabel add prefix 2001:db8:{i:x}::/48 label {i + 100}\n"
                for i in range(count)).encode())
            assert added.exit_code == 0, (host, added.stderr_text)
        assert rt.trim_address_labels() == [(lab, "flood", 300)]
        assert rt.exec(lab, "flood", show).stdout_text == kernel
        assert len(rt.exec(lab, "tidy", show).stdout_text.splitlines()) == 3 + len(kernel.splitlines())
        assert rt.trim_address_labels() == []

        # Half-open connections: past the limit, the listeners holding them are aborted.
        monkeypatch.setattr(listen_queues, "HOST_LIMIT", 100)
        held_now = listen_queues.machine_request_socks()
        assert held_now is not None  # this kernel's slabs say it
        workspace = os.path.join(rt.names.data_dir(lab, "flood"), "workspace")
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(rt.exec, lab, "flood", ["python3", "-c", HALF_OPEN], timeout=60)
            until(lambda: held.done() or os.path.exists(os.path.join(workspace, "ready")),
                  "the flood's sockets held")
            assert not held.done(), held.result()
            # Counted only while the machine holds many (a listing walks all of its).
            monkeypatch.setattr(listen_queues, "HALF_OPEN_GUARD", held_now + 1_000_000)
            assert rt.trim_listen_queues() == []
            monkeypatch.setattr(listen_queues, "HALF_OPEN_GUARD", 0)
            assert rt.trim_listen_queues() == [(lab, "flood", 150)]
            with open(os.path.join(workspace, "go"), "w"):
                pass
            res = held.result()
        assert res.stdout_text.split() == ["EINVAL"], res
        assert rt.trim_listen_queues() == []

        # Routes and addresses: past the limit, all but the runtime's own go.
        monkeypatch.setattr(route_trim, "HOST_LIMIT", 100)
        table = ["ip", "-4", "-o", "route", "show", "table", "all"]
        own = rt.exec(lab, "flood", table).stdout_text
        addrs = rt.exec(lab, "flood", ["ip", "-4", "-o", "address", "show"]).stdout_text
        assert "10.99.0.0/16 via 10.203.0.11" in own and "10.203.0.10/24" in addrs, own
        flood = (
            "".join(f"route add 10.8.{i // 250}.{i % 250}/32 via 10.203.0.11 metric {i}\n"
                    for i in range(300))
            + "".join(f"address add 10.7.{i // 250}.{i % 250 + 1}/32 dev eth0\n"
                      for i in range(150))
            + "route add 10.6.0.0/16 via 10.203.0.11 table 100\n"
            # a copy of the template's route (another protocol): one of the two is kept
            + "route append 10.99.0.0/16 via 10.203.0.11 proto static\n").encode()
        added = rt.exec(lab, "flood", ["ip", "-batch", "-"], stdin=flood)
        assert added.exit_code == 0, added.stderr_text
        # Held off while seal adds the grading sources (route_trim.trim_fence).
        with route_trim.trim_fence(rt.names.lab_dir(lab)):
            assert rt.trim_routes() == []
        assert rt.trim_routes() == [(lab, "flood", 150 + 300 + 1 + 1)]
        assert rt.exec(lab, "flood", table).stdout_text == own
        assert rt.exec(lab, "flood", ["ip", "-4", "-o", "address", "show"]).stdout_text == addrs
        assert rt.trim_routes() == []  # and "tidy", with a handful, was never touched
        # IPv6 on lo (on for it alone): past the limit, all but ::1 and its route go.
        table6 = ["ip", "-6", "-o", "route", "show", "table", "all"]
        own6 = rt.exec(lab, "flood", table6).stdout_text
        addrs6 = rt.exec(lab, "flood", ["ip", "-6", "-o", "address", "show"]).stdout_text
        assert "::1" in own6 and "::1/128" in addrs6, (own6, addrs6)
        added = rt.exec(lab, "flood", ["ip", "-6", "-batch", "-"], stdin=(
            "".join(f"route add 2001:db9:{i:x}::/48 dev lo\n" for i in range(300))
            + "".join(f"address add 2001:db8::{i:x}/128 dev lo\n" for i in range(1, 151))
        ).encode())
        assert added.exit_code == 0, added.stderr_text
        # (the addresses, the kernel's local and prefix routes of each, the routes)
        assert rt.trim_routes() == [(lab, "flood", 150 + 2 * 150 + 300)]
        assert rt.exec(lab, "flood", table6).stdout_text == own6
        assert rt.exec(lab, "flood", ["ip", "-6", "-o", "address", "show"]).stdout_text == addrs6
        # A sealed lab is left alone: its grading addresses and identities are the runtime's.
        assert rt.exec(lab, "flood", ["ip", "-batch", "-"], stdin=flood).exit_code == 0
        rt.seal(lab)
        assert rt.trim_routes() == []
