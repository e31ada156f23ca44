"""A learner cannot swap a root-owned seed under /srv, /home or /workspace for a file of
their own: the directories holding it stay root's (they used to be given to the learner,
who could then rename the seed away and write their own in its place)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import sh, simple_lab

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root


def test_root_seed_cannot_be_replaced_by_the_learner(tmp_path: Path) -> None:
    rt = LocalRuntime(str(tmp_path / "state"), prefix=runtime_prefix("r"))
    lab = "rootseed-1"
    rt.create(simple_lab(lab, files={
        "/srv/app/conf/policy.txt": "deny\n",     # root's: the learner may only read it
        "/srv/app/conf/notes.txt": "edit me\n",   # the learner's, in the same directory
        "/srv/work/todo.txt": "1\n",               # the learner's, alone
    }, owners={"/srv/app/conf/policy.txt": "root"}))
    try:
        swap = sh(rt, lab, "box", "mv /srv/app/conf/policy.txt /srv/app/conf/old 2>&1; "
                  "mv /srv/app/conf /srv/app/c2 2>&1; mv /srv/app /srv/a2 2>&1; "
                  "echo allow > /srv/app/conf/policy.txt 2>&1; cat /srv/app/conf/policy.txt")
        assert swap.stdout_text.rstrip().endswith("deny"), swap.stdout_text
        assert "Permission denied" in swap.stdout_text
        own = sh(rt, lab, "box", "echo done >> /srv/app/conf/notes.txt && "
                 "echo 2 > /srv/work/todo.txt && touch /srv/work/new && "
                 "stat -c '%U %n' /srv/app /srv/app/conf /srv/work")
        assert own.exit_code == 0, own.stderr_text
        owners = dict(reversed(line.split()) for line in own.stdout_text.splitlines())
        assert owners["/srv/app"] == "root" and owners["/srv/app/conf"] == "root"
        assert owners["/srv/work"] != "root"
    finally:
        rt.destroy(lab)
        rt.close()


def test_root_seed_of_a_pooled_lab_cannot_be_replaced(tmp_path: Path) -> None:
    """A pool lab is built before its scenario's seeds exist, so its top-level data dirs
    start out the learner's; at the claim a dir holding a root seed must become root's
    again, or the learner (owner, whom sticky does not restrict) renames the seed away."""
    rt = LocalRuntime(str(tmp_path / "state"), prefix=runtime_prefix("r"))
    rt.warm({"one": (simple_lab("shape"), 1)}, quiet_s=0.05, poll_s=0.1)
    end = time.monotonic() + 60
    while rt.warm_pool is not None and rt.warm_pool.status()["one"]["ready"] < 1:
        assert time.monotonic() < end, "the pool never filled"
        time.sleep(0.05)
    lab = "rootseed-pool"
    try:
        rt.create(simple_lab(lab, files={"/workspace/check.txt": "expected\n"},
                             owners={"/workspace/check.txt": "root"}))
        assert rt.warm_pool is not None and rt.warm_pool.stats.claimed == 1
        swap = sh(rt, lab, "box", "mv /workspace/check.txt /workspace/old 2>&1; "
                  "echo forged > /workspace/check.txt 2>&1; cat /workspace/check.txt; "
                  "touch /workspace/mine && stat -c '%U' /workspace")
        lines = swap.stdout_text.splitlines()
        assert "Operation not permitted" in swap.stdout_text, swap.stdout_text
        assert lines[-2:] == ["expected", "root"], swap.stdout_text
    finally:
        rt.warm({})
        for info in rt.list():
            rt.destroy(info.lab_id)
        rt.close()
