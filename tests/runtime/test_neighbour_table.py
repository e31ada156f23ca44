"""The runtime sizes the machine's neighbour tables for the labs its node may hold
(`forge.runtime.local.neighbour_table`); the attack it answers is
`tests/security/test_neighbour_sweep.py`."""

from __future__ import annotations

import os
from pathlib import Path

from forge.runtime.local.neighbour_table import FLOOR, LARGEST, PER_LAB, size_tables, wanted_size


def _table(root: Path, family: str, thresh2: int, thresh3: int) -> str:
    folder = root / family / "neigh" / "default"
    folder.mkdir(parents=True)
    (folder / "gc_thresh2").write_text(f"{thresh2}\n")
    (folder / "gc_thresh3").write_text(f"{thresh3}\n")
    return str(folder)


def _values(folder: str) -> tuple[int, int]:
    return (int(Path(folder, "gc_thresh2").read_text()),
            int(Path(folder, "gc_thresh3").read_text()))


def test_the_kernels_default_is_raised_for_the_nodes_labs_and_said(tmp_path: Path) -> None:
    v4 = _table(tmp_path, "ipv4", 512, 1024)
    v6 = _table(tmp_path, "ipv6", 512, 1024)
    said = size_tables(1000, (v4, v6))
    assert _values(v4) == _values(v6) == (500 * PER_LAB, 1000 * PER_LAB)
    assert [raised for raised, _ in said] == [True, True]
    assert said[0][1].startswith(
        f"raised net.ipv4.neigh.default.gc_thresh3 from 1024 to {1000 * PER_LAB}")
    assert "net.ipv6.neigh.default.gc_thresh3" in said[1][1]


def test_what_an_operator_set_higher_is_never_lowered(tmp_path: Path) -> None:
    roomy = _table(tmp_path, "ipv4", 900_000, 1_000_000)
    half_done = _table(tmp_path / "b", "ipv4", 90_000, 2_048)  # thresh2 above half already
    assert size_tables(200, (roomy,)) == []
    assert _values(roomy) == (900_000, 1_000_000)
    size_tables(200, (half_done,))
    assert _values(half_done) == (90_000, FLOOR)


def test_a_family_the_machine_lacks_is_skipped_and_a_refused_write_names_the_setting(
        tmp_path: Path) -> None:
    missing = str(tmp_path / "ipv6" / "neigh" / "default")
    locked = _table(tmp_path, "ipv4", 512, 1024)
    # a value procfs lets nobody write, root included (0444): as a container's /proc/sys
    os.unlink(os.path.join(locked, "gc_thresh3"))
    os.symlink("/proc/sys/kernel/ngroups_max", os.path.join(locked, "gc_thresh3"))
    held = int(Path("/proc/sys/kernel/ngroups_max").read_text())
    labs = max(held, FLOOR) // PER_LAB + 1
    said = size_tables(labs, (missing, locked))
    assert len(said) == 1 and said[0][0] is False
    assert (f"net.ipv4.neigh.default.gc_thresh3 is {held} and could not be raised"
            in said[0][1])
    assert f"set it to {wanted_size(labs)}" in said[0][1] and "sysctl -w" in said[0][1]
    assert _values(locked)[0] == 512  # refused: nothing changed


def test_the_size_has_a_floor_and_a_ceiling() -> None:
    assert wanted_size(1) == wanted_size(200) == FLOOR
    assert wanted_size(10**6) == LARGEST
