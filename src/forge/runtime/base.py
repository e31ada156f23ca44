"""Engine-neutral sandbox runtime interface.

The orchestrator turns a template into a :class:`LabSpec` and drives any engine through
:class:`Runtime`. Nothing here names a Linux namespace, bridge or cgroup, so a Kubernetes
engine can implement the same contract. Methods are synchronous (callers run them in a thread
pool), except the terminal's byte stream, which is async. An engine is built by
:func:`forge.runtime.factory.make_runtime` from configuration; callers never name one.
"""

from __future__ import annotations

import abc
import builtins
from dataclasses import dataclass, field
from typing import Any, Literal

from forge.runtime.runtime_faults import BuildsStopped as BuildsStopped
from forge.runtime.runtime_faults import LabExists as LabExists
from forge.runtime.runtime_faults import LabNotFound as LabNotFound
from forge.runtime.runtime_faults import LabSealed as LabSealed
from forge.runtime.runtime_faults import NotSupported as NotSupported
from forge.runtime.runtime_faults import RuntimeFault as RuntimeFault
from forge.runtime.runtime_faults import RuntimeUnavailable as RuntimeUnavailable
from forge.runtime.runtime_faults import ServicesNotReady as ServicesNotReady
from forge.runtime.runtime_faults import SpecError as SpecError
from forge.runtime.runtime_faults import StoppedMidway as StoppedMidway
from forge.runtime.runtime_faults import TerminalClosed as TerminalClosed

EgressMode = Literal["deny", "allowlist"]
# running: whole; degraded: partial (a crash mid-create or mid-destroy); foreign: objects of
# this prefix the engine holds with no state of this installation (another installation
# using the same prefix, or a command run with the wrong storage root): never adopted or
# cleaned up as this installation's own.
LabState = Literal["running", "degraded", "foreign"]


@dataclass(frozen=True)
class SubnetSpec:
    """One L2 network of a lab, e.g. ``SubnetSpec("dmz", "10.0.1.0/24")`` (IPv4 only)."""

    name: str
    cidr: str


@dataclass(frozen=True)
class HostSpec:
    """One lab host.

    ``networks``: (subnet name, fixed address or None to allocate). ``routes``:
    (destination CIDR or ``"default"``, gateway address). ``router`` enables forwarding
    in this host only. ``capabilities``: Linux capabilities approved by policy
    (``"NET_ADMIN"`` or ``"CAP_NET_ADMIN"``); all others are dropped. ``command``: a
    shell command started as the host's service at create. ``files``: absolute paths
    under /home, /workspace or /srv (writable in the host) or /opt/forge (read-only in
    the host, e.g. a grader the template ships) to seed, or, on a host with an
    ``image``, anywhere in its root but /proc, /sys, /dev, /run, /tmp, /var/tmp and the
    identity files; content starting with ``#!`` is made executable. ``owners``: path ->
    ``learner`` or ``root`` for a seed whose owner is not the default (learner under
    /home, /workspace, /srv; root elsewhere). ``modes``: path -> permission bits for a
    seed whose mode is not the default. ``hostname`` defaults to ``name``.
    ``ready_ports``: TCP ports the host's service listens on once the lab is usable:
    ``create`` returns only once each accepts a connection in the host's network.
    ``shared``: its service, environment, seeds and ready ports carry no per-scenario
    value, so a warm pool lab seeds and starts it at its build (its ports listening
    before the lab counts as ready) and a claim leaves it as it is.
    ``grading_address``: at seal the host gets one more address and a fresh MAC, unseen
    by any learner process, on each lab interface (``grading_address.add_grading_addresses``).
    ``grading_identities``: at seal the host gets, per name and lab interface, a
    sub-interface of its own MAC and address (``probe_identity.add_probe_identities``).
    """

    name: str
    networks: list[tuple[str, str | None]] = field(default_factory=list)
    routes: list[tuple[str, str]] = field(default_factory=list)
    router: bool = False
    capabilities: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    command: str | None = None
    files: dict[str, str | bytes] = field(default_factory=dict)
    hostname: str | None = None
    image: str | None = None
    owners: dict[str, str] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    ready_ports: list[int] = field(default_factory=list)
    shared: bool = False
    grading_address: bool = False
    grading_identities: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    """Resource limits of a lab: its hosts together stay within each (the pids limit
    also holds for every host on its own)."""

    cpu: float = 1.0
    memory_mb: int = 512
    pids: int = 256
    # Every writable path of the lab together (home, workspace, srv, tmp, var, run).
    disk_mb: int = 64


