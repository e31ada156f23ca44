"""Cross-field rules of the Scenario DSL that a JSON Schema cannot express.

Each rule adds `Problem`s with the exact path of the offending value, so an author can fix
every mistake from one run of `forge template check`.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable
from posixpath import normpath

from forge.templates import dsl_limits as L
from forge.templates.check_network import command_names_network
from forge.templates.dsl_hosts import Container
from forge.templates.dsl_models import ScenarioTemplate
from forge.templates.exec_size import exec_size_problems
from forge.templates.problems import Problem
from forge.templates.seedpaths import seed_path_problem
from forge.templates.variables import (
    REFERENCE_RE,
    misplaced_references,
    referenced_variables,
)

_C = "spec.assets.containers"


def _duplicates(names: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    dup: set[str] = set()
    for n in names:
        (dup if n in seen else seen).add(n)
    return dup


def check_semantics(t: ScenarioTemplate) -> list[Problem]:
    """Every cross-reference problem in a schema-valid template."""
    out: list[Problem] = []
    out += _check_labels(t)
    subnets = _check_subnets(t, out)
    declared = {s.name for s in t.spec.network.subnets}  # valid or not
    _check_unique(t, out)
    used_addresses: dict[ipaddress.IPv4Address, str] = {}
    for i, c in enumerate(t.spec.assets.containers):
        attached = _check_attachments(i, c, subnets, declared, used_addresses, out)
        # A subnet with a bad cidr (its own problem) leaves no network to check a gateway on.
        known = all(a.subnet in subnets for a in c.networks if a.subnet in declared)
        _check_routes(i, c, attached, out, gateways=known)
        _check_capabilities(i, c, out)
        _check_files(i, c, out)
        command = shlex.join(c.command) if c.command else None
        out += [Problem(f"{_C}[{i}].{field}", message)
                for field, message in exec_size_problems(c.environment, command)]
        _check_ready_ports(i, c, t, out)
        if c.router and len(c.networks) < 2:
            out.append(Problem(f"{_C}[{i}].router", "a router must attach to at least 2 subnets"))
    _check_criteria(t, out)
    _check_hints(t, out)
    if not t.learner_hosts:
        out.append(Problem(_C, 'no host has "access: learner": the learner could open no '
                           "terminal (mark the learner's host(s))"))
    _check_variables(t, out)
    checks = sum(len(c.checks) for c in t.spec.success_criteria)
    if checks > L.MAX_CHECKS_TOTAL:
        out.append(Problem("spec.successCriteria", f"{checks} checks in all; at most "
                           f"{L.MAX_CHECKS_TOTAL} (every result travels in one completion event)"))
    if t.spec.limits.disk_mb >= t.spec.limits.memory_mb:
        out.append(Problem("spec.limits.disk_mb", "must be smaller than memory_mb: the lab's "
                           "disk is memory-backed and counts against its memory limit"))
    return out


def _check_labels(t: ScenarioTemplate) -> list[Problem]:
    out: list[Problem] = []
    keys = [item.partition(":")[0] for item in t.metadata.labels]
    for key, known in (("class", L.KNOWN_TRACKS), ("tier", L.KNOWN_TIERS)):
        count = keys.count(key)
        if count != 1:
            out.append(
                Problem("metadata.labels", f'need exactly one "{key}:" label, found {count}')
            )
            continue
        value = t.metadata.label(key)
        if value not in known:
            out.append(
                Problem(
                    "metadata.labels",
                    f'unknown {key} "{value}" (known: {", ".join(known)})',
                )
            )
    return out


# A lab subnet holds at most a lab's 16 hosts: a /24 (254 addresses) is plenty, and bounds
# what any host on it can make the kernel track. On a /16, a host without NET_ADMIN (which
# the neighbour trim never looks at) sending to one address after another made 14,985
# neighbour entries of the machine's one table in 12 s from a bash loop; on a /24 such a
# sweep holds 254 per link. A /29 is the narrowest with room for a few hosts.
WIDEST_PREFIX, NARROWEST_PREFIX = 24, 29


def _check_subnets(
    t: ScenarioTemplate, out: list[Problem]
) -> dict[str, ipaddress.IPv4Network]:
    nets: dict[str, ipaddress.IPv4Network] = {}
    for i, s in enumerate(t.spec.network.subnets):
        path = f"spec.network.subnets[{i}].cidr"
        try:
            net = ipaddress.IPv4Network(s.cidr, strict=True)
        except ValueError as exc:
            out.append(Problem(path, f'invalid IPv4 CIDR "{s.cidr}": {exc}'))
            continue
        if net.prefixlen > NARROWEST_PREFIX or net.prefixlen < WIDEST_PREFIX:
            out.append(Problem(path, f"prefix length must be between /{WIDEST_PREFIX} and "
                                     f'/{NARROWEST_PREFIX}, got "{s.cidr}"'))
            continue
        if not net.is_private:
            out.append(Problem(path, f'lab subnets must be private ranges, got "{s.cidr}"'))
            continue
        for other_name, other in nets.items():
            if net.overlaps(other):
                out.append(Problem(path, f'"{s.cidr}" overlaps subnet "{other_name}"'))
        nets.setdefault(s.name, net)
    return nets


def _check_unique(t: ScenarioTemplate, out: list[Problem]) -> None:
    groups = (
        ("spec.network.subnets", "subnet", [s.name for s in t.spec.network.subnets]),
        (_C, "container", [c.name for c in t.spec.assets.containers]),
        ("spec.successCriteria", "criterion id", [c.id for c in t.spec.success_criteria]),
    )
    for base, what, names in groups:
        dup = _duplicates(names)
        for i, n in enumerate(names):
            if n in dup:
                out.append(Problem(f"{base}[{i}]", f'duplicate {what} name "{n}"'))


def _check_attachments(
    i: int,
    c: Container,
    subnets: dict[str, ipaddress.IPv4Network],
    declared: set[str],
    used: dict[ipaddress.IPv4Address, str],
    out: list[Problem],
) -> dict[str, ipaddress.IPv4Network]:
    attached: dict[str, ipaddress.IPv4Network] = {}
    for j, a in enumerate(c.networks):
        path = f"{_C}[{i}].networks[{j}]"
        net = subnets.get(a.subnet)
        if net is None:  # a declared subnet with a bad cidr has its own problem
            if a.subnet not in declared:
                out.append(Problem(path, f'unknown subnet "{a.subnet}"'))
            continue
        if a.subnet in attached:
            out.append(Problem(path, f'attached twice to subnet "{a.subnet}"'))
        attached[a.subnet] = net
        if a.address is None:
            continue
        try:
            addr = ipaddress.IPv4Address(a.address)
        except ValueError:
            out.append(Problem(f"{path}.address", f'invalid IPv4 address "{a.address}"'))
            continue
        if addr not in net:
            out.append(
                Problem(f"{path}.address", f'{addr} is outside subnet "{a.subnet}" ({net})')
            )
        elif addr in (net.network_address, net.broadcast_address):
            out.append(
                Problem(f"{path}.address", f"{addr} is the network or broadcast address of {net}")
            )
        elif addr in used:
            out.append(Problem(f"{path}.address", f'{addr} is already used by "{used[addr]}"'))
        else:
            used[addr] = c.name
    return attached


def _check_routes(
    i: int, c: Container, attached: dict[str, ipaddress.IPv4Network], out: list[Problem],
    *, gateways: bool = True,
) -> None:
    own = {a.address for a in c.networks if a.address}
    for j, r in enumerate(c.routes):
        path = f"{_C}[{i}].routes[{j}]"
        if r.to != "default":
            try:
                ipaddress.IPv4Network(r.to, strict=True)
            except ValueError:
                out.append(Problem(f"{path}.to", f'"{r.to}" is neither a CIDR nor "default"'))
        try:
            via = ipaddress.IPv4Address(r.via)
        except ValueError:
            out.append(Problem(f"{path}.via", f'invalid IPv4 address "{r.via}"'))
            continue
        if r.via in own:
            out.append(Problem(f"{path}.via", f"{via} is this host's own address"))
        elif gateways and not any(via in net for net in attached.values()):
            out.append(
                Problem(f"{path}.via", f"gateway {via} is not on any subnet this host attaches to")
            )


def _check_capabilities(i: int, c: Container, out: list[Problem]) -> None:
    for j, cap in enumerate(c.capabilities):
        path = f"{_C}[{i}].capabilities[{j}]"
        if cap.startswith("CAP_"):
            out.append(Problem(path, f'write "{cap[4:]}" without the CAP_ prefix'))
        elif cap not in L.LINUX_CAPABILITIES:
            out.append(Problem(path, f'unknown Linux capability "{cap}"'))
    for cap in _duplicates(c.capabilities):
        out.append(Problem(f"{_C}[{i}].capabilities", f'capability "{cap}" listed twice'))


def _check_files(i: int, c: Container, out: list[Problem]) -> None:
    for j, f in enumerate(c.files):
        path = f"{_C}[{i}].files[{j}].path"
        p = f.path
        if not p.startswith("/"):
            out.append(Problem(path, f'"{p}" must be an absolute path'))
            continue
        if ".." in p.split("/") or "\x00" in p or normpath(p) != p or p.endswith("/"):
            out.append(Problem(path, f'"{p}" must be a normalised path without ".."'))
            continue
        problem = seed_path_problem(p, c.image != L.HOST_IMAGE, f.owner)
        if problem is not None:
            out.append(Problem(path, f'"{p}" {problem}'))
    for p in _duplicates(f.path for f in c.files):
        out.append(Problem(f"{_C}[{i}].files", f'file "{p}" seeded twice'))


def _check_criteria(t: ScenarioTemplate, out: list[Problem]) -> None:
    names = {c.name for c in t.spec.assets.containers}
    for i, crit in enumerate(t.spec.success_criteria):
        for j, chk in enumerate(crit.checks):
            path = f"spec.successCriteria[{i}].checks[{j}]"
            if chk.container not in names:
                out.append(Problem(f"{path}.container", f'unknown container "{chk.container}"'))
            if chk.live and (chk.container == L.LEARNER_HOST
                             or chk.container in t.learner_hosts):
                out.append(Problem(f"{path}.live", "a live check must reach the learner's "
                                   "host over the lab network from another host, not run "
                                   f'on "{chk.container}"'))
            if chk.network is False and command_names_network(chk.command):
                out.append(Problem(f"{path}.network", "false, but the command names a network "
                                   "tool or module: say true or leave it unset"))
            if chk.expect.is_empty():
                out.append(
                    Problem(
                        f"{path}.expect",
                        "name at least one of exit_code, stdout_contains, stdout_regex, "
                        "stderr_contains",
                    )
                )
            if chk.expect.stdout_regex is not None:
                try:
                    re.compile(chk.expect.stdout_regex)
                except re.error as exc:
                    out.append(
                        Problem(f"{path}.expect.stdout_regex", f"regex does not compile: {exc}")
                    )


def _check_hints(t: ScenarioTemplate, out: list[Problem]) -> None:
    ids = {c.id for c in t.spec.success_criteria}
    for i, hint in enumerate(t.spec.hints):
        if hint.criterion is not None and hint.criterion not in ids:
            out.append(Problem(f"spec.hints[{i}].criterion",
                               f'unknown success criterion "{hint.criterion}"'))


def _check_ready_ports(i: int, c: Container, t: ScenarioTemplate,
                       out: list[Problem]) -> None:
    """Each ready port a number in 1..65535 or an int variable whose whole range is; a
    host that declares any runs a service (its `command`)."""
    if c.ready_ports and c.command is None:
        out.append(Problem(f"{_C}[{i}].ready_ports", "the host has no command: nothing "
                           "would listen on these ports"))
    for j, port in enumerate(c.ready_ports):
        where = f"{_C}[{i}].ready_ports[{j}]"
        if isinstance(port, int):
            continue
        if port.isdigit():
            if not 1 <= int(port) <= 65535:
                out.append(Problem(where, f"port {port} is not in 1..65535"))
            continue
        match = REFERENCE_RE.fullmatch(port)
        var = t.spec.variables.get(match.group(1)) if match else None
        if var is None:
            continue  # an unknown variable: _check_variables names it
        if var.kind != "int":
            out.append(Problem(where, f'"{port}" is a {var.kind} variable, not an int one'))
        elif var.min is None or var.max is None or var.min < 1 or var.max > 65535:
            out.append(Problem(where, f'"{port}" may be {var.min}..{var.max}, not a TCP '
                                      "port (1..65535)"))


def _check_variables(t: ScenarioTemplate, out: list[Problem]) -> None:
    out += misplaced_references(t)
    declared = set(t.spec.variables)
    for path, name in referenced_variables(t):
        if name not in declared:
            out.append(Problem(path, f'unknown variable "{name}" in {{{{ vars.{name} }}}}'))
