"""Which machine accounts hold ids of the lab uid range (`forge.runtime.local.uid_clash`).

Account files written here, in the formats of passwd(5), group(5) and subuid(5): the
real files are exercised by tests/security/test_uid_range_accounts.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.runtime.local import uid_clash
from forge.runtime.local.uid_clash import ClashCheck, clashes

FIRST, COUNT = 300000, 100000  # the default FORGE_LAB_UID_RANGE, 300000-399999


def files(tmp_path: Path, **content: str) -> tuple[str, ...]:
    """passwd, group, subuid, subgid under tmp_path; a file not given does not exist."""
    out = []
    for kind in ("passwd", "group", "subuid", "subgid"):
        path = tmp_path / kind
        if kind in content:
            path.write_text(content[kind])
        out.append(str(path))
    return tuple(out)


def test_debian_s_fourth_useradd_user_has_subordinate_ids_in_the_default_range(
        tmp_path: Path) -> None:
    # useradd hands out 65,536 subordinate ids per user from 100,000.
    subuid = "".join(f"u{n}:{100000 + 65536 * n}:65536\n" for n in range(4))
    found = clashes(FIRST, COUNT, files(tmp_path, subuid=subuid, subgid=subuid))
    assert [(os.path.basename(c.source), c.name, c.low, c.high) for c in found] == [
        ("subuid", "u3", 296608, 362143), ("subgid", "u3", 296608, 362143)]
    problem = ClashCheck(FIRST, COUNT, files(tmp_path)).problem()
    assert problem is not None
    assert "FORGE_LAB_UID_RANGE 300000-399999" in problem and "u3's ids 296608-362143" in problem


def test_only_ids_inside_the_range_count(tmp_path: Path) -> None:
    passwd = ("root:x:0:0:root:/root:/bin/bash\n"
              "edge-low:x:299999:100:::/bin/sh\n"       # just below
              "edge-high:x:400000:100:::/bin/sh\n"      # just above
              "in-by-group:x:1001:300000:::/bin/sh\n"   # its primary group is a lab gid
              "broken:x:notanumber:1:::\n"              # skipped, as the tools skip it
              "short\n")
    group = "staff:x:50:\nlabby:x:399999:\n"
    subuid = "a:200000:100000\nb:400000:10\nc:300000:0\n"  # ends at 299999; above; empty
    found = clashes(FIRST, COUNT, files(tmp_path, passwd=passwd, group=group, subuid=subuid))
    assert [(c.name, c.low) for c in found] == [("in-by-group", 300000), ("labby", 399999)]


def test_a_clear_machine_has_no_problem_and_a_change_is_seen(tmp_path: Path) -> None:
    paths = files(tmp_path, passwd="root:x:0:0:root:/root:/bin/bash\n")
    check = ClashCheck(FIRST, COUNT, paths)
    assert check.problem() is None
    with open(paths[0], "a") as fh:  # useradd, after the runtime started
        fh.write("late:x:350000:350000::/home/late:/bin/sh\n")
    problem = check.problem()
    assert problem is not None and "late (uid 350000)" in problem


def test_many_clashes_are_counted_not_all_listed(tmp_path: Path) -> None:
    passwd = "".join(f"u{n}:x:{FIRST + n}:100:::/bin/sh\n" for n in range(5))
    problem = ClashCheck(FIRST, COUNT, files(tmp_path, passwd=passwd)).problem()
    assert problem is not None
    assert "u2 (uid 300002)" in problem and "u3" not in problem and "(and 2 more)" in problem


def test_an_oversized_file_is_a_problem_not_a_pass(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uid_clash, "MAX_FILE_BYTES", 64)
    paths = files(tmp_path, passwd="x" * 65)
    problem = ClashCheck(FIRST, COUNT, paths).problem()
    assert problem is not None and "could not be checked" in problem


def test_a_primary_group_in_the_range_is_named_as_a_gid(tmp_path: Path) -> None:
    problem = ClashCheck(FIRST, COUNT, files(
        tmp_path, passwd="in-by-group:x:1001:300000:::/bin/sh\n")).problem()
    assert problem is not None and "in-by-group (gid 300000)" in problem


def test_account_files_that_are_links_are_read(tmp_path: Path) -> None:
    """Some image-based machines link /etc/passwd elsewhere: read through the link."""
    real = tmp_path / "real-passwd"
    real.write_text("linked:x:300001:100:::/bin/sh\n")
    paths = files(tmp_path)
    os.symlink(real, paths[0])
    problem = ClashCheck(FIRST, COUNT, paths).problem()
    assert problem is not None and "linked (uid 300001)" in problem


def test_a_file_that_cannot_be_looked_at_is_refused_every_time(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    paths = (str(tmp_path / "not-a-dir" / "passwd"), *files(tmp_path)[1:])  # ENOTDIR
    check = ClashCheck(FIRST, COUNT, paths)
    for _ in range(2):
        problem = check.problem()
        assert problem is not None and "could not be checked" in problem
    os.unlink(tmp_path / "not-a-dir")  # the path works again: answered from the files
    assert check.problem() is None
