"""Gaming the nft-firewall lab with the order of the grader's probes (red team, this stop).

Each criterion probes the allowed source first (the office PC for web, the admin
workstation for SSH) and the sources that must be refused after it. A router that matches
no source at all for a port, but lets through only the *first* new connection to it in a
minute (`limit rate over 1/minute burst 1 packets drop`), answers the grader's reach probe
and then drops every later attempt, the refused hosts' included: the policy "SSH from the
admin workstation only" is not in place (the office PC gets SSH whenever it asks first),
yet every criterion passed (1.0). The grader must see a refused source refused also before,
and the allowed source served also after, the probes of the others.

Real LocalRuntime, the shipped template, graded as the orchestrator grades.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.authoring.harness import Harness, LabRun
from forge.grading.runner import grade
from forge.runtime.base import ExecResult

from ..support.shipped_labs import shipped_harness

pytestmark = pytest.mark.root

def accepting_chain(*rules: str) -> str:
    """A script for fw1: the policy's web, SSH and database ports read into $web, $ssh and
    $db, then a forward chain that accepts by default with `rules`."""
    body = "".join(f"    {rule}\n" for rule in rules)
    return r"""
set -euo pipefail
port() { awk -v s="$1" '$1 == s {split($3, a, "/"); print a[2]}' /workspace/policy.txt; }
web=$(port web); ssh=$(port ssh); db=$(port database)
nft delete table inet t 2>/dev/null || true
nft -f - <<NFT
table inet t {
  chain forward {
    type filter hook forward priority filter; policy accept;
""" + body + """  }
}
NFT
"""


# No rule names any address: the database port is dropped, and web and SSH each admit
# one new connection a minute, from whoever comes first (the outside host included).
# `nft -f` with a fresh table starts each limit's bucket full.
FIRST_COMER = accepting_chain(
    "tcp dport $db drop",
    "tcp dport $web ct state new limit rate over 1/minute burst 1 packets drop",
    "tcp dport $ssh ct state new limit rate over 1/minute burst 1 packets drop")
BANNER = "read -r port; timeout 3 nc -w 3 10.65.2.10 \"$port\" </dev/null"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Labs of the shipped nft-firewall template on a runtime of this module's own."""
    with shipped_harness(tmp_path_factory.mktemp("nft"), "nft-firewall", "w",
                         (("server", "web_port"), ("server", "ssh_port"), ("server", "db_port"),
                          ("server", "backup_port"))) as h:
        yield h


def banner(run: LabRun, host: str, port: str) -> ExecResult:
    """What `host` gets from the server's `port` (run as the lab's processes run)."""
    return run.harness.runtime.exec(run.id, host, shell=BANNER,
                                    stdin=f"{port}\n".encode(), timeout=10)


def graded_on(run: LabRun, *criteria: str) -> dict[str, bool]:
    """Which of `criteria` pass, their checks alone run in template order as grading runs
    them (seals the lab): a third of the time of the whole grading, most of it the
    default drop's refused probes."""
    spec = run.rendered.spec
    kept = [c for c in spec.success_criteria if c.id in criteria]
    template = run.rendered.model_copy(
        update={"spec": spec.model_copy(update={"success_criteria": kept})})
    try:
        with tempfile.TemporaryDirectory(prefix="forge-fw-") as scratch:
            results = grade(run.harness.runtime, run.id, template, Path(scratch) / "ev")
    finally:
        run.harness.release(run.id)
    return {c.id: all(r.passed for r in results if r.criterion_id == c.id) for c in kept}


def test_a_port_for_whoever_comes_first_is_not_a_source_policy(harness: Harness) -> None:
    run = harness.launch()
    run.must(FIRST_COMER, "the first-comer ruleset")
    # In place: the hosts the policy refuses get the banner when they ask first (the
    # office PC SSH, the outside host web); the allowed host, asking next, gets nothing.
    office = banner(run, "office", run.values["ssh_port"])
    assert office.stdout_text.startswith("ssh "), office
    admin = banner(run, "admin", run.values["ssh_port"])
    assert not admin.stdout_text.strip(), admin
    outside = banner(run, "outside", run.values["web_port"])
    assert outside.stdout_text.startswith("web "), outside
    # Loaded again (a full bucket) just before grading, as a learner would before Submit.
    run.must(FIRST_COMER, "the first-comer ruleset, reloaded")
    graded = run.grade()
    # Neither source policy is in place: neither criterion may pass (they did: 1.0).
    assert not graded.passed["ssh-from-admin-only"], graded
    assert not graded.passed["web-from-office"], graded
    assert graded.score <= 0.2, graded


