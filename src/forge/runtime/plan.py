"""Validate a LabSpec and resolve it into a concrete, engine-neutral plan.

Every name that later becomes part of a kernel object name, a path or a command line is
checked here against a strict pattern, and every address is resolved (fixed or allocated)
so engines never see an ambiguous spec. Errors name the offending field.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass, field

from forge.images.definitions import HOST_USERLAND
from forge.runtime.base import HostSpec, LabSpec, SpecError
from forge.templates.dsl_limits import FILE_OWNERSHIP_CAPS, SERVICE_MARK_CAP
from forge.templates.exec_size import exec_size_problems
from forge.templates.seedpaths import seed_path_problem

LAB_ID_RE = re.compile(r"^(scn-[0-9a-f]{16}|[a-z0-9][a-z0-9-]{0,39})\Z")
HOST_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}\Z")
SUBNET_RE = re.compile(r"^[a-z][a-z0-9_-]{0,30}\Z")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
WRITABLE_DIRS = ("/home", "/workspace", "/srv")
# Seeded by the platform (e.g. graders a template ships) and mounted read-only in the host.
READONLY_DIRS = ("/opt/forge",)
SEED_DIRS = WRITABLE_DIRS + READONLY_DIRS
MAX_HOSTS = 16
MAX_SUBNETS = 8

# Linux capability names (without the CAP_ prefix) as of kernel 6.x.
KNOWN_CAPS = frozenset(
    {
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
        "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
        "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
        "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    }
)


def validate_lab_id(lab_id: object) -> str:
    """Return ``lab_id`` if it is ``scn-`` + 16 lowercase hex or ``[a-z0-9-]{1,40}``."""
    if not isinstance(lab_id, str) or not LAB_ID_RE.fullmatch(lab_id):
        raise SpecError("lab_id", "must be scn-<16 lowercase hex> or 1-40 of [a-z0-9-]")
    return lab_id


def validate_host_name(name: object, field_path: str = "host") -> str:
    """Return ``name`` if it is a valid lab host name (a lowercase DNS label)."""
    if not isinstance(name, str) or not HOST_RE.fullmatch(name):
        raise SpecError(field_path, "must match [a-z][a-z0-9-]{0,30}")
    return name


def normalize_cap(cap: str, field_path: str) -> str:
    """Map ``net_admin`` / ``CAP_NET_ADMIN`` to ``NET_ADMIN``; reject unknown names."""
    name = cap.upper().removeprefix("CAP_")
    if name not in KNOWN_CAPS:
        raise SpecError(field_path, f"unknown capability {cap!r}")
    return name


@dataclass(frozen=True)
class PlannedNic:
    """One interface of a host: its subnet (by index and name) and its address."""

    subnet_index: int
    subnet: str
    address: str
    prefixlen: int


@dataclass(frozen=True)
class PlannedHost:
    """A validated host with resolved addresses and normalized capabilities."""

    index: int
    spec: HostSpec
    hostname: str
    nics: list[PlannedNic]
    routes: list[tuple[str, str]]
    caps: list[str]


@dataclass(frozen=True)
class LabPlan:
    """A validated lab: subnets in order, hosts, and the egress gateway address per subnet."""

    spec: LabSpec
    subnets: list[ipaddress.IPv4Network]
    hosts: list[PlannedHost]
    gateway: dict[int, str] = field(default_factory=dict)

    @property
    def lab_id(self) -> str:
        """The validated lab id."""
        return self.spec.lab_id


def on_image(host: HostSpec) -> bool:
    """Whether the host runs on an image (its own writable root), not the machine's
    userland (no image, or ``host``)."""
    return host.image is not None and host.image != HOST_USERLAND


def _check_ready_ports(host: HostSpec, base: str) -> None:
    for i, port in enumerate(host.ready_ports):
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise SpecError(f"{base}.ready_ports[{i}]", "must be a TCP port 1 to 65535")
    if host.ready_ports and not host.command:
        raise SpecError(f"{base}.ready_ports", "the host has no command to listen on them")


def _check_files(host: HostSpec, base: str) -> None:
    for path, content in host.files.items():
        where = f"{base}.files[{path!r}]"
        norm = posixpath.normpath(path) if isinstance(path, str) else ""
        if not norm.startswith("/") or norm != path or "\x00" in path or norm == "/":
            raise SpecError(where, "must be a normalized absolute path")
        problem = seed_path_problem(norm, on_image(host), host.owners.get(path))
        if problem is not None:
            raise SpecError(where, problem)
        if not isinstance(content, str | bytes):
            raise SpecError(where, "content must be text or bytes")
    for path, owner in host.owners.items():
        if path not in host.files:
            raise SpecError(f"{base}.owners[{path!r}]", "names no seeded file")
        if owner not in ("root", "learner"):
            raise SpecError(f"{base}.owners[{path!r}]", "must be 'root' or 'learner'")
    for path, mode in host.modes.items():
        if path not in host.files:
            raise SpecError(f"{base}.modes[{path!r}]", "names no seeded file")
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o777:
            raise SpecError(f"{base}.modes[{path!r}]",
                            "must be permission bits 0 to 0777 (no setuid/setgid/sticky)")


def seed_mode(host: HostSpec, path: str, data: bytes) -> int:
    """A seed's permission bits: its ``modes`` entry, else 0755 for a ``#!`` script and
    0644 for anything else."""
    return host.modes.get(path, 0o755 if data.startswith(b"#!") else 0o644)


def _subnets(spec: LabSpec) -> tuple[list[ipaddress.IPv4Network], dict[str, int]]:
    if not spec.subnets or len(spec.subnets) > MAX_SUBNETS:
        raise SpecError("subnets", f"need 1 to {MAX_SUBNETS} subnets")
    nets: list[ipaddress.IPv4Network] = []
    index: dict[str, int] = {}
    for i, sub in enumerate(spec.subnets):
        if not SUBNET_RE.fullmatch(sub.name):
            raise SpecError(f"subnets[{i}].name", "must match [a-z][a-z0-9_-]{0,30}")
        if sub.name in index:
            raise SpecError(f"subnets[{i}].name", f"duplicate subnet {sub.name!r}")
        try:
            net = ipaddress.IPv4Network(sub.cidr, strict=True)
        except ValueError as exc:
            raise SpecError(f"subnets[{i}].cidr", f"not an IPv4 network: {exc}") from None
        if net.prefixlen > 29 or net.prefixlen < 8:
            raise SpecError(f"subnets[{i}].cidr", "prefix length must be between 8 and 29")
        for j, other in enumerate(nets):
            if net.overlaps(other):
                raise SpecError(f"subnets[{i}].cidr", f"overlaps subnets[{j}]")
        index[sub.name] = i
        nets.append(net)
    return nets, index


def _route(
    route: tuple[str, str], where: str, own: list[ipaddress.IPv4Network]
) -> tuple[str, str]:
    dest, via = route
    if dest != "default":
        try:
            dest = str(ipaddress.IPv4Network(dest, strict=True))
        except ValueError:
            raise SpecError(where, f"destination {dest!r} is not 'default' or a CIDR") from None
    try:
        gw = ipaddress.IPv4Address(via)
    except ValueError:
        raise SpecError(where, f"gateway {via!r} is not an IPv4 address") from None
    if not any(gw in net for net in own):
        raise SpecError(where, f"gateway {via} is not on a subnet this host is attached to")
    return dest, str(gw)


def plan_lab(spec: LabSpec) -> LabPlan:
    """Validate ``spec`` and resolve addresses; raises SpecError naming the bad field."""
    validate_lab_id(spec.lab_id)
    if spec.egress not in ("deny", "allowlist"):
        raise SpecError("egress", "must be 'deny' or 'allowlist'")
    if spec.egress == "allowlist" and not spec.allowlist_profile:
        raise SpecError("allowlist_profile", "required when egress is 'allowlist'")
    lim = spec.limits
    if not 0 < lim.cpu <= 64:
        raise SpecError("limits.cpu", "must be > 0 and <= 64")
    if not 16 <= lim.memory_mb <= 1 << 20:
        raise SpecError("limits.memory_mb", "must be between 16 and 1048576")
    if not 8 <= lim.pids <= 1 << 20:
        raise SpecError("limits.pids", "must be between 8 and 1048576")
    nets, index = _subnets(spec)
    if not spec.hosts or len(spec.hosts) > MAX_HOSTS:
        raise SpecError("hosts", f"need 1 to {MAX_HOSTS} hosts")

    gateway: dict[int, str] = {}
    if spec.egress == "allowlist":
        gateway = {i: str(net.broadcast_address - 1) for i, net in enumerate(nets)}
    used: dict[int, set[ipaddress.IPv4Address]] = {i: set() for i in range(len(nets))}
    for i, gw in gateway.items():
        used[i].add(ipaddress.IPv4Address(gw))
    # Fixed addresses first, so allocation never takes one a later host asked for.
    names: set[str] = set()
    for h, host in enumerate(spec.hosts):
        base = f"hosts[{h}]"
        validate_host_name(host.name, f"{base}.name")
        if host.name in names:
            raise SpecError(f"{base}.name", f"duplicate host {host.name!r}")
        names.add(host.name)
        if not host.networks:
            raise SpecError(f"{base}.networks", "a host needs at least one network")
        for n, (sub, addr) in enumerate(host.networks):
            where = f"{base}.networks[{n}]"
            if sub not in index:
                raise SpecError(where, f"unknown subnet {sub!r}")
            if addr is None:
                continue
            try:
                ip = ipaddress.IPv4Address(addr)
            except ValueError:
                raise SpecError(where, f"{addr!r} is not an IPv4 address") from None
            net = nets[index[sub]]
            if ip not in net or ip in (net.network_address, net.broadcast_address):
                raise SpecError(where, f"address {addr} is not a host address of {sub}")
            if ip in used[index[sub]]:
                raise SpecError(where, f"address {addr} is already taken")
            used[index[sub]].add(ip)

    hosts: list[PlannedHost] = []
    for h, host in enumerate(spec.hosts):
        base = f"hosts[{h}]"
        seen: set[str] = set()
        nics: list[PlannedNic] = []
        for n, (sub, addr) in enumerate(host.networks):
            if sub in seen:
                raise SpecError(f"{base}.networks[{n}]", f"host already on subnet {sub!r}")
            seen.add(sub)
            i = index[sub]
            if addr is None:
                free = next((a for a in nets[i].hosts() if a not in used[i]), None)
                if free is None:
                    raise SpecError(f"{base}.networks[{n}]", f"subnet {sub} is full")
                used[i].add(free)
                addr = str(free)
            nics.append(PlannedNic(i, sub, addr, nets[i].prefixlen))
        own = [nets[nic.subnet_index] for nic in nics]
        routes = [_route(r, f"{base}.routes[{k}]", own) for k, r in enumerate(host.routes)]
        if gateway and not any(d == "default" for d, _ in routes):
            routes.append(("default", gateway[nics[0].subnet_index]))
        caps = [normalize_cap(c, f"{base}.capabilities[{k}]")
                for k, c in enumerate(host.capabilities)]
        for k, cap in enumerate(caps):
            if cap in FILE_OWNERSHIP_CAPS:
                raise SpecError(f"{base}.capabilities[{k}]",
                                f"{cap} would let the lab user rewrite root's files in its "
                                "host; no host may keep it")
            if cap == SERVICE_MARK_CAP:
                raise SpecError(f"{base}.capabilities[{k}]",
                                f"{cap} is reserved: it marks the host's services so that "
                                "the learner's processes cannot take them over")
        for key in host.environment:
            if not ENV_RE.fullmatch(key):
                raise SpecError(f"{base}.environment[{key!r}]", "invalid variable name")
        for key, val in host.environment.items():
            if "\x00" in val:
                raise SpecError(f"{base}.environment[{key!r}]", "value contains NUL")
        too_big = exec_size_problems(host.environment, host.command)
        if too_big:
            raise SpecError(f"{base}.{too_big[0][0]}", too_big[0][1])
        hostname = host.hostname or host.name
        if not HOST_RE.fullmatch(hostname):
            raise SpecError(f"{base}.hostname", "must match [a-z][a-z0-9-]{0,30}")
        if host.command is not None and ("\x00" in host.command or not host.command.strip()):
            raise SpecError(f"{base}.command", "must be a non-empty shell command")
        _check_files(host, base)
        _check_ready_ports(host, base)
        hosts.append(PlannedHost(h, host, hostname, nics, routes, sorted(set(caps))))
    return LabPlan(spec, nets, hosts, gateway)
