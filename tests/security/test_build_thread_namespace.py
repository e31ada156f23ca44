"""Attack: make one lab's build fail while its thread is inside that lab's network
namespace, so the next learner's lab is wired from there.

Build threads step into each lab's namespaces and back (``netns._inside``). A thread
left inside a failed lab (the failed lab's namespace lives on while a thread is in it)
would configure the next lab, or the machine's egress, from another tenant's network.
With one build thread, the next lab's build must run from the machine's namespace, get
its own addresses, and leave nothing of either lab in the machine's namespace."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from forge.runtime.local import LocalRuntime
from forge.runtime.local import rtnl as rtnl_mod
from forge.runtime.local.network import read_addresses

from ..runtime.helpers import leftovers, simple_lab
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root


def _net_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_a_build_failing_inside_a_lab_leaves_no_thread_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = runtime_prefix("b")
    rt = LocalRuntime(str(tmp_path), prefix=prefix, workers=1)  # one thread builds both
    first, second = "tenant-a-" + secrets.token_hex(3), "tenant-b-" + secrets.token_hex(3)
    real_add = rtnl_mod.Rtnl.add_address

    def refused(self: rtnl_mod.Rtnl, ifname: str, address: str, prefixlen: int) -> None:
        raise OSError("address refused inside the first lab's namespace")

    try:
        monkeypatch.setattr(rtnl_mod.Rtnl, "add_address", refused)
        with pytest.raises(Exception, match="refused"):
            rt.create(simple_lab(first))
        monkeypatch.setattr(rtnl_mod.Rtnl, "add_address", real_add)
        machine = _net_inode()
        # the build thread that failed inside the first lab is back in the machine's
        assert rt._pool.submit(_net_inode).result(30) == machine
        info = rt.create(simple_lab(second))
        assert info.lab_id == second
        addresses = read_addresses(rt.names.host_ns(second, "box"))
        assert addresses.get("lan", "").startswith("10.200.0."), addresses
        assert not [item for item in leftovers(prefix, str(tmp_path))
                    if item.startswith("link ")]  # nothing of either lab in the machine's
        assert not [item for item in leftovers(prefix, str(tmp_path)) if first in item]
    finally:
        rt.destroy_many([lab.lab_id for lab in rt.list()])
    assert leftovers(prefix, str(tmp_path)) == []
