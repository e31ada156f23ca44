"""Attack: learn about other labs from inside a lab's mount namespace.

Sandboxes now start from a small mount namespace of their own (the machine's mounts
without /run/netns or other labs' disks, plus their own lab's disk). A learner in one lab
reading /proc/self/mountinfo, or walking the paths a sandbox was built from, must find
no other lab's disk, no named network namespace and no state path of another lab; and
that lab's files stay out of reach.

Nor may the sandbox's /proc show the machine's own state: /proc/key-users listed the
machine's accounts holding keys (uids 0, 101, 1001, 65534 here) and their quotas,
/proc/interrupts and /proc/softirqs the machine's interrupt counts per CPU (every
tenant's network and disk activity), /proc/kallsyms the kernel's symbols, /proc/cmdline
the machine's boot command line; now each is covered (``bwrap_args.MASKED_PROC``).

/proc/pressure/* took PSI triggers from any lab process: each write opened one on that
descriptor, kernel memory charged to no lab, and each close waits an RCU grace period: a
process holding 20,000 (its open-files limit) sat unkillable in the kernel for about two
minutes at exit. The pressure files are read-only in a sandbox now
(``bwrap_args.READONLY_PROC``): still readable, no trigger taken."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root


def lab(lab_id: str, secret: str = "") -> LabSpec:
    files = {"/home/flag.txt": secret + "\n"} if secret else {}
    return LabSpec(lab_id, [SubnetSpec("lan", "10.201.0.0/24")],
                   [HostSpec("box", networks=[("lan", None)], files=files)])


@pytest.fixture
def labs(tmp_path: Path) -> Iterator[tuple[LocalRuntime, str, str, str]]:
    rt = LocalRuntime(str(tmp_path), prefix=runtime_prefix("m"))
    victim, attacker = "victim-" + secrets.token_hex(3), "attacker-" + secrets.token_hex(3)
    secret = secrets.token_hex(8)
    try:
        rt.create(lab(victim, secret))
        rt.create(lab(attacker))
        yield rt, victim, attacker, secret
    finally:
        rt.destroy_many([info.lab_id for info in rt.list()])
        rt.close()
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_learner_sees_no_other_lab_mount(labs: tuple[LocalRuntime, str, str, str]) -> None:
    rt, victim, attacker, secret = labs
    res = rt.exec(attacker, "box", shell=(
        "cat /proc/self/mountinfo; cat /proc/1/mountinfo 2>/dev/null; "
        "grep -rs . /run 2>/dev/null | head -50; ls -a / /run /tmp /home"))
    seen = res.stdout.decode()
    # Bind mounts name their source: only the attacker's own lab directory may show.
    assert seen.count(rt.names.state_dir) == seen.count(rt.names.lab_dir(attacker))
    assert victim not in seen
    assert "/run/netns" not in seen
    assert secret not in seen
    # The machine's host-wide /proc files cannot be read (nor written); the lab's tools
    # that read /proc still work.
    machine = rt.exec(attacker, "box", shell=(
        "for f in key-users keys kallsyms interrupts softirqs iomem ioports cmdline; do "
        "if [ -e /proc/$f ]; then cat /proc/$f >/dev/null 2>&1 && echo read:$f; "
        "echo x 2>/dev/null > /proc/$f && echo wrote:$f; fi; done; "
        "for f in cpu io memory; do grep -q '^some avg10=' /proc/pressure/$f && echo read; "
        "echo 'some 150000 2000000' 2>/dev/null > /proc/pressure/$f && echo trigger:$f; done; "
        "ps -e >/dev/null && free >/dev/null && uptime >/dev/null && echo tools"))
    assert machine.stdout.decode().split() == ["read"] * 3 + ["tools"], machine.stdout.decode()


def test_victim_files_unreachable_by_path(labs: tuple[LocalRuntime, str, str, str]) -> None:
    rt, victim, attacker, secret = labs
    flag = f"{rt.names.data_dir(victim, 'box')}/home/flag.txt"
    res = rt.exec(attacker, "box", shell=f"cat {flag}; cat /proc/*/root{flag} 2>/dev/null")
    assert secret not in res.stdout.decode()
    assert res.exit_code != 0
