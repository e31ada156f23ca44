"""Waiting for a lab's services: ``create`` returns once every port a host declares ready
(``HostSpec.ready_ports``) accepts a TCP connection inside that host's network namespace.

The calling thread steps into the host's namespace once (``netns.in_netns``) and connects
from there, on the loopback address and then on each of the host's lab addresses (a
service may listen on one of them only), every ``POLL_S`` until all accept: no process is
started for a probe. Past the deadline, ``ServicesNotReady`` names the host and the ports
that never listened; ``create`` then tears the lab down as after any failed build. It also
carries, for the author and the operator only (``ServicesNotReady.output``; a learner reads
just the message), what the host's service left: its exit status when it has ended, and
the end of its output (the host's service log), the usual cause of a silent port.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import time

from forge.runtime.base import ServicesNotReady
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.netns import in_netns
from forge.runtime.plan import LabPlan

READY_TIMEOUT_S = 30.0  # FORGE_LAB_READY_TIMEOUT_S
POLL_S = 0.05
CONNECT_S = 0.5  # a lab address behind the host's own firewall may drop the SYN
OUTPUT_BYTES = 600  # the end of the service log an author is shown


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
                "lab's start (its template's ready_ports)",
                output=service_report(names.host_dir(plan.lab_id, host.spec.name)))


def _descendants(pid: int, depth: int = 4) -> list[int]:
    """The processes below ``pid`` (a few levels: bwrap, the init shell, the service)."""
    found: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            children = [int(c) for c in fh.read().split()]
    except (OSError, ValueError):
        return found
    for child in children:
        found.append(child)
        if depth > 1:
            found += _descendants(child, depth - 1)
    return found


def _ended(pid: int) -> str | None:
    """How ``pid`` ended when it is a zombie (its exit status, from /proc), else None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] != "Z" or len(fields) < 50:
        return None
    status = int(fields[-1])  # exit_code: as waitpid reports it
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exited with status {os.WEXITSTATUS(status)}"


def service_report(host_dir: str) -> str:
    """What a host's service left: whether it ended (and how), and the last lines of its
    output; '' when there is nothing to say."""
    parts: list[str] = []
    try:
        with open(os.path.join(host_dir, "init.pid"), encoding="ascii") as fh:
            init = int(fh.read().strip())
        ends = [e for e in map(_ended, _descendants(init)) if e is not None]
        if ends:
            parts.append(f"its service {ends[0]}")
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(host_dir, "service.log"), "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - OUTPUT_BYTES))
            tail = fh.read().decode("utf-8", "replace").strip()
    except OSError:
        tail = ""
    parts.append(f"its output ends:\n{tail}" if tail else "it wrote no output")
    return "; ".join(parts)
