"""Attack: hand `forge up --env-file` a file that never ends (/dev/zero), never opens (a
FIFO nobody writes), is far too large or is not text, to exhaust the machine's memory or
hang the start.

Before: the file was read whole with `Path.read_text`, so `/dev/zero` grew the process until
the kernel's OOM killer ended it (22 GB on the machine this was found on, a global OOM), a
FIFO blocked forever, and a file that is not UTF-8 ended in a UnicodeDecodeError
traceback. Now each is refused with exit 1 and one line naming the file and why, before
the storage root is made. Each run is watched (`run` of test_bounded_files): passing 1 GiB
or hanging fails the test, not the host.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

from forge.stack.envfile import MAX_ENV_FILE_BYTES, EnvFileError, read_env_file

from ..support.prefixes import runtime_prefix
from .test_bounded_files import FORGE, run


def _hostile(tmp_path: Path, kind: str) -> Path:
    if kind == "zero":
        return Path("/dev/zero")
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "big":
        with open(path, "wb") as fh:
            fh.truncate(MAX_ENV_FILE_BYTES + 1)
    else:
        path.write_bytes(b"FORGE_ENV=dev\nNAME=caf\xe9\n")
    return path


REASONS = {"zero": "is a device, not a regular file", "fifo": "is a FIFO, not a regular file",
           "big": f"larger than {MAX_ENV_FILE_BYTES} bytes",
           "latin1": "not UTF-8 text (byte 22)"}


@pytest.mark.no_store  # refused before settings are read: no store is opened
@pytest.mark.parametrize("kind", sorted(REASONS))
def test_up_refuses_an_endless_blocking_huge_or_binary_env_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setenv("FORGE_RUNTIME_PREFIX", runtime_prefix("e"))
    monkeypatch.delenv("STORAGE_ROOT", raising=False)
    env_file, root = _hostile(tmp_path, kind), tmp_path / "root"
    result = run([*FORGE, "up", "--storage", str(root), "--env-file", str(env_file)])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"--env-file: {env_file}: {REASONS[kind]}"]
    assert not root.exists()


def _pipe_path(content: bytes) -> tuple[Path, int]:
    """What `--env-file <(command)` passes: /dev/fd/<n> of a pipe `command` writes."""
    read_end, write_end = os.pipe()

    def write() -> None:
        with contextlib.suppress(BrokenPipeError), os.fdopen(write_end, "wb") as out:
            out.write(content)

    threading.Thread(target=write, daemon=True).start()
    return Path(f"/dev/fd/{read_end}"), read_end


def test_a_process_substitution_is_read_up_to_the_cap() -> None:
    """`forge up --env-file <(sops -d forge.env)` keeps working: the shell's pipe (its
    writer already runs) is read, bounded; only a FIFO of the file system is refused."""
    path, fd = _pipe_path(b"FORGE_ENV=dev\nexport NAME='value'\n")
    try:
        assert read_env_file(path) == {"FORGE_ENV": "dev", "NAME": "value"}
    finally:
        os.close(fd)
    path, fd = _pipe_path(b"A=" + b"x" * (2 * MAX_ENV_FILE_BYTES))
    try:
        with pytest.raises(EnvFileError, match=f"larger than {MAX_ENV_FILE_BYTES} bytes"):
            read_env_file(path)
    finally:
        os.close(fd)
