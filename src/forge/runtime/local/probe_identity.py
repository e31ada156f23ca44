"""Probe identities: a fresh source per grading criterion on a probing host, added at seal.

A grading address (``grading_address``) is one more source, but every criterion's checks
probe from it: a ruleset that *remembers* which sources used one port (``tcp dport $web
ct state new update @seen { ip saddr }``) and refuses them another (``ip saddr @seen
tcp dport $ssh drop``, SSH accepted for every other source) saw each probing address on
the web port before the SSH checks ran, so they were refused, while any host that had not
touched the web port recently got SSH: 1.0. A host whose template lists
``grading_identities`` (short names, one per criterion) gets, when the lab is sealed, for
each name and each lab interface ``ethN`` a macvlan sub-interface ``gN-NAME`` with a
random MAC and a random address of the subnet no host of the plan has (drawn as grading
addresses are), and a routing rule sending what is sourced from that address out through
it. A criterion's checks probe from their own identity (``nc -s ADDR``), which no other
criterion's probe used, so what one criterion's probes leave behind in the ruleset cannot
answer another's. A regrade keeps the identities made first.
"""

from __future__ import annotations

import functools
import ipaddress
import json

from forge.detached import run_detached
from forge.runtime.local.grading_address import (
    Meta,
    Probing,
    add_grading_addresses,
    draw_free,
    flagged,
    random_mac,
    read_probing,
)
from forge.runtime.local.netns import in_netns, ip_batch
from forge.runtime.local.network import apply_sysctls
from forge.runtime.local.tools import tool

TABLE = 1000  # routing tables and rule preferences of the identities: TABLE, TABLE + 1, …


def _gateways(ns: str) -> list[tuple[str, str]]:
    """(destination, gateway) of each route via a gateway in ``ns``'s main table."""
    res = in_netns(ns, lambda: run_detached([tool("ip"), "-j", "-4", "route", "show",
                                             "table", "main"], timeout=30))
    if res.returncode != 0:
        raise OSError(f"ip route show in {ns} failed: {res.stderr.strip()[:500]}")
    return [(str(r["dst"]), str(r["gateway"])) for r in json.loads(res.stdout or "[]")
            if r.get("gateway")]


def identity_name(parent: str, name: str) -> str:
    """The sub-interface of identity ``name`` on lab interface ``parent`` (``ethN``)."""
    return f"g{parent[3:]}-{name}"


def add_probe_identities(host_ns: dict[str, str], meta: Meta,
                         probing: Probing | None = None) -> dict[str, dict[str, str]]:
    """Give each host of ``meta`` listing ``grading_identities`` one sub-interface per
    identity and lab interface (``host_ns``: host name -> its network namespace); the
    addresses added, per host and sub-interface. ``probing``: the hosts' addresses
    already read (`add_grading_sources`)."""
    hosts = meta.get("hosts", {})
    wanted = flagged(host_ns, meta, "grading_identities")
    if not wanted:
        return {}
    seen, taken = probing or read_probing(host_ns, meta, "grading_identities")
    added: dict[str, dict[str, str]] = {}
    for host in wanted:
        if any(name.startswith("g") and "-" in name for name, _, _ in seen[host]):
            continue  # sealed before: its identities stay
        ns = host_ns[host]
        routes = _gateways(ns)
        commands: list[str] = []
        table = TABLE
        sysctls: dict[str, str] = {}
        parents = {name: iface for name, iface, secondary in seen[host]
                   if name.startswith("eth") and not secondary}
        for parent, iface in parents.items():
            sysctls.update(_arp_strict(parent))
            for ident in hosts[host]["grading_identities"]:
                pick = draw_free(iface.network, taken)
                if pick is None:
                    continue  # a full subnet: its checks probe from the host's addresses
                taken.add(ipaddress.IPv4Address(pick))
                sub, table = identity_name(parent, str(ident)), table + 1
                sysctls.update(_arp_strict(sub))
                commands += [
                    f"link add link {parent} name {sub} address {random_mac()} "
                    "type macvlan mode bridge",
                    f"address add {pick}/{iface.network.prefixlen} dev {sub} noprefixroute",
                    f"link set dev {sub} up",
                    f"route add {iface.network} dev {sub} src {pick} table {table}",
                    *(f"route add {dst} via {via} dev {sub} table {table}"
                      for dst, via in routes
                      if ipaddress.IPv4Address(via) in iface.network),
                    f"rule add from {pick} lookup {table} pref {table}",
                ]
                added.setdefault(host, {})[sub] = pick
        ip_batch(ns, commands)
        in_netns(ns, functools.partial(apply_sysctls, sysctls))
    return added


def _arp_strict(dev: str) -> dict[str, str]:
    """ARP for ``dev`` answered only with its own address and MAC (several interfaces
    share the subnet: without it the parent answers for an identity's address too, and
    replies come back to the parent's MAC)."""
    return {f"net.ipv4.conf.{dev}.arp_ignore": "1",
            f"net.ipv4.conf.{dev}.arp_announce": "2"}


def add_grading_sources(host_ns: dict[str, str], meta: Meta) -> None:
    """What a sealed lab's probing hosts get before grading: their grading addresses
    (``grading_address``), then their probe identities, whose draws avoid those; the
    hosts' addresses are read once, before either."""
    probing = read_probing(host_ns, meta, "grading_address", "grading_identities")
    add_grading_addresses(host_ns, meta, probing)
    add_probe_identities(host_ns, meta, probing)
