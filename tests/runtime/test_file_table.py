"""The runtime says when a few labs could fill the machine's file table
(`forge.runtime.local.file_table`): DQ's five processes in one lab held 95,000 files (each
charged to the lab's memory, ~220 bytes), so three labs of 256 MB could take all 2.4
million slots of a 24 GB machine's table and leave every other process ENFILE."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.runtime.local.file_table import file_table_problem


@pytest.mark.parametrize(("size", "labs"), [(2_466_239, 3), (1_000_000, 1), (8_192_000, 8)])
def test_a_file_table_a_few_labs_fill_is_named(tmp_path: Path, size: int, labs: int) -> None:
    table = tmp_path / "file-max"
    table.write_text(f"{size}\n")
    said = file_table_problem(256, str(table))
    assert said is not None
    assert f"fs.file-max is {size}: about {labs} labs of 256 MB" in said
    assert "fs.file-max=9223372036854775807" in said


def test_a_table_as_systemd_sizes_it_or_an_unreadable_one_is_no_warning(
        tmp_path: Path) -> None:
    table = tmp_path / "file-max"
    table.write_text("9223372036854775807\n")
    assert file_table_problem(256, str(table)) is None
    table.write_text("not a number\n")
    assert file_table_problem(256, str(table)) is None
    assert file_table_problem(256, str(tmp_path / "missing")) is None


def test_the_machines_own_table_is_read() -> None:
    with open("/proc/sys/fs/file-max", encoding="ascii") as fh:
        size = int(fh.read())
    said = file_table_problem()
    assert (said is None) == (size >= 1 << 31)
