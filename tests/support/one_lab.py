"""A runtime of a test's own, and one real lab on it, for a test that attacks a lab."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forge.runtime import LabSpec
from forge.runtime.local import LocalRuntime

from .prefixes import runtime_prefix

# Uids high above any real account (a range of 2 ** 31 - 2 at most is accepted).
PRIVATE_UIDS_FROM = 1_900_000_000


@contextmanager
def own_runtime(state: Path, uid_pairs: int | None = None,
                **options: Any) -> Iterator[LocalRuntime]:
    """A LocalRuntime under `state` with a prefix of its own and, given `uid_pairs`, that
    many uid pairs of a range of its own (claims beside `state`), and any other of its
    `options`; every lab it holds is destroyed afterwards, also when the test failed
    midway."""
    uids: dict[str, Any] = {}
    if uid_pairs is not None:
        first = PRIVATE_UIDS_FROM + 2 * uid_pairs * secrets.randbelow(100_000_000 // uid_pairs)
        uids = {"uid_range": (first, 2 * uid_pairs),
                "uid_claims_dir": str(state.with_name(state.name + "-uids"))}
    runtime = LocalRuntime(str(state), prefix=runtime_prefix("o"), **uids, **options)
    try:
        yield runtime
    finally:
        if runtime.warm_pool is not None:
            runtime.warm({})
        for info in runtime.list():
            runtime.destroy(info.lab_id)
        runtime.close()
        shutil.rmtree(state, ignore_errors=True)


@contextmanager
def one_lab(state: Path, spec: LabSpec) -> Iterator[LocalRuntime]:
    """``own_runtime`` under `state` with `spec` created."""
    with own_runtime(state) as runtime:
        runtime.create(spec)
        yield runtime


def pool_lab(runtime: LocalRuntime) -> str:
    """A ready lab of the runtime's warm pool, once it has one (bounded wait)."""
    assert runtime.warm_pool is not None
    end = time.monotonic() + 60
    while not runtime.warm_pool.ready_ids():
        assert time.monotonic() < end, "the pool never filled"
        time.sleep(0.05)
    return runtime.warm_pool.ready_ids()[0]
