"""Lab networks: a switch namespace with one bridge per subnet, a namespace per host.

Each host gets one veth per attached subnet (``eth<j>`` inside the host, the other end on
the subnet's bridge in the switch namespace), its planned address, and only the routes
the plan gives it. A subnet joining exactly two hosts, in a lab without an egress gateway,
is one veth pair straight between them instead (``point_to_point``): the same link as seen
from either host, without a bridge and two more interfaces to make and free. Nothing
links the lab to the machine, so egress is denied by construction. The subnet name is
stored as the interface alias so ``list()`` can report addresses per subnet from the
kernel alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time

from forge.runtime.local.kernel_names import Names
from forge.runtime.local.netns import create_netns, in_netns, netns_path
from forge.runtime.local.private_proc import proc_root
from forge.runtime.local.rtnl import Rtnl
from forge.runtime.plan import LabPlan, PlannedHost

IPV6 = os.path.isdir("/proc/sys/net/ipv6")


def base_sysctls(forward: bool) -> dict[str, str]:
    """Per-namespace sysctls for a lab namespace, in write order, applied before any
    interface exists (``default`` values then reach every interface created later).

    ``ping_group_range`` lets unprivileged ICMP echo sockets work (ping without
    CAP_NET_RAW) and ``ip_unprivileged_port_start`` lets the (non-root) lab user serve
    on ports below 1024 inside the lab; IPv6 is off so no link-local path exists besides
    the planned IPv4 one. Forwarding is set explicitly because a new namespace inherits
    the machine's IPv4 settings. Writes of ``default`` values avoid the global RTNL lock, which the
    ``all`` values take (with a busy retry), so only routers pay for ``ip_forward``.
    """
    return {
        "net.ipv4.ping_group_range": "0 2147483647",
        "net.ipv4.ip_unprivileged_port_start": "0",
        **switch_sysctls(forward),
    }


def switch_sysctls(forward: bool = False) -> dict[str, str]:
    """The part of ``base_sysctls`` a namespace without lab processes needs (the switch:
    only bridges; no lab user pings or serves there): no forwarding unless ``forward``,
    no IPv6."""
    settings = {
        "net.ipv4.conf.default.forwarding": "1" if forward else "0",
        "net.ipv4.ip_forward": "1" if forward else "0",
    }
    if IPV6:
        settings["net.ipv6.conf.default.disable_ipv6"] = "1"
    return settings


# Read before written, and written only when different: the write takes the global RTNL
# lock (with a busy retry) even when the value is unchanged. Every other key is written
# straight away (a read costs as much as the write; measured 20-60 us each here).
READ_FIRST = frozenset({"net.ipv4.ip_forward"})
_SYSCTL_PART = re.compile(r"[A-Za-z0-9_-]{1,64}")  # no "/", "..", or empty part


def apply_sysctls(settings: dict[str, str]) -> None:
    """Write sysctls (``net.<family>.*`` keys) for the namespace of the calling thread
    (/proc/sys/net follows the opener's namespace), through a private procfs
    (``private_proc``: the machine's /proc costs more with every live namespace); a
    ``READ_FIRST`` value already in place is not rewritten."""
    split = {key: key.split(".") for key in settings}  # every key before any write
    for key, parts in split.items():
        if (parts[0] != "net" or len(parts) < 3
                or not all(_SYSCTL_PART.fullmatch(p) for p in parts)):
            raise ValueError(f"sysctl {key!r} is not a net.<family>.* key")
    dirs: dict[str, int] = {}
    with proc_root() as proc:

        def open_key(key: str, flags: int) -> int:
            _, family, *rest = split[key]
            if family not in dirs:
                dirs[family] = os.open("sys/net/" + family,
                                       os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                                       dir_fd=proc)
            return os.open("/".join(rest), flags | os.O_CLOEXEC, dir_fd=dirs[family])

        try:
            for key, value in settings.items():
                if key in READ_FIRST:
                    fd = open_key(key, os.O_RDONLY)
                    try:
                        current = os.read(fd, 256).decode("ascii")
                    finally:
                        os.close(fd)
                    if current.split() == value.split():
                        continue
                fd = open_key(key, os.O_WRONLY)
                try:
                    os.write(fd, value.encode("ascii"))
                finally:
                    os.close(fd)
        finally:
            for fd in dirs.values():
                os.close(fd)


def create_switch(names: Names, plan: LabPlan) -> None:
    """Create the lab's switch namespace (bridges come with ``wire_switch``); only a lab
    that is ``bridged`` has one."""
    create_netns(names.switch_ns(plan.lab_id), lambda: apply_sysctls(switch_sysctls()))


Veths = list[tuple[str, str, int]]  # (switch end, target end, bridge number)
Pair = tuple[str, str, str, str]  # (namespace, its end, other namespace, the other end)


def attach_veths(ns: str, groups: list[tuple[str, Veths]],
                 bridges: tuple[int, ...] = (), pairs: tuple[Pair, ...] = ()) -> None:
    """Over one netlink socket in namespace ``ns`` (the switch, where bridges and switch
    ends live): create the ``bridges`` (``br<i>`` for each number i, up), then for each
    (target namespace, veths) the veths whose switch ends are up ports of their bridges
    and whose other ends are in the target namespace, then each of ``pairs``: a veth pair
    straight between two namespaces (both ends down)."""

    def work() -> None:
        with Rtnl() as nl:
            index = {i: nl.add_bridge(f"br{i}") for i in bridges}
            for target_ns, veths in groups:
                fd = os.open(netns_path(target_ns), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    for outer, inner, bridge in veths:
                        if bridge not in index:
                            index[bridge] = socket.if_nametoindex(f"br{bridge}")
                        nl.add_veth(outer, index[bridge], inner, fd)
                finally:
                    os.close(fd)
            for one_ns, end, other_ns, other_end in pairs:
                fd = os.open(netns_path(one_ns), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    other = os.open(netns_path(other_ns), os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        nl.add_link_pair(end, fd, other_end, other)
                    finally:
                        os.close(other)
                finally:
                    os.close(fd)

    in_netns(ns, work)


def point_to_point(plan: LabPlan) -> dict[int, list[tuple[PlannedHost, int]]]:
    """Subnets wired as one veth pair between their two hosts, by subnet number: each
    (host, its interface number) on a subnet that joins exactly two different hosts, in a
    lab without an egress gateway (which joins every subnet's bridge)."""
    if plan.gateway:
        return {}
    members: dict[int, list[tuple[PlannedHost, int]]] = {}
    for host in plan.hosts:
        for j, nic in enumerate(host.nics):
            members.setdefault(nic.subnet_index, []).append((host, j))
    return {i: ends for i, ends in members.items()
            if len(ends) == 2 and ends[0][0].index != ends[1][0].index}


def bridged(plan: LabPlan) -> bool:
    """Whether the lab has a switch: a subnet not ``point_to_point`` needs its bridge.
    A lab without one has no switch namespace at all (its links are host to host)."""
    return len(point_to_point(plan)) < len(plan.subnets)


def wire_switch(names: Names, plan: LabPlan) -> None:
    """In the switch: a bridge per subnet (``br<i>``) and every host's veths (``h<host>n<j>``
    on the switch, ``eth<j>`` in the host, whose namespace must exist); a
    ``point_to_point`` subnet is one pair between its hosts' ``eth<j>`` instead, made from
    the switch or, in a lab without one, from its first host's namespace (never the
    machine's: nothing of a lab is ever made there)."""
    direct = point_to_point(plan)
    groups = [(names.host_ns(plan.lab_id, host.spec.name),
               [(f"h{host.index}n{j}", f"eth{j}", nic.subnet_index)
                for j, nic in enumerate(host.nics) if nic.subnet_index not in direct])
              for host in plan.hosts]
    pairs = tuple((names.host_ns(plan.lab_id, a.spec.name), f"eth{ja}",
                   names.host_ns(plan.lab_id, b.spec.name), f"eth{jb}")
                  for (a, ja), (b, jb) in direct.values())
    where = (names.switch_ns(plan.lab_id) if bridged(plan)
             else names.host_ns(plan.lab_id, plan.hosts[0].spec.name))
    attach_veths(where, [g for g in groups if g[1]],
                 bridges=tuple(i for i in range(len(plan.subnets)) if i not in direct),
                 pairs=pairs)


def configure_host(names: Names, plan: LabPlan, host: PlannedHost) -> None:
    """Bring up a wired host's interfaces with their addresses and routes (over netlink,
    from a thread in the host's namespace)."""

    def work() -> None:
        with Rtnl() as nl:
            nl.set_up("lo")
            for j, nic in enumerate(host.nics):
                nl.set_up(f"eth{j}", alias=nic.subnet)
                nl.add_address(f"eth{j}", nic.address, nic.prefixlen)
            for dest, via in host.routes:
                nl.add_route(dest, via)

    in_netns(names.host_ns(plan.lab_id, host.spec.name), work)


def wait_ports_up(switch: str, timeout: float = 10.0) -> None:
    """Wait until every bridge port in the switch namespace is operationally up.

    A veth's carrier (and so its bridge port) comes up asynchronously, in a kernel
    worker, after its peer is set up; until then frames are dropped. Returning before
    that would make a lab's first packets vanish on a busy machine.
    """

    def poll() -> None:
        end = time.monotonic() + timeout
        with Rtnl() as nl:
            while True:
                down = nl.ports_down()
                if not down:
                    return
                if time.monotonic() > end:
                    raise OSError(f"bridge ports did not come up: {', '.join(down)}")
                time.sleep(0.005)

    in_netns(switch, poll)


def read_addresses(ns: str) -> dict[str, str]:
    """{subnet alias: IPv4 address} of the lab interfaces in namespace ``ns`` (two dumps
    on a raw netlink socket, from the calling thread stepped into ``ns``: through pyroute2,
    in a thread of its own, they cost ``list()`` ~8 ms of CPU per live lab)."""

    def work() -> dict[str, str]:
        with Rtnl() as nl:
            return nl.eth_addresses()

    with contextlib.suppress(OSError):
        return in_netns(ns, work)
    return {}
