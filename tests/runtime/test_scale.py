"""Class scale: a sandbox starts from a mount namespace that does not grow with the number
of live labs, and many labs are destroyed together (root)."""

from __future__ import annotations

import ctypes
import secrets
from pathlib import Path

import pytest

from forge.runtime import SpecError
from forge.runtime.local import LocalRuntime
from forge.runtime.local.launch import base_namespace
from tests.runtime.helpers import leftovers, simple_lab

pytestmark = pytest.mark.root
_libc = ctypes.CDLL(None, use_errno=True)


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


def test_state_on_a_file_system_mounted_later_still_works(tmp_path: Path) -> None:
    """A state directory on a file system mounted after the sandboxes' base namespace was
    made is not in that namespace: labs still start (from a trimmed copy instead)."""
    base_namespace()
    fs = tmp_path / "fs"
    fs.mkdir()
    assert _libc.mount(b"forge-test", str(fs).encode(), b"tmpfs", 0, b"size=64m") == 0
    prefix, state = "w" + secrets.token_hex(2), str(fs / "state")
    rt = LocalRuntime(state, prefix=prefix, workers=2)
    try:
        rt.create(simple_lab("late-fs", command="echo up > /workspace/up"))
        res = rt.exec("late-fs", "box", ["cat", "/workspace/up"])
        assert res.stdout_text == "up\n", res.stderr_text
        rt.destroy("late-fs")
        assert leftovers(prefix, state) == []
    finally:
        rt.destroy_many(info.lab_id for info in rt.list())
        rt.close()
        _libc.umount2(str(fs).encode(), 2)
