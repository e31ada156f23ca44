"""A temporary folder other users may traverse, as the folder above an operator's storage
root usually is (pytest's own temporary folders are 0700: another user could not reach a
root below them, which would hide what such a user could do)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def traversable_folder(prefix: str) -> Iterator[Path]:
    """A new 0755 folder under the system's temporary folder, removed with what is in it."""
    top = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(top, 0o755)  # noqa: S103 - the situation under test
    try:
        yield top
    finally:
        shutil.rmtree(top)