# Red team, this stop: no default drop at all. The chain accepts; one rule drops the
# database port, two drop SSH and web from the wrong sources. Every probe of the three
# named ports behaves, so `default-drop` (which probed the database port alone) passed:
# 1.0, while the outside host reaches every other port of the DMZ and the office.
ACCEPT_POLICY = accepting_chain(
    "tcp dport $db drop",
    "tcp dport $ssh ip saddr != 10.65.1.20 drop",
    "tcp dport $web ip saddr != 10.65.1.0/24 drop")


def test_dropping_only_the_named_ports_is_no_default_drop(harness: Harness) -> None:
    run = harness.launch()
    run.must(ACCEPT_POLICY, "a policy-accept chain dropping the named ports")
    # In place: the outside host gets the banner of a server port the policy does not
    # name (nothing forwarded is dropped by default); the named ports behave.
    outside = banner(run, "outside", run.values["backup_port"])
    assert outside.stdout_text.startswith("backup "), outside
    assert not banner(run, "outside", run.values["db_port"]).stdout_text.strip()
    graded = run.grade()
    assert graded.passed["web-from-office"] and graded.passed["ssh-from-admin-only"], graded
    assert not graded.passed["default-drop"], graded


# Red team, this stop: one ruleset for every lab, written without reading the policy.
# The office LAN may reach the whole range the web port is drawn from (8000-8999), the
# admin workstation the SSH range (2200-2999), with a default drop and replies allowed.
# Every probe of the named ports behaved: 1.0, a signed PASS, in any nft-firewall lab,
# while the office reached a thousand ports of the DMZ server.
PORT_RANGES = r"""
set -euo pipefail
nft delete table inet t 2>/dev/null || true
nft -f - <<'NFT'
table inet t {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    ip saddr 10.65.1.0/24 ip daddr 10.65.2.10 tcp dport 8000-8999 accept
    ip saddr 10.65.1.20 ip daddr 10.65.2.10 tcp dport 2200-2999 accept
  }
}
NFT
"""


def test_opening_the_ranges_the_ports_come_from_is_no_default_drop(harness: Harness) -> None:
    run = harness.launch()
    run.must(PORT_RANGES, "ranges around the web and SSH ports")
    # In place: the office PC gets the banner of the service next to the web port, one
    # the policy does not name; the named ports behave.
    near = str(int(run.values["web_port"]) + 1)
    office = banner(run, "office", near)
    graded = run.grade()
    assert graded.passed["web-from-office"] and graded.passed["ssh-from-admin-only"], graded
    assert not graded.passed["default-drop"], graded
    assert graded.score < 1.0, graded
    assert office.stdout_text.startswith("other "), office


# Red team, this stop: the policy for the addresses the task names, not for the networks.
# SSH is accepted from every source but the office PC and the outside host (the two hosts
# whose probes must be refused), web from every source but the outside host: 1.0, while
# any other office or Internet host reached SSH. The office PC and the outside host now
# also probe from a grading address, random and added at seal, which no rule can list.
# Red team, next stop: the same by the probing hosts' MACs, read from fw1's neighbour
# table (`ether saddr != { … }`): the grading address left with the MAC the learner had
# seen, so its probes were denied too (1.0 again); the interface now gets a fresh MAC.
PROBED_DENIED = r"""
set -euo pipefail
port() { awk -v s="$1" '$1 == s {split($3, a, "/"); print a[2]}' /workspace/policy.txt; }
web=$(port web); ssh=$(port ssh)
mac() { timeout 2 bash -c "</dev/tcp/$1/1" 2>/dev/null || true; ip neigh show "$1" | awk '{print $5}'; }
office=$(mac 10.65.1.10); outside=$(mac 10.65.0.20)
[ -n "$office" ] && [ -n "$outside" ]
nft -f - <<NFT
table inet t {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    ip saddr != 10.65.0.20 ether saddr != $outside ip daddr 10.65.2.10 tcp dport $web accept
    ip saddr != { 10.65.1.10, 10.65.0.20 } ether saddr != { $office, $outside } ip daddr 10.65.2.10 tcp dport $ssh accept
  }
}
NFT
"""
SECONDARY = "ip -4 -o addr show secondary"


