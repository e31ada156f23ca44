"""Attack: a learner with NET_ADMIN fills IPsec's policy database with kernel memory.

A host with NET_ADMIN (ccna, vlan-segment, nft-firewall) has the xfrm tables of its own
network namespace: `ip xfrm policy add` needs nothing more. Each policy is ~1 KB of kernel
memory charged to no lab, and the kernel has no limit on how many a namespace holds: from
a learner host, `ip -batch` of 10,000 `xfrm policy add` lines took 0.7 s and 10 MB of
unreclaimable slab, while the lab's memory cgroup (kmem) did not move; a gigabyte in about
70 s, held for the lab's life. No lab uses IPsec: the lab's syscall filter now refuses
IPsec's configuration sockets (`NETLINK_XFRM`, `AF_KEY`), as a kernel without them does,
and the netlink families a lab does use (routes, neighbours, nftables) keep working.

The same host's fragment queues: `echo 2000000000 > /proc/sys/net/ipv4/ipfrag_high_thresh`
(and `ipfrag_time` 3600) was accepted, and 40,000 UDP datagrams of 3,000 bytes to its own
loopback (MTU 1500) with an nft rule dropping every second fragment held 100 MB of
incomplete datagrams in the kernel for an hour, the lab's memory cgroup unmoved. The
sandbox's /proc now covers the fragment memory caps (``bwrap_args.MASKED_SYSCTLS``): the
write is refused and the queues stay within the kernel's default 4 MB.

Its socket option memory and multicast membership caps too: `net.core.optmem_max` (per
namespace since Linux 6.9) and `net.ipv4.igmp_max_memberships` were raised from the host, and
its sockets then held ~11 MB of slab in multicast memberships, charged to no lab. Both are
covered now: the writes are refused, and a socket still joins no more than the default 20.

Any lab host's secret memory (`memfd_secret`, no capability needed): each page is cut out
of the kernel's direct map, which stays split after it is freed. Touching 160 MB of it
from a learner host (8 MB at a time, within the memlock limit) took the machine's 4 KiB
kernel mappings from 38 MB to 2.2 GB and half of its 1 GiB ones, for every lab and
service until a reboot. The lab's syscall filter now refuses it (EPERM).

Any lab host's fanotify (no capability needed since Linux 5.13, in its file-handle mode):
a group marking /usr/bin/true, the machine's inode bound into every lab, reported the opens
made in other labs and by the grader. The lab's syscall filter now refuses
`fanotify_init` (EPERM).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec

from ..support.one_lab import one_lab

pytestmark = pytest.mark.root

# Each family asked straight, also with the upper 32 bits of the int arguments set (the
# kernel reads ints; a filter comparing whole registers would let those through).
PROBE = ("import ctypes, errno, os\n"
         "libc = ctypes.CDLL(None, use_errno=True)\n"
         "libc.syscall.restype = ctypes.c_long\n"
         "nr = {'x86_64': 41, 'aarch64': 198}[os.uname().machine]\n"
         "for family, kind, proto in ((16, 3, 6), (16 | 1 << 32, 3, 6 | 1 << 32),\n"
         "                            (15, 3, 2), (15 | 1 << 32, 3, 2),\n"
         "                            (16, 3, 0), (16, 3, 12)):\n"
         "    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(family),\n"
         "                      ctypes.c_long(kind), ctypes.c_long(proto))\n"
         "    print('opened' if fd >= 0 else errno.errorcode[ctypes.get_errno()])\n"
         "secret = libc.syscall(ctypes.c_long(447), ctypes.c_long(0))  # memfd_secret\n"
         "print('secret' if secret >= 0 else errno.errorcode[ctypes.get_errno()])\n"
         "fan = {'x86_64': 300, 'aarch64': 262}[os.uname().machine]  # fanotify_init\n"
         "# FAN_REPORT_FID: the group an unprivileged process may make\n"
         "watch = libc.syscall(ctypes.c_long(fan), ctypes.c_long(0x200), ctypes.c_long(0))\n"
         "print('fanotify' if watch >= 0 else errno.errorcode[ctypes.get_errno()])\n")


FRAG_CAP = "/proc/sys/net/ipv4/ipfrag_high_thresh"
# 3,000 datagrams of 3,000 bytes (about 7 MB in the queues, were there no cap) to the host's
# own loopback cut to a 1500-byte MTU, every fragment past the first dropped on arrival:
# each datagram waits in a fragment queue. Prints the queues' bytes (/proc/net/sockstat).
FRAG = r"""import socket, subprocess
subprocess.run(["ip", "link", "set", "lo", "mtu", "1500"], check=True)
subprocess.run(["nft", "-f", "-"], check=True, text=True, input=(
    "table ip cut {\n chain early {\n  type filter hook prerouting priority -450\n"
    "  ip frag-off & 0x1fff != 0 drop\n }\n}\n"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER: IP_PMTUDISC_DONT, fragment
for _ in range(3000):
    s.sendto(b"x" * 3000, ("127.0.0.1", 9))
with open("/proc/net/sockstat") as stat:
    print([line for line in stat if line.startswith("FRAG")][0].split()[-1])
"""

MEMBERSHIP_CAPS = ("/proc/sys/net/core/optmem_max", "/proc/sys/net/ipv4/igmp_max_memberships")
# One socket joins multicast groups until refused: prints how many, and the refusal.
JOIN = r"""import errno, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in range(1000):
    try:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     socket.inet_aton(f"239.1.{n >> 8}.{n & 255}") + socket.inet_aton("10.205.0.10"))
    except OSError as exc:
        print(n, errno.errorcode[exc.errno])
        break
"""


def test_a_net_admin_host_cannot_fill_the_ipsec_tables(tmp_path: Path) -> None:
    lab = "xf-" + secrets.token_hex(4)
    spec = LabSpec(lab, [SubnetSpec("lan", "10.205.0.0/24")], [
        HostSpec("flood", networks=[("lan", "10.205.0.10")], capabilities=["NET_ADMIN"],
                 files={"/srv/probe.py": PROBE, "/srv/frag.py": FRAG,
                        "/srv/join.py": JOIN}),
        HostSpec("peer", networks=[("lan", "10.205.0.11")]),
    ])
    with one_lab(tmp_path / "state", spec) as rt:
        added = rt.exec(lab, "flood", ["ip", "xfrm", "policy", "add", "src",
                                       "10.205.0.10/32", "dst", "10.205.0.11/32", "dir", "out"])
        assert added.exit_code != 0, "an IPsec policy was added"
        probed = rt.exec(lab, "flood", shell="python3 -I /srv/probe.py", timeout=20)
        assert probed.stdout_text.split() == [
            "EPROTONOSUPPORT", "EPROTONOSUPPORT", "EAFNOSUPPORT", "EAFNOSUPPORT",
            "opened", "opened", "EPERM", "EPERM"], probed.stdout_text + probed.stderr_text
        # What a NET_ADMIN lab does with its network still works.
        honest = rt.exec(lab, "flood", ["bash", "-c", (
            "ip route add 10.206.0.0/24 via 10.205.0.11 && "
            "ip neigh add 10.205.0.99 lladdr 02:00:00:00:00:09 nud permanent dev eth0 && "
            "nft add table inet t && ip route show 10.206.0.0/24")])
        assert honest.exit_code == 0, honest.stderr_text
        assert "via 10.205.0.11" in honest.stdout_text

        for cap in (FRAG_CAP, *MEMBERSHIP_CAPS):
            raised = rt.exec(lab, "flood", shell=f"echo 2000000000 > {cap}; cat {cap}")
            assert raised.exit_code != 0 and "2000000000" not in raised.stdout_text, raised
        joined = rt.exec(lab, "flood", shell="python3 -I /srv/join.py", timeout=20)
        assert joined.stdout_text.split() == ["20", "ENOBUFS"], joined
        held = rt.exec(lab, "flood", shell="python3 -I /srv/frag.py", timeout=60)
        assert held.exit_code == 0, held.stderr_text
        used = int(held.stdout_text.split()[-1])  # sockstat's FRAG memory, in bytes
        assert 0 < used <= 5 << 20, held.stdout_text + held.stderr_text
