"""``trim_neighbours``, ``trim_conntrack``, ``trim_traffic_control`` and ``trim_nexthops`` of
``LocalRuntime`` (a mixin, like ``LabTeardown``): what a learner with NET_ADMIN piles up in
the machine's kernel tables (neighbour entries, connection-tracking entries, queueing
disciplines and classes, nexthop objects), which no lab's memory limit bounds, taken back
from the hosts holding more than a lab needs (modules ``neighbours``, ``conntrack``,
``traffic_control``, ``nexthops``).
"""

from __future__ import annotations

import builtins
import functools
import os
from collections.abc import Callable

from forge.runtime.local import conntrack, neighbours, nexthops, traffic_control
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.reconcile import read_meta


class LabTrims:
    """The reaper's trims of the machine-wide kernel tables, host by NET_ADMIN host."""

    names: Names

    def trim_neighbours(self) -> builtins.list[tuple[str, str, int]]:
        """Remove the permanent neighbour entries of each NET_ADMIN lab host holding more
        than ``neighbours.HOST_LIMIT``, and its learned ones past ``LEARNED_LIMIT``, looked
        at only while the machine's neighbour tables hold more than
        ``neighbours.GUARD_ENTRIES``, and its proxy entries past ``HOST_LIMIT`` and bridge
        forwarding entries past ``FDB_LIMIT``, which no machine count shows, always (module
        ``neighbours``); (lab, host, entries removed) for each."""
        entries = neighbours.machine_entries() > neighbours.GUARD_ENTRIES
        return self._trim_net_admin_hosts(
            functools.partial(neighbours.trim_host, entries=entries))

    def trim_conntrack(self) -> builtins.list[tuple[str, str, int]]:
        """Flush the connection-tracking table of each NET_ADMIN lab host holding more than
        ``conntrack.HOST_LIMIT`` entries, looked at only while the machine holds more than
        ``conntrack.GUARD_ENTRIES`` (module ``conntrack``); (lab, host, entries removed)
        for each."""
        held = conntrack.machine_entries()
        if held is not None and held <= conntrack.GUARD_ENTRIES:
            return []
        return self._trim_net_admin_hosts(conntrack.trim_host)

    def trim_traffic_control(self) -> builtins.list[tuple[str, str, int]]:
        """Delete the queueing disciplines (and their classes and filters) of each NET_ADMIN
        lab host holding more than ``traffic_control.HOST_LIMIT`` qdiscs, classes and filters
        (module ``traffic_control``); (lab, host, objects removed) for each."""
        return self._trim_net_admin_hosts(traffic_control.trim_host)

    def trim_nexthops(self) -> builtins.list[tuple[str, str, int]]:
        """Delete the nexthop objects of each NET_ADMIN lab host holding more than
        ``nexthops.HOST_LIMIT`` (module ``nexthops``); (lab, host, nexthops removed) for
        each."""
        return self._trim_net_admin_hosts(nexthops.trim_host)

    def _trim_net_admin_hosts(
            self, trim: Callable[[str], int]) -> builtins.list[tuple[str, str, int]]:
        """``trim(namespace)`` on every NET_ADMIN host of every lab; (lab, host, what it
        removed) for each host where that was something."""
        trimmed: builtins.list[tuple[str, str, int]] = []
        try:
            names = sorted(os.listdir(self.names.state_dir))
        except FileNotFoundError:
            return []
        for name in names:
            parsed = self.names.parse(name)
            if parsed is None or parsed[1] is not None:
                continue
            lab_id = parsed[0]
            for host, facts in read_meta(self.names, lab_id).get("hosts", {}).items():
                if "NET_ADMIN" not in facts.get("caps", ()):
                    continue
                try:
                    removed = trim(self.names.host_ns(lab_id, host))
                except OSError:  # the host is going (a destroy under way)
                    continue
                if removed:
                    trimmed.append((lab_id, host, removed))
        return trimmed