@dataclass(frozen=True)
class LabSpec:
    """Everything an engine needs to build one lab."""

    lab_id: str
    subnets: list[SubnetSpec]
    hosts: list[HostSpec]
    limits: Limits = field(default_factory=Limits)
    egress: EgressMode = "deny"
    allowlist_profile: str | None = None


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one command run inside a lab host.

    ``stdout``/``stderr`` hold at most ``max_output`` bytes each; the hashes and sizes
    cover the full, untruncated streams. ``exit_code`` is 128+N when killed by signal N
    (124 convention is not used: check ``timed_out``).
    """

    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_sha256: str
    stderr_sha256: str
    stdout_size: int
    stderr_size: int
    truncated: bool
    duration_s: float
    timed_out: bool

    @property
    def stdout_text(self) -> str:
        """The captured stdout decoded as UTF-8 (invalid bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        """The captured stderr decoded as UTF-8 (invalid bytes replaced)."""
        return self.stderr.decode("utf-8", "replace")


@dataclass(frozen=True)
class LabInfo:
    """What the engine holds for one lab: host name -> {subnet name: address}."""

    lab_id: str
    hosts: dict[str, dict[str, str]]
    state: LabState


class TtySession(abc.ABC):
    """An interactive terminal into a lab host (the learner's browser terminal), as an async
    byte stream: callers never see a file descriptor, so an engine may back it with a PTY,
    a socket or an API's exec stream.

    ``read``/``write`` are coroutines used from one event loop; ``resize`` and ``close``
    are synchronous (``close`` may block while it ends processes: run it in a thread).
    """

    @abc.abstractmethod
    async def read(self, max_bytes: int = 65536) -> bytes:
        """Wait for output and return at most ``max_bytes`` of it; ``b""`` once the session
        ended (also when it is closed while this waits)."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Send all of ``data`` as keystrokes, waiting while the terminal accepts no more
        input; raises :class:`TerminalClosed` once the session ended."""

    @abc.abstractmethod
    def resize(self, rows: int, cols: int) -> None:
        """Change the terminal size."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the session and every process it started. Idempotent."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True once the session has ended."""


@dataclass(frozen=True)
class PoolReport:
    """A runtime's warm pools: per pool ``ready`` and ``size``; ``events`` counted since the
    runtime started (claimed, missed, built, failed, shrunk, exposed); ``off_reason``: why
    this node keeps no pools (None: it may)."""

    pools: dict[str, dict[str, int]]
    events: dict[str, int]
    off_reason: str | None = None


class Runtime(abc.ABC):
    """A sandbox engine: builds, inspects, enters and destroys labs."""

    @abc.abstractmethod
    def check(self) -> builtins.list[str]:
        """Problems preventing this engine from working here (empty list when usable)."""

    def lab_problems(self) -> builtins.list[str]:
        """What some labs need and this machine lacks (those labs fail when built or
        graded; every other lab works, so ``check`` does not hold them); empty when none."""
        return []

    @abc.abstractmethod
    def create(self, spec: LabSpec) -> LabInfo:
        """Build a lab atomically: on any failure everything created is removed again
        (``StoppedMidway`` when a stop of the service cut the build short)."""

    @abc.abstractmethod
    def destroy(self, lab_id: str) -> None:
        """Remove every process and object of the lab. Idempotent."""

    @abc.abstractmethod
    def list(self) -> list[LabInfo]:
        """Labs the engine's backend holds now (used to reconcile after a crash)."""

    @abc.abstractmethod
    def exec(
        self,
        lab_id: str,
        host: str,
        argv: builtins.list[str] | None = None,
        shell: str | None = None,
        *,
        timeout: float = 30.0,
        stdin: bytes | None = None,
        max_output: int = 1 << 20,
    ) -> ExecResult:
        """Run ``argv`` (or ``shell`` through /bin/sh) in a host; kill it and its children
        after ``timeout`` seconds."""

    @abc.abstractmethod
    def tty(self, lab_id: str, host: str, rows: int = 24, cols: int = 80) -> TtySession:
        """Open a login shell on a PTY inside a host; closed when the lab is destroyed."""

    @abc.abstractmethod
    def seal(self, lab_id: str) -> int:
        """End every learner terminal and every process started through ``tty``/``exec``
        (template services keep running), so nothing the learner runs can act while the
        lab is graded. Idempotent; returns how many processes were ended."""

    @abc.abstractmethod
    def run_check(
        self,
        lab_id: str,
        host: str,
        argv: builtins.list[str],
        *,
        stdin: bytes | None = None,
        timeout: float = 30.0,
        max_output: int = 1 << 20,
    ) -> ExecResult:
        """Run a grading check on ``host`` as the lab's grader identity.

        The check shares only the host's network: it runs under a uid no lab process
        has, in a pid namespace where no lab process is visible (and from which none is
        visible to the lab), and sees the host's writable trees as a snapshot holding
        only regular files and directories (no FIFO, socket, device, or link leading out
        of the trees; files size-capped). Once the lab is sealed, every check of a host
        reads the same snapshot, taken at its first: what runs on after the seal cannot
        change the answers between checks. Expected values belong in ``stdin``.
        ``StoppedMidway`` when a stop of the service kept the check from giving a result.
        """

    def has_lab(self, lab_id: str) -> bool:
        """Whether ``list()`` would show ``lab_id`` (in any state). This default lists
        every lab; an engine may look at that one alone."""
        return any(info.lab_id == lab_id for info in self.list())

    def sealed(self, lab_id: str) -> bool | None:
        """Whether ``seal`` was called on the lab (a grading that did not finish, when asked
        before grading seals it), or None when the engine cannot tell. Default: None."""
        return None

    def destroy_many(self, lab_ids: builtins.list[str]) -> None:
        """Destroy every lab in ``lab_ids`` (ending a class, tearing a node down); raises
        ``OSError`` after trying them all if any was not fully destroyed. This default
        destroys them one by one; an engine may tear them down together."""
        failed: builtins.list[str] = []
        for lab_id in lab_ids:
            try:
                self.destroy(lab_id)
            except (OSError, RuntimeFault) as exc:
                failed.append(f"{lab_id}: {exc}")
        if failed:
            raise OSError(f"{len(failed)} of {len(lab_ids)} labs not fully destroyed: "
                          + "; ".join(failed[:5]))

    def cleanup_orphans(self) -> builtins.list[str]:
        """Remove what a crash left half-built or half-destroyed (labs the backend holds in
        the ``degraded`` state) and return their ids; every such lab is tried, and
        ``OSError`` after them names those that failed and those removed. Optional: engines
        whose backend
        cleans up by itself keep this default, which raises :class:`NotSupported`."""
        raise NotSupported(f"orphan cleanup is not supported by the {self.engine_name} engine")

    def warm(self, pools: dict[str, tuple[LabSpec, int]],
             **options: Any) -> dict[str, dict[str, int]]:
        """Keep ``size`` pre-built labs of each named spec's shape ready, so ``create`` of a
        spec with that shape claims one and personalises it (``forge.runtime.warm``);
        ``{}`` destroys every ready lab. Returns per pool ``ready`` and ``size``. Optional:
        the default raises :class:`NotSupported`."""
        raise NotSupported(f"warm pools are not supported by the {self.engine_name} engine")

    def holds_labs(self) -> bool:
        """Whether this engine may hold any lab now (any state), asked cheaply before every
        reaper pass's kernel-table trims, which a node with no lab need not run. This
        default cannot tell cheaply: True (the trims run every pass)."""
        return True

    def trim_neighbours(self) -> builtins.list[tuple[str, str, int]]:
        """Remove the neighbour (ARP, NDP) entries a lab host piled up past what a lab
        needs, which hold the machine's kernel memory outside the lab's limits: (lab, host,
        entries removed) for each. Default: none (an engine whose labs cannot add any)."""
        return []

    def trim_conntrack(self) -> builtins.list[tuple[str, str, int]]:
        """Flush the connection-tracking entries a lab host piled up past what a lab needs,
        which hold the machine's kernel memory outside the lab's limits: (lab, host,
        entries removed) for each. Default: none (an engine whose labs cannot add any)."""
        return []

    def trim_traffic_control(self) -> builtins.list[tuple[str, str, int]]:
        """Remove the traffic-control objects (queueing disciplines, classes) a lab host
        piled up past what a lab needs, which hold the machine's kernel memory outside the
        lab's limits: (lab, host, objects removed) for each. Default: none (an engine whose
        labs cannot add any)."""
        return []

    def trim_nexthops(self) -> builtins.list[tuple[str, str, int]]:
        """Remove the nexthop objects a lab host piled up past what a lab needs, which hold
        the machine's kernel memory outside the lab's limits: (lab, host, nexthops removed)
        for each. Default: none (an engine whose labs cannot add any)."""
        return []

    def trim_address_labels(self) -> builtins.list[tuple[str, str, int]]:
        """Remove the IPv6 address labels a lab host piled up past what a lab needs, which
        hold the machine's kernel memory outside the lab's limits: (lab, host, labels
        removed) for each. Default: none (an engine whose labs cannot add any)."""
        return []

    def trim_listen_queues(self) -> builtins.list[tuple[str, str, int]]:
        """Free the unaccepted connections a lab host's listeners piled up past what a lab
        needs, which hold the machine's kernel memory outside the lab's limits: (lab, host,
        connections freed) for each. Default: none (an engine whose labs cannot)."""
        return []

    def trim_routes(self) -> builtins.list[tuple[str, str, int]]:
        """Remove the addresses and routes a lab host piled up past what a lab needs, which
        hold the machine's kernel memory outside the lab's limits, never the runtime's own:
        (lab, host, addresses and routes removed) for each. Default: none (an engine whose
        labs cannot add any)."""
        return []

    def wait_ready(self, spec: LabSpec) -> None:
        """Return once the services of lab ``spec.lab_id`` (built from ``spec``) listen on
        their hosts' ``ready_ports``, as ``create`` does before it returns: for a lab found
        built after a restart cut its create short. ``ServicesNotReady`` past the engine's
        deadline (the lab is left as it is, for the caller to destroy). Default: returns
        (an engine whose ``create`` does not wait has nothing to wait for here either)."""
        return None

    def pool_report(self) -> PoolReport | None:
        """The warm pools of this runtime for the operator (metrics), or None when it
        keeps none. Default: None."""
        return None

    def close(self) -> None:
        """Release what this instance holds in-process (thread pools, handles); labs keep
        running. Default: nothing to release."""
        return None

    def stop_builds(self) -> None:
        """A shutdown: creates that have not begun building raise :class:`BuildsStopped`
        instead of waiting their turn (builds under way finish). Default: nothing waits."""
        return None

    @property
    def engine_name(self) -> str:
        """The engine's name as configured in ``FORGE_RUNTIME_ENGINE`` (for messages)."""
        return type(self).__name__