def test_denying_the_probing_hosts_addresses_is_no_source_policy(harness: Harness) -> None:
    run = harness.launch()
    run.must(PROBED_DENIED, "SSH for every source but the probing hosts'")
    # While the lab runs no host has a grading address, so no learner can learn one.
    rt = harness.runtime
    assert not rt.exec(run.id, "office", shell=SECONDARY, timeout=10).stdout_text.strip()
    # Sealed (as grading seals it): the office PC and the outside host got one, in their
    # subnet, no other host; grading seals again and keeps them (one each, not two).
    rt.seal(run.id)
    added = {}
    for host in ("office", "outside", "admin", "server", "learner"):
        res = rt.run_check(run.id, host, ["/bin/sh", "-c", SECONDARY], timeout=10)
        added[host] = [line.split()[3] for line in res.stdout_text.splitlines()]
    assert [a.rsplit(".", 1)[0] for a in added["office"] + added["outside"]] == [
        "10.65.1", "10.65.0"], added
    assert added["office"][0] not in ("10.65.1.1/24", "10.65.1.10/24", "10.65.1.20/24")
    assert added["outside"][0] not in ("10.65.0.1/24", "10.65.0.20/24"), added
    assert not (added["admin"] or added["server"] or added["learner"]), added
    graded = run.grade()
    assert not graded.passed["ssh-from-admin-only"], graded
    assert not graded.passed["web-from-office"], graded
    assert graded.passed["default-drop"], graded


# Red team, next stop: a router that remembers. Every web connection puts its source in a
# set for ten minutes; SSH is refused to the set and accepted from everyone else (the
# admin workstation by address first). Every criterion probed from the same addresses, the
# web probes first, so each probing address was refused SSH: 1.0, while any host that had
# not just used the web port got SSH. Each criterion now probes from an identity of its
# own on the office PC and the outside host (a sub-interface added at seal).
REMEMBERED = r"""
set -euo pipefail
port() { awk -v s="$1" '$1 == s {split($3, a, "/"); print a[2]}' /workspace/policy.txt; }
web=$(port web); ssh=$(port ssh)
nft -f - <<NFT
table inet t {
  set seen { type ipv4_addr; flags dynamic,timeout; timeout 10m; }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    tcp dport $web ct state new update @seen { ip saddr }
    ip saddr 10.65.1.0/24 ip daddr 10.65.2.10 tcp dport $web accept
    ip saddr 10.65.1.20 ip daddr 10.65.2.10 tcp dport $ssh accept
    ip saddr @seen tcp dport $ssh drop
    ip daddr 10.65.2.10 tcp dport $ssh accept
  }
}
NFT
"""
IDENTITIES = "ip -4 -o addr show | awk '$2 ~ /^g0-/ {print $2, $4}'"


def test_remembering_who_used_the_web_port_is_no_source_policy(harness: Harness) -> None:
    run = harness.launch()
    run.must(REMEMBERED, "SSH refused to the sources that used the web port")
    # In place: the office PC, having used the web port, is refused SSH; the outside
    # host, which has not, gets it.
    assert banner(run, "office", run.values["web_port"]).stdout_text.startswith("web ")
    assert not banner(run, "office", run.values["ssh_port"]).stdout_text.strip()
    outside = banner(run, "outside", run.values["ssh_port"])
    assert outside.stdout_text.startswith("ssh "), outside
    rt = harness.runtime
    assert not rt.exec(run.id, "office", shell=IDENTITIES, timeout=10).stdout_text.strip()
    # Sealed (as grading seals it, again): the office PC and the outside host have one
    # identity per criterion, each of a subnet address of its own; the admin workstation
    # none.
    rt.seal(run.id)
    idents = {host: rt.run_check(run.id, host, ["/bin/sh", "-c", IDENTITIES],
                                 timeout=10).stdout_text.split()
              for host in ("office", "outside", "admin")}
    # The web probes run first, as in grading: they are the knocks.
    passed = graded_on(run, "web-from-office", "ssh-from-admin-only")
    assert passed == {"web-from-office": True, "ssh-from-admin-only": False}, passed
    assert idents["office"][0::2] == idents["outside"][0::2] == [
        "g0-web", "g0-ssh", "g0-drop"], idents
    assert [a.rsplit(".", 1)[0] for a in idents["office"][1::2]] == ["10.65.1"] * 3, idents
    assert len(set(idents["office"][1::2] + idents["outside"][1::2])) == 6, idents
    assert not idents["admin"], idents


