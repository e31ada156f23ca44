"""Class scale: a sandbox starts from a mount namespace that does not grow with the number
of live labs, and many labs are destroyed together (root)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from forge.runtime import SpecError
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import leftovers, simple_lab

pytestmark = pytest.mark.root


def _mounts(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as fh:
        return [line.split()[4] for line in fh]


def test_sandboxes_start_without_other_labs_mounts(tmp_path: Path) -> None:
    """bwrap reads its mount table for every bind: it must hold neither the named network
    namespaces (four per live lab) nor another lab's disk, only its own."""
    prefix, state = "v" + secrets.token_hex(2), str(tmp_path / "state")
    rt = LocalRuntime(state, prefix=prefix, workers=4)
    ids = [f"mnt-{i}" for i in range(3)]
    try:
        for lab_id in ids:
            rt.create(simple_lab(lab_id))
        machine = _mounts("self")
        assert any(m.startswith("/run/netns/") for m in machine)
        assert all(rt.names.data_root(x) in machine for x in ids)
        for lab_id in ids:
            (outer,) = rt._procs[lab_id]  # bwrap as started, in the namespace it started in
            seen = _mounts(outer.pid)
            assert not [m for m in seen if m.startswith("/run/netns")], seen
            assert [m for m in seen if m.startswith(state)] == [rt.names.data_root(lab_id)]
        assert rt.destroy_many([*ids, "never-made"]) == {}
        assert leftovers(prefix, state) == []
        with pytest.raises(SpecError):
            rt.destroy_many(["../escape"])
    finally:
        rt.destroy_many(info.lab_id for info in rt.list())
        rt.close()
