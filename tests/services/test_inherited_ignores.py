"""A service started with SIGHUP or SIGQUIT ignored (`nohup forge up`, a script's `&`) still
ignores them, but the programs it starts (learners' terminals, lab services) do not: under
nohup every lab process ignored hang-ups, so a terminal whose shell was killed stayed open,
its slot held, until its idle timeout."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import os, signal, subprocess
    signal.signal(signal.SIGHUP, signal.SIG_IGN)    # what nohup leaves
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)   # what a script's `&` leaves
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)   # not ours to change
    from forge.services.common.serving import still_ignored_not_inherited
    still_ignored_not_inherited()
    os.kill(os.getpid(), signal.SIGHUP)             # the service itself still ignores them
    os.kill(os.getpid(), signal.SIGQUIT)
    line = subprocess.run(["grep", "^SigIgn:", "/proc/self/status"], capture_output=True,
                          text=True, check=True).stdout
    print(int(line.split()[1], 16))
""")


def test_a_started_program_gets_the_default_action_back() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    ignored = int(out.stdout.strip())
    bit = {name: 1 << (number - 1) for name, number in
           (("HUP", 1), ("QUIT", 3), ("USR1", 10))}
    assert not ignored & bit["HUP"] and not ignored & bit["QUIT"]
    assert ignored & bit["USR1"]  # an ignore the service did not inherit for these is kept
