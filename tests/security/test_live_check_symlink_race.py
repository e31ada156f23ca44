"""Attack: a learner races "Check this task" to make the root orchestrator read a machine file.

"Check this task" snapshots a LIVE lab's /home, /workspace and /srv as root. A learner owns
those trees while the lab runs, so a link ``home/ln -> d/sub/secret.txt`` is resolved while
``d`` is a real directory, and ``d`` is then swapped for a link to a directory outside the
lab before the file is opened. The old snapshot resolved the link to a machine path and
opened its parent by that string, which the kernel followed through the swapped ``d`` out
of the lab: the secret landed in the check's sandbox. Now every component is opened with
``openat`` from a directory fd of the lab's tree with O_NOFOLLOW, so it never can.

A separate process plays the learner (true parallelism on two cores), exchanging ``d``
with a link to the outside in a tight loop while snapshots are taken many times.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from forge.runtime.local.grader import remove_snapshot, take_snapshot

SECRET = b"machine-secret-3b7f0c"
ROUNDS = 300

# The learner: exchange home/d (a real directory) with home/d.link (a link to the outside)
# atomically with renameat2(RENAME_EXCHANGE), as fast as it can, a bounded number of times.
_FLIPPER = r"""
import ctypes, os, sys, time
home, rounds = sys.argv[1].encode(), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
a, b = os.path.join(home, b"d"), os.path.join(home, b"d.link")
end = time.monotonic() + 300  # killed by the test long before; bounded all the same
for n in range(rounds):
    if libc.renameat2(-100, a, -100, b, 2) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")
    if n == 1:
        print("racing", flush=True)
    if n % 10000 == 0 and time.monotonic() > end:
        break
"""


def _lab(tmp_path: Path) -> Path:
    data = tmp_path / "lab" / "data"
    home = data / "home"
    (home / "d" / "sub").mkdir(parents=True)
    (home / "d" / "sub" / "secret.txt").write_bytes(b"the learner's own file\n")
    os.symlink("d/sub/secret.txt", home / "ln")
    for tree in ("workspace", "srv"):
        (data / tree).mkdir()
    outside = tmp_path / "machine"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "secret.txt").write_bytes(SECRET + b"\n")
    os.symlink(str(outside), home / "d.link")
    return data


def _contains_secret(tree: Path) -> bool:
    for path in tree.rglob("*"):
        if path.is_file() and not path.is_symlink() and SECRET in path.read_bytes():
            return True
    return False


def test_a_swapped_directory_never_leads_a_live_snapshot_out_of_the_lab(
        tmp_path: Path) -> None:
    data = _lab(tmp_path)
    flipper = subprocess.Popen(
        [sys.executable, "-c", _FLIPPER, str(data / "home"), "500000000"],
        stdout=subprocess.PIPE)
    leaked = 0
    copied = 0
    try:
        assert flipper.stdout is not None
        assert flipper.stdout.readline() == b"racing\n"
        for n in range(ROUNDS):
            dest = tmp_path / f"snap{n}"
            take_snapshot(str(data), str(dest))
            if _contains_secret(dest):
                leaked += 1
            if (dest / "home" / "ln").is_file():
                copied += 1
            remove_snapshot(str(dest))
        racing = flipper.poll() is None
    finally:
        flipper.kill()
        flipper.wait()
    assert racing  # the learner was still swapping when the last snapshot ended
    assert leaked == 0, f"{leaked} snapshots held a file from outside the lab"
    assert copied > 0  # the link itself still works when it stays inside the lab


def test_a_link_through_an_outside_directory_is_left_out(tmp_path: Path) -> None:
    data = _lab(tmp_path)
    os.rename(data / "home" / "d", data / "home" / "d.real")
    os.rename(data / "home" / "d.link", data / "home" / "d")
    dest = tmp_path / "snap"
    snap = take_snapshot(str(data), str(dest))
    assert not _contains_secret(dest)
    assert "/home/ln" in [path for path, _why in snap.left_out]
