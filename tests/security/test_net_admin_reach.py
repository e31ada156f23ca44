"""Attack: a learner whose host is approved NET_ADMIN reaches past the host's own network.

A host's link to its lab switch is a veth pair, so the kernel gives the host's network
namespace an id for the switch's (IFLA_LINK_NETNSID). rtnetlink takes such an id as the
target of a request (IFLA_TARGET_NETNSID) and asks for NET_ADMIN in the user namespace
owning the *target*; a host whose capabilities were held in the machine's user namespace
could list the switch's links and create links there (a bridge, a veth into another
subnet of the lab: around the router the exercise is about), or take down the links of
the lab's other hosts. Each host now lives in a user namespace of its own that owns its
network namespace: NET_ADMIN works on its own links and nowhere else."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.runtime.local.reconcile import init_pid
from tests.runtime.helpers import leftovers
from tests.support.one_lab import one_lab

pytestmark = pytest.mark.root

PROBE = (Path(__file__).parent / "netns_id_probe.py").read_text()


def _links(netns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", netns, "-o", "link", "show"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def _service(rt: LocalRuntime, lab: str, host: str, comm: str) -> int:
    """The pid of the host's process named ``comm`` (from the host's cgroup)."""
    for pid in rt.cgroups.pids(rt.names.lab(lab), host):
        with open(f"/proc/{pid}/comm") as fh:
            if fh.read().strip() == comm:
                return pid
    raise AssertionError(f"no {comm} in host {host}")


def test_net_admin_stays_on_the_hosts_own_network(tmp_path: Path) -> None:
    lab = "reach-" + secrets.token_hex(3)
    state = tmp_path / "state"
    spec = LabSpec(lab, [SubnetSpec("a", "10.78.1.0/24"), SubnetSpec("b", "10.78.2.0/24")], [
        HostSpec("adm", networks=[("a", "10.78.1.10")], capabilities=["NET_ADMIN"],
                 files={"/srv/probe.py": PROBE}),
        HostSpec("other", networks=[("b", "10.78.2.10")], capabilities=["NET_ADMIN"],
                 command="sleep 3600"),
    ])
    with one_lab(state, spec) as rt:
        prefix = rt.names.prefix
        switch = rt.names.switch_ns(lab)
        before = _links(switch)
        res = rt.exec(lab, "adm", ["python3", "/srv/probe.py"])
        assert res.exit_code == 0, res.stderr_text
        report = json.loads(res.stdout_text)
        assert report["nsids"], report  # the switch is named by id: the attack can be tried
        for nsid in map(str, report["nsids"]):
            assert report["read"][nsid] in ("EACCES", "EPERM"), report
            assert report["create"][nsid] in ("EACCES", "EPERM"), report
        assert _links(switch) == before
        # The capability still works where it is approved: on the host's own links.
        own = rt.exec(lab, "adm", ["ip", "link", "add", "mine0", "type", "veth", "peer", "name", "mine1"])
        assert own.exit_code == 0, own.stderr_text
        assert "mine0" in _links(rt.names.host_ns(lab, "adm"))
        # Each host has a user namespace of its own (its service and its terminals alike),
        # none of them the machine's; the sandbox's own root processes stay in the machine's.
        machine = os.readlink("/proc/self/ns/user")
        seen = {name: rt.exec(lab, name, ["readlink", "/proc/self/ns/user"]).stdout_text.strip()
                for name in ("adm", "other")}
        assert machine not in seen.values() and len(set(seen.values())) == 2, seen
        init = init_pid(rt.names, lab, "other")
        assert os.readlink(f"/proc/{init}/ns/user") == machine
        service = _service(rt, lab, "other", "sleep")
        assert os.readlink(f"/proc/{service}/ns/user") == seen["other"]
    assert leftovers(prefix, str(state)) == []
