"""One real lab on a runtime of its own, for a test that attacks a single lab."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from forge.runtime import LabSpec
from forge.runtime.local import LocalRuntime


@contextmanager
def one_lab(state: Path, spec: LabSpec) -> Iterator[LocalRuntime]:
    """A LocalRuntime under `state` (a prefix of its own) with `spec` created; every lab
    it holds is destroyed afterwards, also when the test failed midway."""
    runtime = LocalRuntime(str(state), prefix="o" + secrets.token_hex(2))
    try:
        runtime.create(spec)
        yield runtime
    finally:
        for info in runtime.list():
            runtime.destroy(info.lab_id)
        runtime.close()
        shutil.rmtree(state, ignore_errors=True)
