"""Names of every kernel object and path of a lab, and parsing them back.

All names derive from a validated prefix, a validated lab id and validated host names,
joined with dots (which none of them may contain), so a name parses back unambiguously.
That lets ``list()`` rebuild the set of labs from what the kernel holds after a crash.
Interface names live inside the lab's own namespaces, except the egress uplink, whose
global name is the prefix plus a 10-hex token derived from the lab id (<= 15 chars).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from forge.runtime.base import SpecError
from forge.runtime.plan import HOST_RE, validate_lab_id

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,4}\Z")


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is 1-5 chars of ``[a-z][a-z0-9]*``."""
    if not PREFIX_RE.fullmatch(prefix):
        raise SpecError("prefix", "must be 1-5 characters of [a-z][a-z0-9]")
    return prefix


@dataclass(frozen=True)
class Names:
    """Name scheme of one runtime instance (prefix + state directory)."""

    prefix: str
    state_dir: str

    def lab(self, lab_id: str) -> str:
        """Common stem for the lab's namespaces, cgroup and state directory."""
        return f"{self.prefix}.{validate_lab_id(lab_id)}"

    def switch_ns(self, lab_id: str) -> str:
        """Namespace holding the lab's bridges."""
        return f"{self.lab(lab_id)}.sw"

    def gateway_ns(self, lab_id: str) -> str:
        """Namespace of the lab's egress gateway (allowlist labs only)."""
        return f"{self.lab(lab_id)}.gw"

    def host_ns(self, lab_id: str, host: str) -> str:
        """Network namespace of one lab host."""
        if not HOST_RE.fullmatch(host):
            raise SpecError("host", "must match [a-z][a-z0-9-]{0,30}")
        return f"{self.lab(lab_id)}.h.{host}"

    def uplink(self, lab_id: str) -> str:
        """Global (egress-namespace side) name of the gateway uplink veth."""
        token = hashlib.sha256(validate_lab_id(lab_id).encode()).hexdigest()[:10]
        return f"{self.prefix}{token}"

    def lab_dir(self, lab_id: str) -> str:
        """Per-lab state directory: its metadata (``meta.json``) and the mount point of
        its disk (``data_root``), which holds everything else."""
        return os.path.join(self.state_dir, self.lab(lab_id))

    def host_dir(self, lab_id: str, host: str) -> str:
        """Per-host state directory (its read-only /opt/forge, init pid and service log),
        on the lab's disk next to the hosts' data dirs (``.hosts`` is no host's name; a
        tmpfs makes and drops these few inodes for a fraction of the machine file
        system's CPU, and caps the service log with the lab's disk)."""
        self.host_ns(lab_id, host)
        return os.path.join(self.data_root(lab_id), ".hosts", host)

    def claim_marker(self, lab_id: str) -> str:
        """A file saying pool lab ``lab_id`` is being (or was) claimed: from before its
        state directory takes the scenario's id until its old names are gone, it keeps
        what is left of the pool id this runtime's own (``reconcile.discover``)."""
        return os.path.join(self.state_dir, ".claimed", self.lab(lab_id))

    def data_root(self, lab_id: str) -> str:
        """Mount point of the lab's disk (a size-capped tmpfs, see ``disk``)."""
        return os.path.join(self.lab_dir(lab_id), "data")

    def etc_dir(self, lab_id: str) -> str:
        """The lab's identity files bound over /etc (passwd, group, hosts, resolv.conf), on
        its disk like ``host_dir`` (``.etc`` is no host's name)."""
        return os.path.join(self.data_root(lab_id), ".etc")

    def data_dir(self, lab_id: str, host: str) -> str:
        """A host's writable trees on the lab's disk (home, workspace, srv, tmp, var-tmp)."""
        self.host_ns(lab_id, host)
        return os.path.join(self.data_root(lab_id), host)

    def parse(self, name: str) -> tuple[str, str | None] | None:
        """(lab_id, host or None) for a namespace/cgroup/dir name of this prefix, else None.

        The host part is None for the lab's own objects (switch, gateway, cgroup).
        """
        parts = name.split(".")
        if len(parts) < 2 or parts[0] != self.prefix:
            return None
        try:
            lab_id = validate_lab_id(parts[1])
        except SpecError:
            return None
        if len(parts) == 2 or (len(parts) == 3 and parts[2] in ("sw", "gw")):
            return lab_id, None
        if len(parts) == 4 and parts[2] == "h" and HOST_RE.fullmatch(parts[3]):
            return lab_id, parts[3]
        return None
