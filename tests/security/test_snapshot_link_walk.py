"""Attack: keep the grader busy following the learner's links, and the lab stuck in grading.

The snapshot a check reads follows every symbolic link of /home, /workspace and /srv, link
by link (`treepath.open_file`), up to 40 links of ~2,000 components (``../``) each per
lookup. A chain of 41 such links and links to its head cost the orchestrator ~0.1 s of
CPU each, outside the lab's CPU quota: 342 links (220 KB of the lab's disk) took a netplus
grading from ~6 s to 64 s (15 s of orchestrator CPU); the 16,000 a lab's disk holds, half
an hour per snapshot, at every seal and every "Check this task". Now the links of one
snapshot together get `MAX_LINK_STEPS` steps: past them the snapshot is incomplete and no
check runs (exit 125, saying why), as past 20,000 entries. Ordinary links still resolve.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import Limits
from forge.runtime.local import LocalRuntime
from forge.runtime.local.grader import NOT_RUN_EXIT
from tests.runtime.helpers import simple_lab
from tests.support.one_lab import one_lab

pytestmark = pytest.mark.root

# 41 links, each ~3,400 characters: 700 "../", the next link as a middle component, then
# 640 "../" more (kept in the queue while the next link's target is walked); and links to
# the chain's head.
CHAIN = """
cd /workspace
i=0
while [ $i -le 40 ]; do
  up=$(printf '../%.0s' $(seq 700)); back=$(printf '../%.0s' $(seq 640))
  ln -s "${up}workspace/c$((i + 1))/${back}x" "c$i"
  i=$((i + 1))
done
for e in $(seq 20); do ln -s c0 "e$e"; done
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[LocalRuntime, str]]:
    lab_id = "links-" + secrets.token_hex(4)
    with one_lab(tmp_path / "state",
                 simple_lab(lab_id, Limits(memory_mb=256, disk_mb=64))) as rt:
        yield rt, lab_id


def test_a_link_chain_does_not_keep_the_grader_walking(
        lab: tuple[LocalRuntime, str]) -> None:
    rt, lab_id = lab
    made = rt.exec(lab_id, "box", shell=CHAIN, timeout=120)
    assert made.exit_code == 0, made.stderr
    rt.seal(lab_id)
    result = rt.run_check(lab_id, "box", ["/bin/true"], timeout=30)
    assert result.exit_code == NOT_RUN_EXIT
    assert b"links in the trees take more than" in result.stderr


def test_ordinary_links_are_still_followed(lab: tuple[LocalRuntime, str]) -> None:
    rt, lab_id = lab
    made = rt.exec(lab_id, "box", timeout=120, shell=(
        "mkdir -p /home/dots && echo answer > /workspace/answer.txt && "
        "for i in $(seq 2000); do ln -s ../../workspace/answer.txt /home/dots/a$i; done"))
    assert made.exit_code == 0, made.stderr
    rt.seal(lab_id)
    read = rt.run_check(lab_id, "box", ["/bin/cat", "/home/dots/a2000"], timeout=30)
    assert (read.exit_code, read.stdout) == (0, b"answer\n")
