"""The runtime's process raises its open-files soft limit to the hard one: ready warm-pool
hosts hold a pipe each, and 1,024 would make the store, the bus and new labs fail with
EMFILE well before a node is full."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import resource, sys
from forge.runtime.local.runtime import LocalRuntime
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
rt = LocalRuntime(sys.argv[1], prefix="fdl")
print(*resource.getrlimit(resource.RLIMIT_NOFILE))
rt.close()
"""


def test_a_runtime_lifts_its_soft_open_files_limit(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    soft_after, hard_after = int(out[0]), int(out[1])
    assert hard_after == hard
    assert soft_after == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    assert soft_after > 256
