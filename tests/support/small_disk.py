"""A real, tiny tmpfs for tests of what a full disk does (root only), and a filler for it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@contextmanager
def small_tmpfs(where: Path, size: str, inodes: int | None = None) -> Iterator[Path]:
    """Mount a tmpfs of `size` (and at most `inodes` files) at `where`, made if missing;
    unmount it at the end. A mount that fails fails the test."""
    where.mkdir(exist_ok=True)
    options = f"size={size},mode=0700" + (f",nr_inodes={inodes}" if inodes else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.strip()}"
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)


@dataclass(frozen=True)
class Filler:
    """The files that fill a disk; removing them makes the room again."""

    files: tuple[Path, ...]

    def remove(self) -> None:
        for file in self.files:
            file.unlink(missing_ok=True)


def fill_disk(disk: Path, *, inodes: bool = False, most_files: int = 64) -> Filler:
    """Write files until `disk` has no block left: whole blocks, then single bytes. Another
    file follows when one stops short of a full disk (a file-size limit on the process).
    With `inodes`, then make empty files until no inode is left either: tmpfs counts its
    blocks per CPU and may let a few more pages in from another CPU, but it counts inodes
    exactly, so with none left no new file can be made at all."""
    files: list[Path] = []
    for n in range(most_files):
        file = disk / f"filler{n}"
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            break
        files.append(file)
        try:
            for size in (65536, 1):
                while True:
                    try:
                        os.write(fd, b"\0" * size)
                    except OSError:
                        break
        finally:
            os.close(fd)
        if os.statvfs(disk).f_bavail == 0:
            break
    else:
        raise AssertionError(f"{disk} could not be filled")
    if inodes:
        for made in range(100_000):
            file = disk / f"inode{made}"
            try:
                os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except OSError:
                break
            files.append(file)
        else:
            raise AssertionError(f"{disk} still takes files after 100,000")
    return Filler(tuple(files))


__all__ = ["Filler", "fill_disk", "small_tmpfs"]
