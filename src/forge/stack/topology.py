"""What `forge up` runs: the process list of a one-machine installation (issue 15 item 7).

One spawn_service, one scoreboard and N orchestrators ("lab nodes"), each node with its own
id (`node-1` …), URL, port and runtime prefix, so the kernel objects of two nodes never share
a name and each node's labs can be found (and torn down) by its prefix. Node 1 keeps the
orchestrator port (8083 by default: `ORCHESTRATOR_URL` and the runbook stay true) and the
configured `FORGE_RUNTIME_PREFIX`, so `--nodes 1` is exactly the single-orchestrator platform.

Where each process keeps its files is decided in one place, `storage_root_for`: today every
process shares the stack's root; `--separate-storage` gives each its own root under it
(ready for services that share no disk, issue 15 item 4).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from forge.config.secrets import DEV_SECRETS_FILE

MAX_NODES = 8
NATS_CLUSTER_SIZES = (1, 3, 5)
SERVICES = ("orchestrator", "scoreboard", "spawn")
DEFAULT_PORTS = {"spawn": 8082, "orchestrator": 8083, "scoreboard": 8086}
_PREFIX_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_MAX_PREFIX = 5  # forge.runtime.local.kernel_names.PREFIX_RE: [a-z][a-z0-9]{0,4}


class TopologyError(ValueError):
    """A flag or variable makes the topology impossible; the message names it."""


def check_nodes(count: int) -> int:
    """`--nodes`: 1 to MAX_NODES lab nodes."""
    if not 1 <= count <= MAX_NODES:
        raise TopologyError(f"--nodes must be between 1 and {MAX_NODES} (lab nodes on this "
                            f"machine), got {count}")
    return count


def check_nats_cluster(size: int) -> int:
    """`--nats-cluster`: 1 (one embedded server), 3 or 5 servers (an odd JetStream quorum)."""
    if size not in NATS_CLUSTER_SIZES:
        raise TopologyError(f"--nats-cluster must be 1, 3 or 5 (an odd number of NATS servers "
                            f"for a JetStream quorum), got {size}")
    return size


def node_id(index: int) -> str:
    """Id of lab node `index` (1-based): `node-1`, `node-2` …"""
    return f"node-{index}"


def node_prefix(base: str, index: int) -> str:
    """Runtime prefix of node `index`: node 1 keeps `base`; node i >= 2 gets `base+"n"+i`
    for a base of 1-3 characters (`fg` → `fgn2`) and `base[:4]+i` for a longer one
    (`fgfm` → `fgfm2`).

    All of a 4-character base is kept: the first three alone made every installation on a
    machine whose prefixes differ only after them (`fgfa`, `fgfb` …) derive the same node
    prefix (`fgfn2`), so their nodes shared one runtime prefix and saw each other's labs.
    Prefixes are 1-5 characters of [a-z][a-z0-9] and kernel names join them with dots, so
    distinct prefixes can never name the same namespace, cgroup or uplink.
    """
    if not (1 <= len(base) <= _MAX_PREFIX and base[0].isalpha()
            and all(c in _PREFIX_CHARS for c in base)):
        raise TopologyError("FORGE_RUNTIME_PREFIX must be 1-5 characters of [a-z][a-z0-9]")
    if index == 1:
        return base
    return f"{base}n{index}" if len(base) <= 3 else f"{base[:4]}{index}"


def storage_root_for(stack_root: Path, name: str, separate: bool) -> Path:
    """STORAGE_ROOT of process `name` (`spawn`, `scoreboard`, `node-2` …): the stack's own
    root (today: the services read each other's files), or with `separate`
    `<stack_root>/roots/<name>` (services that share no disk, issue 15 item 4)."""
    return stack_root / "roots" / name if separate else stack_root


@dataclass(frozen=True)
class ProcessSpec:
    """One service process: which service, its port (None: picked when binding), its env."""

    name: str
    service: str
    port: int | None
    storage_root: Path
    node: str | None = None
    prefix: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def environ(self, host: str, port: int) -> dict[str, str]:
        """Variables this process gets on top of the stack's: its storage root and, for a
        lab node, its id, URL and runtime prefix."""
        env = dict(self.env)
        env["STORAGE_ROOT"] = str(self.storage_root)
        if self.node is not None and self.prefix is not None:
            env.update(FORGE_NODE_ID=self.node, FORGE_NODE_URL=f"http://{host}:{port}",
                       FORGE_RUNTIME_PREFIX=self.prefix)
        return env


@dataclass(frozen=True)
class Topology:
    """Every process `forge up` starts (NATS aside) and the NATS cluster size."""

    stack_root: Path
    processes: tuple[ProcessSpec, ...]
    nats_servers: int = 1
    separate_storage: bool = False

    @property
    def nodes(self) -> tuple[ProcessSpec, ...]:
        """The lab nodes (orchestrators), node 1 first."""
        return tuple(p for p in self.processes if p.node is not None)

    def storage_roots(self) -> list[Path]:
        """Every distinct STORAGE_ROOT in use, stack root first."""
        roots = [self.stack_root]
        for proc in self.processes:
            if proc.storage_root not in roots:
                roots.append(proc.storage_root)
        return roots

    def prepare_roots(self) -> None:
        """Create every process's own storage root (and the directories above it, up to
        the stack's root) owner-only (0700); the stack's root is left as it is.

        In dev the secrets are generated per storage root: each own root gets a copy
        (0600) of the stack's, as machines of one installation share their configuration.
        """
        dev_secrets = self.stack_root / DEV_SECRETS_FILE
        for root in self.storage_roots()[1:]:
            for part in reversed([root, *root.relative_to(self.stack_root).parents][:-1]):
                path = part if part.is_absolute() else self.stack_root / part
                path.mkdir(exist_ok=True, mode=0o700)
                os.chmod(path, 0o700)
            target = root / DEV_SECRETS_FILE
            if dev_secrets.is_file() and not target.exists():
                target.parent.mkdir(exist_ok=True, mode=0o700)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(dev_secrets.read_bytes())


def node_prefixes(base_prefix: str, nodes: int) -> list[str]:
    """Each node's runtime prefix; TopologyError when two would be the same (checked by
    `forge up` before it creates anything)."""
    prefixes = [node_prefix(base_prefix, i) for i in range(1, nodes + 1)]
    if len(set(prefixes)) != len(prefixes):
        raise TopologyError(f"FORGE_RUNTIME_PREFIX={base_prefix} collides with the prefix "
                            f"derived for another node ({', '.join(prefixes)}); choose "
                            "another prefix")
    return prefixes


def plan(stack_root: Path, ports: Mapping[str, int], *, base_prefix: str = "fg",
         nodes: int = 1, nats_servers: int = 1, separate_storage: bool = False,
         db_url: str | None = None) -> Topology:
    """The process list: spawn, scoreboard and `nodes` orchestrators.

    With `separate_storage` and no `db_url` (SQLite under each root would give every
    process its own database), every process is pointed at the stack's SQLite database.
    """
    check_nodes(nodes)
    check_nats_cluster(nats_servers)
    prefixes = node_prefixes(base_prefix, nodes)
    shared: dict[str, str] = {}
    if separate_storage and not db_url:
        shared["FORGE_DB_URL"] = f"sqlite:///{stack_root / 'forge.db'}"
    procs: list[ProcessSpec] = []
    for i, prefix in enumerate(prefixes, start=1):
        name = "orchestrator" if i == 1 else f"orchestrator-{i}"
        procs.append(ProcessSpec(
            name, "orchestrator", ports["orchestrator"] if i == 1 else None,
            storage_root_for(stack_root, node_id(i), separate_storage),
            node=node_id(i), prefix=prefix, env=shared))
    for service in ("scoreboard", "spawn"):
        procs.append(ProcessSpec(service, service, ports[service],
                                 storage_root_for(stack_root, service, separate_storage),
                                 env=shared))
    return Topology(stack_root, tuple(procs), nats_servers, separate_storage)
