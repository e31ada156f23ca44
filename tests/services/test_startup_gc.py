"""A service holds the garbage collector off while it starts (forge.startup_gc) and must
run with it on: a service left without cyclic collection would grow without bound."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.service_start import STOP_AT_ACCEPT, run_probe

# The real entry point and command (`python -m forge serve scoreboard`), stopped where the
# server would start accepting: the state the service then runs in is printed.
CHILD = STOP_AT_ACCEPT + textwrap.dedent("""
    import gc
    def report():
        print(gc.isenabled(), gc.get_freeze_count(), gc.get_count()[0] < 700, flush=True)
    sys.argv = ["forge", "serve", "scoreboard", "--host", "127.0.0.1", "--port", "0"]
    from forge.cli import main
    main()
""")


def test_a_started_service_collects_garbage_and_keeps_its_start_up_out_of_it(
        tmp_path: Path) -> None:
    out = run_probe(CHILD, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    enabled, frozen, young = out.stdout.split()
    assert enabled == "True"
    assert int(frozen) > 50_000  # what start-up built is out of every later collection
    assert young == "True"


def test_a_short_command_runs_with_the_collector_on_too(tmp_path: Path) -> None:
    probe = textwrap.dedent("""
        import gc, sys
        sys.argv = ["forge", "--storage", sys.argv[1], "keys", "generate"]
        from forge.cli import main
        try:
            main()
        finally:
            print(gc.isenabled(), gc.get_freeze_count() > 0)
    """)
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "s")], capture_output=True,
                         text=True, timeout=120, check=False, cwd=tmp_path)
    assert out.stdout.split()[-2:] == ["True", "True"], out.stderr[-2000:]


def test_a_service_that_refuses_to_start_leaves_the_collector_on(tmp_path: Path) -> None:
    # An in-process caller (a supervisor, a test) goes on after the refusal.
    probe = textwrap.dedent("""
        import gc
        import forge.services.common.serving as serving
        def refuse(name, settings):
            raise RuntimeError("policy bundle refused")
        serving.build_service = refuse
        try:
            serving.serve(serving.ServiceName.scoreboard, "127.0.0.1", 0)
        except RuntimeError:
            print(gc.isenabled())
    """)
    out = run_probe(probe, tmp_path)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
