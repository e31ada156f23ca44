"""The bounded reader: regular files within the cap only, never blocking, links by choice."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from forge_verify.files import InputRefused, read_bounded, read_bounded_text


def test_reads_a_regular_file_up_to_the_cap_exactly(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    assert read_bounded(f, 100) == b"x" * 100
    with pytest.raises(InputRefused, match=r"^file .*/f: larger than 99 bytes$"):
        read_bounded(f, 99)


def test_refuses_directory_fifo_device_socket(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        for path, why in ((tmp_path, "is a directory"), (fifo, "is a FIFO"),
                          (Path("/dev/zero"), "is a device"), (sock_path, "is a socket")):
            with pytest.raises(InputRefused) as err:
                read_bounded(path, 10, what="input")
            assert err.value.reason.startswith(why)
            assert str(err.value).startswith(f"input {path}: ")


def test_symlinks_followed_only_when_allowed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("ok")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_bounded(link, 10) == b"ok"
    with pytest.raises(InputRefused, match="symbolic link"):
        read_bounded(link, 10, follow_symlinks=False)
    # A link to a FIFO is refused either way (no blocking open through a link).
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "to-fifo").symlink_to(fifo)
    with pytest.raises(InputRefused, match="FIFO"):
        read_bounded(tmp_path / "to-fifo", 10)


def test_missing_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(InputRefused, match="file not found"):
        read_bounded(tmp_path / "nope", 10)
    bad = tmp_path / "bad"
    bad.write_bytes(b"ok\xff")
    with pytest.raises(InputRefused, match=r"not UTF-8 text \(byte 2\)"):
        read_bounded_text(bad, 10)
