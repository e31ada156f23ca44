"""A destroy from another runtime instance (another process: an operator's `forge runtime
destroy`, a second orchestrator on the node) while a lab is being created.

Found by an outside pass: such a destroy tore the lab down mid-create and returned; the
create then failed with a raw FileNotFoundError naming a cgroup path, or, claiming a
warm-pool lab, finished, and the lab the destroy had reported gone ran on. The destroy now
waits for the build (build_fence) and then removes the whole lab, and the create succeeds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from forge.runtime.base import LabInfo
from forge.runtime.local import LocalRuntime

from ..support.one_lab import own_runtime, pool_lab
from .helpers import simple_lab

pytestmark = pytest.mark.root

SCENARIO = "scn-00000000000000f1"


def _paused(step: Callable[..., Any], entered: threading.Event,
            go: threading.Event) -> Callable[..., Any]:
    """`step` that first says it was reached, then waits to be let go (bounded)."""
    def wrapper(*args: Any) -> Any:
        entered.set()
        assert go.wait(60), "the test never let the create go on"
        return step(*args)
    return wrapper


@pytest.mark.parametrize(("pooled", "how"), [(False, "destroy"), (True, "destroy"),
                                             (False, "destroy_many")],
                         ids=["fresh-build", "pool-claim", "fresh-build-destroy-many"])
def test_a_destroy_from_another_instance_during_a_create_removes_the_lab(
        tmp_path: Path, pooled: bool, how: str) -> None:
    """`destroy_many` too: the reaper's and `forge up`'s teardown of many labs at once."""
    with own_runtime(tmp_path / "state") as rt:
        other = LocalRuntime(rt.names.state_dir, prefix=rt.names.prefix)  # another process's
        try:
            entered, go = threading.Event(), threading.Event()
            if pooled:
                rt.warm({"one": (simple_lab("x"), 1)}, quiet_s=0.05, poll_s=0.1)
                pool_lab(rt)
                assert rt.warm_pool is not None
                rt.warm_pool.claim = _paused(rt.warm_pool.claim,  # type: ignore[method-assign]
                                             entered, go)
            else:
                rt._build = _paused(rt._build, entered, go)  # type: ignore[method-assign]
            created: list[LabInfo | BaseException] = []

            def create() -> None:
                try:
                    created.append(rt.create(simple_lab(SCENARIO)))
                except BaseException as exc:  # reported by the assertion below
                    created.append(exc)

            creating = threading.Thread(target=create)
            creating.start()
            assert entered.wait(60), "the create never reached its build"
            destroying = threading.Thread(
                target=other.destroy if how == "destroy" else other.destroy_many,
                args=(SCENARIO if how == "destroy" else [SCENARIO],))
            destroying.start()
            destroying.join(1.0)  # room for a destroy that does not wait to run through
            go.set()
            creating.join(120)
            destroying.join(180)
            assert not creating.is_alive() and not destroying.is_alive()
            # The create did what it was asked (no raw error from a lab pulled away under
            # it), and the destroy, which returned, left nothing of the lab running.
            assert len(created) == 1 and isinstance(created[0], LabInfo), created
            assert SCENARIO not in {info.lab_id for info in rt.list()}
            assert not rt._exists(SCENARIO)
        finally:
            other.close()
