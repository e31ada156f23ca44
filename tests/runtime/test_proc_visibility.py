"""The runtime says when the machine's /proc shows every process to every local user
(`forge.runtime.local.proc_visibility`): a local user then reads what a learner types as
a command's arguments. Mount tables written here, and a real procfs with and without
``hidepid`` in a mount namespace of the test's own (the machine's mounts are untouched)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forge.runtime.local.proc_visibility import proc_visibility_problem


@pytest.mark.parametrize(("options", "warned"), [
    ("rw,nosuid,nodev,noexec,relatime", True),
    ("rw,relatime,hidepid=0", True),
    ("rw,relatime,hidepid=off", True),
    ("rw,relatime,hidepid=invisible", False),
    ("rw,relatime,hidepid=2,gid=998", False),
    ("rw,relatime,hidepid=ptraceable", False),
])
def test_a_proc_without_hidepid_is_named(tmp_path: Path, options: str, warned: bool) -> None:
    table = tmp_path / "mounts"
    table.write_text(f"sysfs /sys sysfs rw 0 0\nproc /proc proc {options} 0 0\n"
                     "tmpfs /run tmpfs rw 0 0\n")
    said = proc_visibility_problem(str(table))
    assert (said is not None) is warned
    if said is not None:
        assert "hidepid=invisible" in said and "command lines" in said


def test_the_last_mount_over_proc_counts_and_no_proc_is_no_warning(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text("proc /proc proc rw,hidepid=invisible 0 0\nproc /proc proc rw 0 0\n")
    assert proc_visibility_problem(str(table)) is not None
    table.write_text("proc /proc proc rw 0 0\nproc /proc proc rw,hidepid=invisible 0 0\n")
    assert proc_visibility_problem(str(table)) is None
    table.write_text("proc /mnt/proc proc rw 0 0\n")  # not the machine's /proc
    assert proc_visibility_problem(str(table)) is None
    assert proc_visibility_problem(str(tmp_path / "missing")) is None


ASK = ("from forge.runtime.local.proc_visibility import proc_visibility_problem as p; "
       "print('warned' if p() else 'quiet')")


@pytest.mark.root
@pytest.mark.parametrize(("mount_options", "said"), [("hidepid=invisible", "quiet"),
                                                      ("hidepid=0", "warned")])
def test_a_real_proc_mount_is_read(mount_options: str, said: str) -> None:
    # A private mount namespace: /proc is mounted again there only.
    script = (f"mount -t proc -o {mount_options} proc /proc && "
              f"exec {sys.executable} -c \"{ASK}\"")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == said
