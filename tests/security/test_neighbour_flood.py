"""Attack: a learner with NET_ADMIN fills the machine's neighbour table (DQ).

The kernel keeps one neighbour table for the whole machine; entries added as `permanent`
are never garbage-collected and are not charged to the lab's memory cgroup. From the
learner host of a NET_ADMIN lab (ccna, vlan-segment, nft-firewall: the PRO plan),
`ip -batch` with 20,000 `neigh add … nud permanent` lines took 0.5 s and held ~10 MB of
kernel memory for the lab's life, outside its 256 MB limit: a gigabyte in two minutes.
Now the orchestrator's reaper pass trims them: a NET_ADMIN host holding more than
`neighbours.HOST_LIMIT` permanent entries has them removed (looked at only while the
machine's tables are fuller than `neighbours.GUARD_ENTRIES`).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import neighbours

from ..support.one_lab import one_lab

pytestmark = pytest.mark.root


def _flood(count: int) -> str:
    """`ip -batch` lines adding ``count`` permanent entries on the host's eth0."""
    return "".join(f"neigh add 10.201.{i // 250}.{i % 250 + 1} lladdr 02:00:00:00:00:01 "
                   "nud permanent dev eth0\n" for i in range(count))


def test_a_host_piling_up_permanent_neighbours_has_them_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = "nf-" + secrets.token_hex(4)
    spec = LabSpec(lab, [SubnetSpec("lan", "10.201.0.0/16")], [
        HostSpec("flood", networks=[("lan", "10.201.255.10")], capabilities=["NET_ADMIN"]),
        HostSpec("tidy", networks=[("lan", "10.201.255.11")], capabilities=["NET_ADMIN"]),
        HostSpec("plain", networks=[("lan", "10.201.255.12")]),
    ])
    with one_lab(tmp_path / "state", spec) as rt:
        before = neighbours.machine_entries()
        flooded = rt.exec(lab, "flood", ["ip", "-batch", "-"], stdin=_flood(600).encode())
        assert flooded.exit_code == 0, flooded.stderr_text
        tidy = rt.exec(lab, "tidy", ["ip", "-batch", "-"], stdin=_flood(3).encode())
        assert tidy.exit_code == 0, tidy.stderr_text
        assert neighbours.machine_entries() >= before + 600  # the machine's table, not the lab's

        # Below the machine-wide guard nothing is looked at (the cheap common case).
        monkeypatch.setattr(neighbours, "GUARD_ENTRIES", 10**9)
        assert rt.trim_neighbours() == []
        monkeypatch.setattr(neighbours, "GUARD_ENTRIES", 0)
        assert rt.trim_neighbours() == [(lab, "flood", 600)]
        listed = rt.exec(lab, "flood", ["ip", "neigh", "show", "nud", "permanent"])
        assert listed.stdout_text.strip() == ""
        # A host keeping a few static entries, as a lab task may ask, keeps them.
        kept = rt.exec(lab, "tidy", ["ip", "neigh", "show", "nud", "permanent"])
        assert len(kept.stdout_text.splitlines()) == 3
        assert rt.trim_neighbours() == []


def _learned(count: int, how: str = "nud stale") -> str:
    """`ip -batch` lines adding ``count`` learned (stale) entries on the host's eth0: what
    a sweep of new addresses leaves, made at once and kept the full minute a stale entry
    may live (a sweep's own entries are failed ones the kernel may drop early)."""
    return "".join(f"neigh add 10.202.{i // 250}.{i % 250 + 1} lladdr 02:00:00:00:00:02 "
                   f"{how} dev eth0\n" for i in range(count))


