"""Attack: steer a grading check from dotfiles in the learner's home.

A check ran with HOME=/home: its /home is the snapshot of the learner's own files. So a
learner's `~/.curlrc` steered a curl check (`write-out`, `connect-to`, a proxy of theirs)
and a `.pth` file in `~/.local/lib/python3.X/site-packages` ran inside any `python3`
check without `-I`: it read the expected values from stdin and printed a PASS the grader,
the scoreboard and the offline verifier all agreed on. A check now runs with HOME,
XDG_CONFIG_HOME and CURL_HOME pointing nowhere, WGETRC at /dev/null and Python's user
site off; the learner's files are still what the check looks at.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, Limits, SubnetSpec
from forge.runtime.local import LocalRuntime
from tests.support.one_lab import one_lab

pytestmark = pytest.mark.root
PYVER = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the machine's userland


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[LocalRuntime, str]]:
    lab_id = "dot-" + secrets.token_hex(4)
    box = HostSpec("box", networks=[("lan", "10.93.7.10")],
                   command="exec python3 -m http.server 8080 --bind 10.93.7.10 --directory /srv")
    with one_lab(tmp_path / "state", LabSpec(lab_id, [SubnetSpec("lan", "10.93.7.0/24")],
                                             [box], Limits(memory_mb=256, disk_mb=16))) as rt:
        yield rt, lab_id


def test_a_check_reads_nothing_from_the_learners_home(lab: tuple[LocalRuntime, str]) -> None:
    rt, lab_id = lab
    planted = rt.exec(lab_id, "box", shell=(
        "set -e; printf 'write-out = \"FORGED\\\\n\"\\n' > $HOME/.curlrc; "
        f"d=$HOME/.local/lib/{PYVER}/site-packages; mkdir -p $d; "
        "echo 'import os,sys; sys.stdout.write(\"PASS \"+sys.stdin.read()); "
        "sys.stdout.flush(); os._exit(0)' > $d/zz.py; echo 'import zz' > $d/zz.pth; "
        "echo 'print(\"PASS planted\")' > /workspace/json.py"),
        timeout=20)
    assert planted.exit_code == 0, planted.stderr_text
    rt.seal(lab_id)
    env = rt.run_check(lab_id, "box", ["/usr/bin/env"], timeout=10).stdout_text
    assert "HOME=/nonexistent" in env.splitlines() and "PYTHONNOUSERSITE=1" in env
    assert "PYTHONSAFEPATH=1" in env
    curl = rt.run_check(lab_id, "box", ["/usr/bin/curl", "-sS", "--max-time", "5",
                                        "-o", "/dev/null", "http://10.93.7.10:8080/"],
                        timeout=15)
    assert "FORGED" not in curl.stdout_text  # the learner's ~/.curlrc was not read
    py = rt.run_check(lab_id, "box", ["/usr/bin/python3", "-c", "print('ran the check')"],
                      stdin=b"the-expected-value\n", timeout=15)
    assert py.stdout_text == "ran the check\n", py.stdout_text + py.stderr_text
    # Nor from the working directory (/workspace, the learner's): `python3 -c` and `-m`
    # put it first on the import path.
    for argv in (["-c", "import json; print('real check')"], ["-m", "json.tool", "/dev/null"]):
        planted = rt.run_check(lab_id, "box", ["/usr/bin/python3", *argv], timeout=15)
        assert "PASS planted" not in planted.stdout_text, argv
    # ...and the learner's files are still what a check looks at.
    seen = rt.run_check(lab_id, "box", ["/bin/cat", "/home/.curlrc"], timeout=10)
    assert "FORGED" in seen.stdout_text
