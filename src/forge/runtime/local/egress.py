"""Allowlisted egress: a per-lab gateway namespace with NAT and an nftables allowlist.

Only labs whose spec says ``egress: allowlist`` with an approved profile get one. The
gateway joins every subnet bridge at the subnet's last host address and has one uplink
veth into the *egress namespace* (the machine's by default; tests pass a namespace of
their own). Forwarded traffic is accepted only to the profile's destinations; everything
else is dropped and counted; nothing from the uplink may open connections into the lab.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import threading
from dataclasses import dataclass, field

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from forge.detached import run_detached
from forge.runtime.base import SpecError
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.netns import create_netns, ip_batch, netns_path, run_in_netns
from forge.runtime.local.network import apply_sysctls, attach_veths, base_sysctls
from forge.runtime.local.tools import tool
from forge.runtime.plan import LabPlan

TABLE = "forge_egress"
UPLINK_POOL = ipaddress.IPv4Network("100.127.0.0/16")
_alloc_lock = threading.Lock()


@dataclass(frozen=True)
class AllowRule:
    """Traffic the gateway lets out: a destination network, a protocol, optional ports."""

    cidr: str
    protocol: str = "tcp"  # tcp | udp | icmp
    ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class EgressProfile:
    """A named, operator-approved allowlist."""

    name: str
    rules: tuple[AllowRule, ...] = field(default_factory=tuple)


DEFAULT_PROFILES: dict[str, EgressProfile] = {"none": EgressProfile("none")}


def validate_profile(profile: EgressProfile) -> None:
    """Reject rules that would not render to a safe nftables rule."""
    for i, rule in enumerate(profile.rules):
        where = f"profiles[{profile.name}].rules[{i}]"
        try:
            ipaddress.IPv4Network(rule.cidr, strict=True)
        except ValueError:
            raise SpecError(where + ".cidr", "not an IPv4 network") from None
        if rule.protocol not in ("tcp", "udp", "icmp"):
            raise SpecError(where + ".protocol", "must be tcp, udp or icmp")
        if any(not 0 < p < 65536 for p in rule.ports) or (rule.ports and rule.protocol == "icmp"):
            raise SpecError(where + ".ports", "ports must be 1-65535 (tcp/udp only)")


def ruleset(profile: EgressProfile) -> str:
    """The gateway's nftables ruleset for ``profile``."""
    allow = []
    for rule in profile.rules:
        net = str(ipaddress.IPv4Network(rule.cidr))
        if rule.protocol == "icmp":
            allow.append(f'iifname "eth*" ip daddr {net} icmp type echo-request accept')
        elif rule.ports:
            ports = ", ".join(str(p) for p in rule.ports)
            allow.append(
                f'iifname "eth*" ip daddr {net} {rule.protocol} dport {{ {ports} }} accept'
            )
        else:
            allow.append(f'iifname "eth*" ip daddr {net} meta l4proto {rule.protocol} accept')
    body = "\n    ".join(allow)
    return f"""table inet {TABLE} {{
  counter denied {{ }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    {body}
    counter name denied drop
  }}
  chain input {{
    type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
    counter name denied drop
  }}
  chain postrouting {{
    type nat hook postrouting priority 100;
    oifname "up0" masquerade
  }}
}}
"""


def _nft(ns: str, args: list[str], stdin: str | None = None) -> str:
    res = run_detached([tool("nsenter"), f"--net={netns_path(ns)}", "--", tool("nft"), *args],
                       input=stdin, timeout=30)
    if res.returncode != 0:
        raise OSError(f"nft failed in {ns}: {res.stderr.strip()}")
    return res.stdout


def _allocate_uplink(egress_ns: str | None) -> ipaddress.IPv4Network:
    def used(ipr: IPRoute) -> set[ipaddress.IPv4Address]:
        return {ipaddress.IPv4Address(a.get("address")) for a in ipr.get_addr(family=2)}

    taken = run_in_netns(egress_ns, used)
    for net in UPLINK_POOL.subnets(new_prefix=30):
        hosts = list(net.hosts())
        if hosts[0] not in taken and hosts[1] not in taken:
            return net
    raise OSError("egress uplink address pool exhausted")


def build_gateway(
    names: Names, plan: LabPlan, profile: EgressProfile, egress_ns: str | None
) -> None:
    """Create the gateway namespace, wire it to every subnet and to the egress namespace."""
    ns = names.gateway_ns(plan.lab_id)
    create_netns(ns, lambda: apply_sysctls(base_sysctls(True)))
    pairs = [(f"g{i}", f"eth{i}", i) for i in range(len(plan.subnets))]
    attach_veths(names.switch_ns(plan.lab_id), [(ns, pairs)])
    uplink = names.uplink(plan.lab_id)
    with _alloc_lock:
        net = _allocate_uplink(egress_ns)
        outer_ip, inner_ip = (str(a) for a in list(net.hosts())[:2])

        def outer(ipr: IPRoute) -> None:
            ipr.link("add", ifname=uplink, kind="veth",
                     peer={"ifname": "up0", "net_ns_fd": netns_path(ns)})
            index = ipr.link_lookup(ifname=uplink)[0]
            ipr.addr("add", index=index, address=outer_ip, prefixlen=30)
            ipr.link("set", index=index, state="up")

        run_in_netns(egress_ns, outer)

    cmds = ["link set lo up"]
    for i, gw in plan.gateway.items():
        cmds += [f"addr add {gw}/{plan.subnets[i].prefixlen} dev eth{i}", f"link set eth{i} up"]
    cmds += [f"addr add {inner_ip}/30 dev up0", "link set up0 up",
             f"route add default via {outer_ip}"]
    ip_batch(ns, cmds)
    _nft(ns, ["-f", "-"], ruleset(profile))


def remove_uplink(names: Names, lab_id: str, egress_ns: str | None) -> None:
    """Delete the uplink's egress-side end if it still exists (its peer goes with the ns)."""
    uplink = names.uplink(lab_id)

    def work(ipr: IPRoute) -> None:
        for index in ipr.link_lookup(ifname=uplink):
            try:
                ipr.link("del", index=index)
            except NetlinkError as exc:
                # The kernel removes the pair asynchronously once the gateway namespace
                # is gone, so the end can vanish between the lookup and the delete.
                if exc.code != errno.ENODEV:
                    raise

    run_in_netns(egress_ns, work)


def denied_packets(names: Names, lab_id: str) -> int:
    """Packets the lab's gateway dropped so far."""
    out = _nft(names.gateway_ns(lab_id), ["-j", "list", "counter", "inet", TABLE, "denied"])
    for item in json.loads(out).get("nftables", []):
        if "counter" in item:
            return int(item["counter"]["packets"])
    return 0
