"""Attack: a learner opens /dev/ptmx until refused, to leave every other lab without a
pseudo-terminal (``script``, ``sshd``, ``tmux`` inside a lab all need one).

bubblewrap's own devpts instance has no cap, so the kernel's machine-wide limit was the
only one: one lab took 3,068 and another lab's ``script`` failed with "No space left on
device". Each host now has an instance of its own capped at MAX_PTYS_PER_HOST."""

from __future__ import annotations

import errno
import secrets
import time
from pathlib import Path

import pytest

from forge.runtime.local.host_ptys import MAX_PTYS_PER_HOST
from tests.runtime.helpers import simple_lab
from tests.support.one_lab import one_lab

pytestmark = pytest.mark.root

HOG = """import os, time
held = []
try:
    while len(held) < 5000:
        held.append(os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY))
except OSError as exc:
    open("/workspace/held.part", "w").write(f"{len(held)} {exc.errno}")
    os.rename("/workspace/held.part", "/workspace/held")
time.sleep(120)
"""
ONE = "import os, pty; master, slave = pty.openpty(); print(os.ttyname(slave))"


def test_a_host_cannot_take_the_pseudo_terminals_of_other_labs(tmp_path: Path) -> None:
    hog, other = "pty-" + secrets.token_hex(3), "pty2-" + secrets.token_hex(3)
    spec = simple_lab(hog, command="python3 /srv/hog.py", files={"/srv/hog.py": HOG})
    with one_lab(tmp_path / "state", spec) as rt:
        rt.create(simple_lab(other))
        # The hog's service holds what it opened while the other lab asks for one.
        deadline = time.monotonic() + 30
        while True:
            held = rt.exec(hog, "box", ["cat", "/workspace/held"]).stdout_text.split()
            if held or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert held, "the hog never finished opening"
        opened, err = int(held[0]), int(held[1])
        assert opened <= MAX_PTYS_PER_HOST and err == errno.ENOSPC  # the host's own cap
        res = rt.exec(other, "box", ["python3", "-c", ONE])
        assert res.exit_code == 0 and res.stdout_text.startswith("/dev/pts/"), res.stderr_text
        full = rt.exec(hog, "box", ["python3", "-c", ONE])
        assert full.exit_code != 0  # only the hog's own host is out of them