# Red team, this stop: a router that tells the probes apart by their shape. Every first
# SYN is dropped; its retransmission a second later passes, unless more SYNs of that
# source to that port came meanwhile (the refused probe's three attempts 0.3 s apart),
# which mark the source refused for a minute. The chain accepts, no address is named: a
# lone client gets every port a second late, yet every criterion passed (1.0). A reach
# probe now must connect on its first SYN.
SHAPE = r"""
set -euo pipefail
nft -f - <<'NFT'
table inet t {
  set first { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 800ms; }
  set pending { type ipv4_addr . inet_service . inet_service; flags dynamic,timeout; timeout 5s; }
  set refused { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 60s; }
  chain forward {
    type filter hook forward priority filter; policy accept;
    tcp flags & (syn|ack) == syn ip saddr . tcp dport @refused drop
    tcp flags & (syn|ack) == syn ip saddr . tcp dport . tcp sport @pending accept
    tcp flags & (syn|ack) == syn ip saddr . tcp dport @first add @refused { ip saddr . tcp dport } drop
    tcp flags & (syn|ack) == syn add @first { ip saddr . tcp dport } add @pending { ip saddr . tcp dport . tcp sport } drop
  }
}
NFT
"""
LONE_CLIENT = "read -r port; timeout 5 socat -u TCP:10.65.2.10:$port,connect-timeout=4 STDOUT"


def test_a_firewall_that_reads_the_probes_shape_is_no_policy(harness: Harness) -> None:
    run = harness.launch()
    run.must(SHAPE, "SYNs dropped for whoever sends several at once")
    # In place: a lone client of the outside host gets the database (a second late).
    outside = harness.runtime.exec(run.id, "outside", shell=LONE_CLIENT,
                                   stdin=f"{run.values['db_port']}\n".encode(), timeout=10)
    assert outside.stdout_text.startswith("database "), outside
    # The web criterion's probes alone (the SSH ones are the same reach and refused
    # probes): the office PC's lone connections got the banner a second late.
    passed = graded_on(run, "web-from-office")
    assert passed == {"web-from-office": False}, passed


# Red team, this stop: SSH without the admin workstation's address, two ways at once. SSH
# for good to the first source that asks (a set of size one: the admin workstation asked
# first), or to any office source that has opened exactly one web connection (a port
# knock: the office PC's addresses probed web twice, the admin workstation once). 1.0; now
# a refused host asks for SSH first, and the admin workstation probes web twice too.
KNOCK_OR_FIRST = r"""
set -euo pipefail
port() { awk -v s="$1" '$1 == s {split($3, a, "/"); print a[2]}' /workspace/policy.txt; }
web=$(port web); ssh=$(port ssh)
lan=$(ip -4 -o addr show | awk '$4 ~ /^10\.65\.1\./ {print $2}')
nft -f - <<NFT
table inet t {
  set once { type ipv4_addr; flags dynamic,timeout; timeout 10m; }
  set twice { type ipv4_addr; flags dynamic,timeout; timeout 10m; }
  set owner { type ipv4_addr; size 1; flags dynamic; }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    tcp dport $web ct state new ip saddr @once update @twice { ip saddr }
    tcp dport $web ct state new update @once { ip saddr }
    iifname "$lan" ip daddr 10.65.2.10 tcp dport $web accept
    tcp dport $ssh ip saddr @owner accept
    tcp dport $ssh ct state new add @owner { ip saddr } accept
    tcp dport $ssh ip saddr @twice drop
    iifname "$lan" tcp dport $ssh ip saddr @once accept
  }
}
NFT
"""


def test_ssh_for_the_first_asker_or_a_web_knock_is_no_source_policy(harness: Harness) -> None:
    run = harness.launch()
    run.must(KNOCK_OR_FIRST, "SSH for the first asker or after one web connection")
    # In place: the office PC, asking first, gets SSH.
    office = banner(run, "office", run.values["ssh_port"])
    assert office.stdout_text.startswith("ssh "), office
    run.must(KNOCK_OR_FIRST.replace("set -euo pipefail", "set -euo pipefail; nft delete table inet t"),
             "the same, loaded again before Submit")
    # The web probes run first, as in grading: they are the knocks.
    passed = graded_on(run, "web-from-office", "ssh-from-admin-only")
    assert passed == {"web-from-office": True, "ssh-from-admin-only": False}, passed
