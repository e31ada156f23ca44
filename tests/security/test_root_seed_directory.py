"""A learner cannot swap a root-owned seed under /srv, /home or /workspace for a file of
their own: the directories holding it stay root's (they used to be given to the learner,
who could then rename the seed away and write their own in its place)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import sh, simple_lab

pytestmark = pytest.mark.root


def test_root_seed_cannot_be_replaced_by_the_learner(tmp_path: Path) -> None:
    rt = LocalRuntime(str(tmp_path / "state"), prefix="r" + secrets.token_hex(2))
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
