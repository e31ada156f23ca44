"""``trim_neighbours``, ``trim_conntrack``, ``trim_traffic_control``, ``trim_nexthops``,
``trim_address_labels``, ``trim_routes`` and ``trim_listen_queues`` of ``LocalRuntime`` (a
mixin, like ``LabTeardown``): what a learner with NET_ADMIN piles up in the machine's
kernel tables (neighbour entries, connection-tracking entries, queueing disciplines and
classes, nexthop objects, IPv6 address labels, routes and addresses), and what any learner
leaves in listeners' accept queues, which no lab's memory limit bounds, taken back from
the hosts holding more than a lab needs (modules ``neighbours``, ``conntrack``,
``traffic_control``, ``nexthops``, ``addrlabels``, ``route_trim``, ``listen_queues``).
"""

from __future__ import annotations

import builtins
import functools
import os
from collections.abc import Callable

from forge.runtime.local import (
    addrlabels,
    conntrack,
    listen_queues,
    neighbours,
    nexthops,
    route_trim,
    traffic_control,
)
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.reconcile import read_meta


class LabTrims:
    """The reaper's trims of the machine-wide kernel tables, host by NET_ADMIN host."""

    names: Names
    _sealed_marker: Callable[[str], str]  # LabAccess's: seal writes it before its fence

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

    def trim_address_labels(self) -> builtins.list[tuple[str, str, int]]:
        """Delete the IPv6 address labels but the kernel's own of each NET_ADMIN lab host
        holding more than ``addrlabels.HOST_LIMIT`` (module ``addrlabels``); (lab, host,
        labels removed) for each."""
        return self._trim_net_admin_hosts(addrlabels.trim_host)

    def trim_listen_queues(self) -> builtins.list[tuple[str, str, int]]:
        """Abort the TCP listeners holding unaccepted connections on each lab host (any,
        no capability is needed to fill them) whose listeners hold more than
        ``listen_queues.HOST_LIMIT`` together, half-open ones counted while the machine
        holds more than ``listen_queues.HALF_OPEN_GUARD`` (module ``listen_queues``);
        (lab, host, connections freed) for each."""
        held = listen_queues.machine_request_socks()
        half_open_too = held is None or held > listen_queues.HALF_OPEN_GUARD
        return self._trim_net_admin_hosts(
            functools.partial(listen_queues.trim_host, half_open_too=half_open_too),
            every_host=True)

    def trim_routes(self) -> builtins.list[tuple[str, str, int]]:
        """Delete the addresses and routes a NET_ADMIN lab host holds past
        ``route_trim.HOST_LIMIT`` of either, but the runtime's own, in each lab not sealed
        (its grading sources are the runtime's too: ``route_trim.trim_fence``); (lab,
        host, addresses and routes removed) for each."""
        trimmed: builtins.list[tuple[str, str, int]] = []
        for lab_id in self._lab_ids():
            # (a host made before the template's routes were recorded is left alone)
            hosts = {host: facts for host, facts
                     in read_meta(self.names, lab_id).get("hosts", {}).items()
                     if "NET_ADMIN" in facts.get("caps", ()) and "routes" in facts}
            fence = route_trim.try_fence(self.names.lab_dir(lab_id)) if hosts else None
            if fence is None:
                continue  # nothing to trim, or sealing now (a sealed lab is left alone)
            try:
                if os.path.exists(self._sealed_marker(lab_id)):
                    continue
                for host, facts in hosts.items():
                    planned = [(str(d), str(v)) for d, v in facts["routes"]]
                    try:
                        removed = route_trim.trim_host(self.names.host_ns(lab_id, host),
                                                       list(facts["addresses"]), planned)
                    except OSError:  # the host is going (a destroy under way)
                        continue
                    if removed:
                        trimmed.append((lab_id, host, removed))
            finally:
                os.close(fence)
        return trimmed

    def holds_labs(self) -> bool:
        """Whether the state directory names any lab: every trim looks only at those labs'
        hosts, so with none each would find nothing. Stops at the first lab's entry."""
        try:
            with os.scandir(self.names.state_dir) as entries:
                return any((parsed := self.names.parse(entry.name)) is not None
                           and parsed[1] is None for entry in entries)
        except FileNotFoundError:
            return False

    def _lab_ids(self) -> builtins.list[str]:
        """The ids of the labs in the state directory (not their hosts'), sorted."""
        try:
            names = sorted(os.listdir(self.names.state_dir))
        except FileNotFoundError:
            return []
        return [parsed[0] for parsed in map(self.names.parse, names)
                if parsed is not None and parsed[1] is None]

    def _trim_net_admin_hosts(
            self, trim: Callable[[str], int],
            every_host: bool = False) -> builtins.list[tuple[str, str, int]]:
        """``trim(namespace)`` on every NET_ADMIN host of every lab (``every_host``: on
        every host); (lab, host, what it removed) for each host where that was something."""
        trimmed: builtins.list[tuple[str, str, int]] = []
        for lab_id in self._lab_ids():
            for host, facts in read_meta(self.names, lab_id).get("hosts", {}).items():
                if not every_host and "NET_ADMIN" not in facts.get("caps", ()):
                    continue
                try:
                    removed = trim(self.names.host_ns(lab_id, host))
                except OSError:  # the host is going (a destroy under way)
                    continue
                if removed:
                    trimmed.append((lab_id, host, removed))
        return trimmed