def test_a_host_piling_up_learned_neighbours_has_them_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NET_ADMIN learner giving their host an address in a /8 and sending to one new
    address after another made 19,000 learned entries a second (ES): not permanent, so the
    trim above passed them by, while they held the machine's table."""
    lab = "nl-" + secrets.token_hex(4)
    spec = LabSpec(lab, [SubnetSpec("lan", "10.202.0.0/16")], [
        HostSpec("flood", networks=[("lan", "10.202.255.10")], capabilities=["NET_ADMIN"]),
        HostSpec("tidy", networks=[("lan", "10.202.255.11")], capabilities=["NET_ADMIN"]),
    ])
    many = neighbours.LEARNED_LIMIT + 500
    with one_lab(tmp_path / "state", spec) as rt:
        flooded = rt.exec(lab, "flood", ["ip", "-batch", "-"], stdin=_learned(many).encode())
        assert flooded.exit_code == 0, flooded.stderr_text
        tidy = rt.exec(lab, "tidy", ["ip", "-batch", "-"], stdin=_learned(200).encode())
        assert tidy.exit_code == 0, tidy.stderr_text
        swept = rt.exec(lab, "flood", ["bash", "-c", (
            "for i in $(seq 1 300); do { echo > /dev/udp/10.202.100.$i/9; } 2>/dev/null; "
            "done; true")])
        assert swept.exit_code == 0, swept.stderr_text

        monkeypatch.setattr(neighbours, "GUARD_ENTRIES", 0)
        trimmed = rt.trim_neighbours()
        assert [(lab_id, host) for lab_id, host, _ in trimmed] == [(lab, "flood")]
        assert trimmed[0][2] >= many
        left = rt.exec(lab, "flood", ["bash", "-c", "ip neigh show dev eth0 | wc -l"])
        assert int(left.stdout_text.split()[-1]) < neighbours.LEARNED_LIMIT
        # A host holding what a lab's work leaves (a sweep of a /24 is 254) keeps it.
        kept = rt.exec(lab, "tidy", ["bash", "-c", "ip neigh show dev eth0 | wc -l"])
        assert int(kept.stdout_text.split()[-1]) == 200
        assert rt.trim_neighbours() == []


def test_entries_the_kernel_never_collects_are_trimmed_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nud noarp extern_learn`: neither permanent nor ever collected by the kernel (an
    externally learned entry is exempt), so a NET_ADMIN learner could pile them up for the
    lab's life; the trim counts them with the learned ones."""
    lab = "nx-" + secrets.token_hex(4)
    spec = LabSpec(lab, [SubnetSpec("lan", "10.202.0.0/16")], [
        HostSpec("flood", networks=[("lan", "10.202.255.10")], capabilities=["NET_ADMIN"]),
    ])
    many = neighbours.LEARNED_LIMIT + 100
    with one_lab(tmp_path / "state", spec) as rt:
        added = rt.exec(lab, "flood", ["ip", "-batch", "-"],
                        stdin=_learned(many, "nud noarp extern_learn").encode())
        assert added.exit_code == 0, added.stderr_text
        monkeypatch.setattr(neighbours, "GUARD_ENTRIES", 0)
        trimmed = rt.trim_neighbours()
        assert [(lab_id, host) for lab_id, host, _ in trimmed] == [(lab, "flood")]
        assert trimmed[0][2] >= many


def test_proxy_entries_are_trimmed_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ip neigh add proxy …`: the kernel keeps proxy entries apart from the others, never
    collects them, has no limit on them and counts them nowhere the machine shows; the
    neighbour dump the trim read does not list them either. A NET_ADMIN learner added
    10,000 in 0.7 s (0.5 MB of kernel memory the lab's cgroup did not see) and every trim
    passed them by, however full the machine's tables were. Now each host's proxy entries
    are looked at on every pass, below the guard too."""
    lab = "np-" + secrets.token_hex(4)
    spec = LabSpec(lab, [SubnetSpec("lan", "10.202.0.0/16")], [
        HostSpec("flood", networks=[("lan", "10.202.255.10")], capabilities=["NET_ADMIN"]),
        HostSpec("tidy", networks=[("lan", "10.202.255.11")], capabilities=["NET_ADMIN"]),
    ])
    many = neighbours.HOST_LIMIT + 300
    proxies = "".join(f"neigh add proxy 10.202.{i // 250}.{i % 250 + 1} dev eth0\n"
                      for i in range(many))
    with one_lab(tmp_path / "state", spec) as rt:
        added = rt.exec(lab, "flood", ["ip", "-batch", "-"], stdin=proxies.encode())
        assert added.exit_code == 0, added.stderr_text
        kept = rt.exec(lab, "tidy", ["ip", "neigh", "add", "proxy", "10.202.9.9", "dev", "eth0"])
        assert kept.exit_code == 0, kept.stderr_text
        monkeypatch.setattr(neighbours, "GUARD_ENTRIES", 10**9)  # no machine count sees them
        assert rt.trim_neighbours() == [(lab, "flood", many)]
        left = rt.exec(lab, "flood", ["ip", "neigh", "show", "proxy"])
        assert left.stdout_text.strip() == ""
        # A host with a proxy entry or two, as a lab task may ask, keeps them.
        tidy = rt.exec(lab, "tidy", ["ip", "neigh", "show", "proxy"])
        assert "10.202.9.9" in tidy.stdout_text
        assert rt.trim_neighbours() == []
