"""Waiting for a lab's services: ``create`` returns once every port a host declares ready
(``HostSpec.ready_ports``) accepts a TCP connection inside that host's network namespace.

The calling thread steps into the host's namespace once (``netns.in_netns``) and connects
from there, on the loopback address and then on each of the host's lab addresses (a
service may listen on one of them only), every ``POLL_S`` until all accept: no process is
started for a probe. Past the deadline, ``ServicesNotReady`` names the host and the ports
that never listened; ``create`` then tears the lab down as after any failed build.
"""

from __future__ import annotations

import functools
import socket
import time

from forge.runtime.base import ServicesNotReady
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.netns import in_netns
from forge.runtime.plan import LabPlan

READY_TIMEOUT_S = 30.0  # FORGE_LAB_READY_TIMEOUT_S
POLL_S = 0.05
CONNECT_S = 0.5  # a lab address behind the host's own firewall may drop the SYN


def _accepts(addresses: tuple[str, ...], port: int, deadline: float) -> bool:
    """Whether a connection to ``port`` on any of ``addresses`` is accepted (the calling
    thread is in the host's namespace)."""
    for address in addresses:
        wait = min(CONNECT_S, deadline - time.monotonic())
        if wait <= 0:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(wait)
            try:
                result = sock.connect_ex((address, port))
            except OSError:  # a timeout (dropped SYN), an unreachable address
                continue
            if result == 0:
                return True
    return False


def _wait_host(addresses: tuple[str, ...], ports: list[int], deadline: float) -> list[int]:
    """The ports of ``ports`` still not accepting at ``deadline`` (empty: all listen)."""
    waiting = list(dict.fromkeys(ports))
    while True:
        waiting = [p for p in waiting if not _accepts(addresses, p, deadline)]
        if not waiting or time.monotonic() >= deadline:
            return waiting
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def wait_ready(names: Names, plan: LabPlan, timeout_s: float) -> None:
    """Return once every host's ready ports accept a connection; ``ServicesNotReady``
    naming the host and ports otherwise after ``timeout_s`` (one deadline for the lab)."""
    deadline = time.monotonic() + timeout_s
    for host in plan.hosts:
        ports = host.spec.ready_ports
        if not ports:
            continue
        addresses = ("127.0.0.1", *(nic.address for nic in host.nics))
        ns = names.host_ns(plan.lab_id, host.spec.name)
        silent = in_netns(ns, functools.partial(_wait_host, addresses, ports, deadline))
        if silent:
            listed = ", ".join(str(p) for p in silent)
            raise ServicesNotReady(
                f"host {host.spec.name}: nothing listened on TCP port"
                f"{'s' if len(silent) > 1 else ''} {listed} within {timeout_s:g} s of the "
                "lab's start (its template's ready_ports)")
