"""Attack: a learner uses up a per-user kernel count to lock root and the other labs out.

The kernel counts inotify instances and watches, POSIX message queue bytes and queued
signals per user. A lab's processes run as its own learner uid, so each lab had its own
budget. Since each host runs in a user namespace of its own, what its processes use is
charged, in the machine's namespace, to the uid that *owns* that user namespace: were it
root, one learner opening inotify instances until refused (no capability needed) would
leave root (systemd, journald, the platform's own services) and every other lab's
learners without any. The host's user namespace belongs to the lab's learner uid."""

from __future__ import annotations

import ctypes
import os
import secrets
import time
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from tests.runtime.helpers import leftovers, simple_lab
from tests.support.one_lab import one_lab

pytestmark = pytest.mark.root

IN_CLOEXEC = 0o2000000
HOG = """import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
held = []
while len(held) < 100000:
    fd = libc.inotify_init1(0o2000000)
    if fd < 0:
        break
    held.append(fd)
open("/workspace/held", "w").write(str(len(held)))
time.sleep(3600)
"""
TRY = ("import ctypes; fd = ctypes.CDLL(None, use_errno=True).inotify_init1(0o2000000); "
       "print('ok' if fd >= 0 else 'refused')")


def _inotify_as_root() -> bool:
    fd = ctypes.CDLL(None, use_errno=True).inotify_init1(IN_CLOEXEC)
    if fd < 0:
        return False
    os.close(fd)
    return True


def test_a_learner_using_up_inotify_leaves_root_and_other_labs_theirs(tmp_path: Path) -> None:
    hog, other = "hog-" + secrets.token_hex(3), "other-" + secrets.token_hex(3)
    state = tmp_path / "state"
    spec = LabSpec(hog, [SubnetSpec("a", "10.76.1.0/24")], [
        HostSpec("box", networks=[("a", "10.76.1.10")], command="python3 /srv/hog.py",
                 files={"/srv/hog.py": HOG})])
    with one_lab(state, spec) as rt:
        prefix = rt.names.prefix
        rt.create(simple_lab(other))
        held = ""
        for _ in range(200):  # bounded: until the hog says how many it holds (<= ~20 s)
            held = rt.exec(hog, "box", ["cat", "/workspace/held"]).stdout_text
            if held:
                break
            time.sleep(0.1)
        assert int(held) > 0  # the hog ran into its limit, and holds what it got
        assert _inotify_as_root()
        assert rt.exec(other, "box", ["python3", "-c", TRY]).stdout_text.strip() == "ok"
        # The hog's lab has a budget of its own: a second process there gets none.
        assert rt.exec(hog, "box", ["python3", "-c", TRY]).stdout_text.strip() == "refused"
    assert leftovers(prefix, str(state)) == []
