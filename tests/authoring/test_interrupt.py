"""Ctrl-C in the middle of `forge lab test` leaves no lab behind: the labs already started
are destroyed (network namespaces, processes, cgroups), and the exit code says so."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from forge.config.settings import load_settings
from forge.content import content_path
from forge.runtime.base import LabNotFound, Runtime, RuntimeFault

from ..support.configured_runtime import runtime_of
from .conftest import FORGE

pytestmark = pytest.mark.root


def netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


SLOW_MARK = "/workspace/.slow-partial-running"


def slow_cissp(root: Path) -> Path:
    """The shipped cissp lab whose test plan has one more partial that takes ten minutes
    (typed in a terminal, it leaves a mark first), so the run is certainly still going when
    the interrupt comes (a whole `forge lab test cissp` takes about 2 s)."""
    templates, solutions = root / "templates", root / "solutions"
    templates.mkdir()
    solutions.mkdir()
    shipped = content_path("templates")
    (templates / "cissp.yaml").write_bytes((shipped / "cissp.yaml").read_bytes())
    (solutions / "cissp.sh").write_bytes(
        (content_path("solutions") / "cissp.sh").read_bytes())
    plan = (shipped / "cissp.lab-test.yaml").read_text()
    plan = plan.replace("partials:\n", "partials:\n  - name: slow\n    expected_score: 0.5\n"
                        f"    script: touch {SLOW_MARK}; sleep 600\n", 1)
    assert "name: slow" in plan
    (templates / "cissp.lab-test.yaml").write_text(plan)
    return templates


def slow_running(runtime: Runtime) -> bool:
    """True once a lab of the run shows the slow partial's mark."""
    for lab in runtime.list():
        try:
            done = runtime.exec(lab.lab_id, "learner", ["/usr/bin/test", "-e", SLOW_MARK],
                                timeout=10)
        except (LabNotFound, RuntimeFault, OSError):  # a lab being created or destroyed just now
            continue
        if done.exit_code == 0:
            return True
    return False


def test_interrupted_lab_test_destroys_its_labs(forge_env: dict[str, str],
                                                tmp_path: Path) -> None:
    with runtime_of(load_settings(forge_env)) as runtime:
        prefix = forge_env["FORGE_RUNTIME_PREFIX"] + "."
        templates = slow_cissp(tmp_path)
        # Started as from a background job, which inherits SIGINT ignored: `forge lab test`
        # must still take Ctrl-C (Python installs no handler of its own then).
        proc = subprocess.Popen([*FORGE, "lab", "test", "cissp", "--dir", str(templates)],
                                env=forge_env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            # A lab is in the state directory a moment before its namespaces exist: wait for
            # both, so the interrupt lands on labs that really hold kernel objects.
            deadline = time.monotonic() + 60
            while (time.monotonic() < deadline and proc.poll() is None
                   and not (runtime.list() and any(n.startswith(prefix) for n in netns_names()))):
                time.sleep(0.05)
            assert runtime.list(), "no lab was started"
            assert any(n.startswith(prefix) for n in netns_names())
            # Interrupt while the slow partial's script runs in its terminal: the run must
            # stop waiting for it at once (not after the script or its 120 s typing timeout).
            while time.monotonic() < deadline and proc.poll() is None and not slow_running(runtime):
                time.sleep(0.1)
            assert slow_running(runtime), "the slow partial never started"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, out + err
        assert "interrupted: the labs started were destroyed" in err
        assert runtime.list() == []
        assert not [n for n in netns_names() if n.startswith(prefix)]
        mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True,
                                text=True, check=True).stdout
        assert forge_env["STORAGE_ROOT"] not in mounts
