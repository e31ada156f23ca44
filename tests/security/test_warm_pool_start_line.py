"""Attack: run code as root in a pool lab through its service's start line.

A warm pool lab's hosts wait, as uid 0 inside their sandboxes, for the line that starts
the claiming scenario's service; the scenario's command and environment travel in it.
If a value were spliced into that line unquoted, a variable holding shell syntax (a
quote, ``$(...)``, a backquote, a newline) would run as the sandbox's root instead of
reaching the service as the lab user. The line quotes every word, and the service gets
each value byte for byte, as the lab user, in the host's ``init`` cgroup."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime

from ..support.prefixes import runtime_prefix

HOSTILE = ("a'b\"c $(touch /run/pwned-dollar) `touch /run/pwned-tick`\n"
           "touch /run/pwned-line; '\"; touch /run/pwned-quote #\\n $HOME ${IFS}end")
COMMAND = ('printf %s "$FLAG" > /srv/flag; id -u > /srv/uid; '
           "echo $$ > /srv/pid; exec sleep 1000")


def lab(lab_id: str, flag: str = "") -> LabSpec:
    host: dict[str, object] = {}
    if flag:
        host = {"environment": {"FLAG": flag}, "command": COMMAND}
    return LabSpec(lab_id, [SubnetSpec("lan", "10.207.0.0/24")],
                   [HostSpec("box", networks=[("lan", None)], **host)])  # type: ignore[arg-type]


@pytest.fixture
def pooled(tmp_path: Path) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(str(tmp_path), prefix=runtime_prefix("q"))
    try:
        rt.warm({"one": (lab("x"), 1)}, quiet_s=0.05, poll_s=0.1)
        end = time.monotonic() + 60
        while rt.warm_pool is not None and rt.warm_pool.status()["one"]["ready"] < 1:
            assert time.monotonic() < end, "the pool never filled"
            time.sleep(0.05)
        yield rt
    finally:
        rt.warm({})
        for info in rt.list():
            rt.destroy(info.lab_id)
        rt.close()


def test_start_line_values_reach_the_service_verbatim(pooled: LocalRuntime) -> None:
    rt = pooled
    assert rt.warm_pool is not None
    lab_id = "scn-00000000000000d1"
    rt.create(lab(lab_id, HOSTILE))
    assert rt.warm_pool.stats.claimed == 1
    end = time.monotonic() + 30
    while rt.exec(lab_id, "box", ["cat", "/srv/pid"]).stdout_text == "":
        assert time.monotonic() < end, "the claimed lab's service never ran"
        time.sleep(0.05)
    assert rt.exec(lab_id, "box", ["cat", "/srv/flag"]).stdout_text == HOSTILE
    # Nothing of the value ran: /run is root's, so only the sandbox's root could write it.
    assert rt.exec(lab_id, "box", ["ls", "-A", "/run"]).stdout_text.count("pwned") == 0
    uid = rt.exec(lab_id, "box", ["cat", "/srv/uid"]).stdout_text.strip()
    assert uid == str(rt.identity(lab_id).learner)
    # Started by the host's init, like a fresh lab's service: in its init cgroup.
    inner = int(rt.exec(lab_id, "box", ["cat", "/srv/pid"]).stdout_text)
    outer = [p for p in rt.cgroups.pids(rt.names.lab(lab_id), "box", "init")
             if _ns_pid(p) == inner]
    assert len(outer) == 1
    # At a fresh lab's priority, not the refill thread's nice 10 it was built at.
    assert _nice(outer[0]) == 0
    fresh = "scn-00000000000000d2"
    rt.create(lab(fresh, "x"))  # the pool is empty now: built fresh
    assert {_nice(p) for p in rt.cgroups.pids(rt.names.lab(fresh))} == {0}


def _nice(pid: int) -> int:
    """The nice value of machine process ``pid`` (field 19 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[16])


def _ns_pid(pid: int) -> int:
    """The pid of machine process ``pid`` inside its own pid namespace (0: gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except OSError:
        return 0
    return 0


def test_an_unclaimed_pool_lab_runs_no_service(pooled: LocalRuntime) -> None:
    """Before a claim the hosts' inits only wait: no process as the lab user exists."""
    rt = pooled
    assert rt.warm_pool is not None
    (pool_id,) = rt.warm_pool.ready_ids()
    uid = rt.identity(pool_id).learner
    owners = set()
    for pid in rt.cgroups.pids(rt.names.lab(pool_id)):
        try:
            owners.add(os.stat(f"/proc/{pid}").st_uid)
        except FileNotFoundError:
            continue
    assert owners and uid not in owners
