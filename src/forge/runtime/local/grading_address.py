"""Grading addresses: one more source address on a probing host, added at seal.

A check that probes a firewall from a host's own address proves the rule for that address
only: the task text names the probing hosts, so a ruleset denying exactly those addresses
(``ip saddr != 10.65.0.20 … accept``) passed while every other host got through. A host
whose template says ``grading_address`` gets, when the lab is sealed (every learner
process already killed, so none saw it), one more address on each lab interface, drawn
at random from its subnet's addresses that no host of the lab has; its checks find it as
the interface's secondary (``ip -4 -o addr show secondary``). A regrade keeps the one
added first.

The interface also gets a fresh random MAC address then (its neighbours told at once by a
gratuitous ARP, ``arp_notify``): both addresses of a probing host left it with the MAC
the learner had seen, so a ruleset denying exactly the probing hosts' MACs (``ether saddr
!= { OFFICE-MAC, OUTSIDE-MAC } … accept``, read from the router's neighbour table) passed
as the one denying their addresses did.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import secrets
from typing import Any, NamedTuple

from forge.detached import run_detached
from forge.runtime.local.netns import in_netns, ip_batch
from forge.runtime.local.network import apply_sysctls
from forge.runtime.local.tools import tool

Meta = dict[str, Any]
DRAWS = 64  # random draws before the subnet's free addresses are listed


def host_addresses(ns: str) -> list[tuple[str, ipaddress.IPv4Interface, bool]]:
    """(interface, address/prefix, whether secondary) of each IPv4 address in ``ns``."""
    res = in_netns(ns, lambda: run_detached([tool("ip"), "-j", "-4", "addr", "show"],
                                            timeout=30))
    if res.returncode != 0:
        raise OSError(f"ip addr show in {ns} failed: {res.stderr.strip()[:500]}")
    return [(link["ifname"], ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}"),
             bool(a.get("secondary")))
            for link in json.loads(res.stdout or "[]") for a in link.get("addr_info", [])]


def draw_free(net: ipaddress.IPv4Network, taken: set[ipaddress.IPv4Address]) -> str | None:
    """A random host address of ``net`` not in ``taken`` (nor the egress gateway's,
    the subnet's last but one), or None when there is none."""
    first, size = int(net.network_address) + 1, net.num_addresses - 3  # no gateway
    if size <= 0:
        return None
    for _ in range(DRAWS):
        pick = ipaddress.IPv4Address(first + secrets.randbelow(size))
        if pick not in taken:
            return str(pick)
    free = [a for a in net.hosts() if a not in taken and a != net.broadcast_address - 1]
    return str(secrets.choice(free)) if free else None


def planned_addresses(hosts: dict[str, Meta],
                      host_ns: dict[str, str]) -> set[ipaddress.IPv4Address]:
    """The addresses the lab's plan gave its hosts. Not what their interfaces hold now: a
    learner with NET_ADMIN on a router could add every free address of a subnet there, so
    that none was left to draw and the checks probed from the named addresses alone. A
    lab recorded before its plan's addresses were (``addresses`` missing) is read from its
    interfaces, as it was."""
    planned: set[ipaddress.IPv4Address] = set()
    for host, info in hosts.items():
        if "addresses" in info:
            planned.update(ipaddress.IPv4Address(a) for a in info["addresses"])
        elif host in host_ns:
            planned.update(iface.ip for _, iface, _ in host_addresses(host_ns[host]))
    return planned


class Probing(NamedTuple):
    """What the seal's steps (grading addresses, then probe identities) share: each
    probing host's addresses as its interfaces held them before the seal added any, read
    once, and the addresses no draw may pick (the plan's, those, and each one drawn)."""

    seen: dict[str, list[tuple[str, ipaddress.IPv4Interface, bool]]]
    taken: set[ipaddress.IPv4Address]


def flagged(host_ns: dict[str, str], meta: Meta, *flags: str) -> list[str]:
    """The hosts of ``meta`` (with a namespace in ``host_ns``) whose template sets any of
    ``flags`` (``grading_address``, ``grading_identities``)."""
    return [h for h, m in meta.get("hosts", {}).items()
            if any(m.get(flag) for flag in flags) and h in host_ns]


def read_probing(host_ns: dict[str, str], meta: Meta, *flags: str) -> Probing:
    """The addresses of the hosts ``flags`` mark, and those taken (`Probing`); nothing is
    read when no host is marked."""
    wanted = flagged(host_ns, meta, *flags)
    if not wanted:
        return Probing({}, set())
    seen = {h: host_addresses(host_ns[h]) for h in wanted}
    taken = planned_addresses(meta.get("hosts", {}), host_ns) \
        | {iface.ip for addrs in seen.values() for _, iface, _ in addrs}
    return Probing(seen, taken)


def add_grading_addresses(host_ns: dict[str, str], meta: Meta,
                          probing: Probing | None = None) -> dict[str, list[str]]:
    """Give each host of ``meta`` marked ``grading_address`` one more address and a fresh
    MAC per lab interface (``host_ns``: host name -> its network namespace); the
    addresses added, per host. ``probing``: the hosts' addresses already read (at seal,
    shared with the probe identities, whose draws then avoid the addresses added here)."""
    wanted = flagged(host_ns, meta, "grading_address")
    if not wanted:
        return {}
    seen, taken = probing or read_probing(host_ns, meta, "grading_address")
    added: dict[str, list[str]] = {}
    for host in wanted:
        kept = {name for name, _, secondary in seen[host] if secondary}
        commands: list[str] = []
        fresh: list[str] = []
        for name, iface, secondary in seen[host]:
            if not name.startswith("eth") or secondary or name in kept:
                continue
            fresh.append(name)
            commands.append(f"link set dev {name} address {random_mac()}")
            pick = draw_free(iface.network, taken)
            if pick is None:
                continue  # a full subnet: its checks probe from the host's own address
            taken.add(ipaddress.IPv4Address(pick))
            commands.append(f"address add {pick}/{iface.network.prefixlen} dev {name}")
            added.setdefault(host, []).append(pick)
        notify = {f"net.ipv4.conf.{name}.arp_notify": "1" for name in fresh}
        in_netns(host_ns[host], functools.partial(apply_sysctls, notify))  # MAC: told
        ip_batch(host_ns[host], commands)
    return added


def random_mac() -> str:
    """A random locally administered unicast MAC address."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)
