"""Whether the machine's file table could be filled by a few labs.

Every open file takes a slot of one machine-wide table (``fs.file-max``). A lab's open
files are charged to its memory cgroup, so they are bounded by its memory (about 220
bytes each: ~1.1 million for 256 MB), not by a count of its own; on a machine whose table
the kernel sized by its RAM (2.4 million for 24 GB), three labs holding all they may
fill it, and every other process, other labs' shells and services included, gets
``ENFILE``. The memory cgroup already bounds what files cost, so the table's count is
only a second, machine-wide limit: systemd raises it to the largest value at boot. Forge
does not change the machine's settings: the runtime says it once, at its first check.
"""

from __future__ import annotations

FILE_MAX = "/proc/sys/fs/file-max"
ENOUGH = 1 << 31  # labs' memory runs out long before a table this size
FILES_PER_MB = 4_000  # what one MB of a lab's memory holds of open files, about


def file_table_problem(lab_memory_mb: int = 256, path: str = FILE_MAX) -> str | None:
    """Why a few labs of ``lab_memory_mb`` could fill the machine's file table (None: the
    table is large enough, or unreadable)."""
    try:
        with open(path, encoding="ascii") as fh:
            size = int(fh.read(64).split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if size >= ENOUGH:
        return None
    per_lab = max(1, lab_memory_mb) * FILES_PER_MB
    return (f"fs.file-max is {size}: about {max(1, -(-size // per_lab))} labs of "
            f"{lab_memory_mb} MB holding all the files their memory allows fill the "
            "machine's file table, and every other process then gets ENFILE; set "
            "fs.file-max=9223372036854775807 (as systemd does) with sysctl -w and in "
            "/etc/sysctl.d")
