"""Run Python code that starts a Forge service in a fresh process (a dev store of its own)
and return what the process printed: for tests of what a real start leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Code to put first in a probe: a real `forge serve` stopped where its server would start
# accepting (the app is built and every module it needs is loaded), calling `report()`.
STOP_AT_ACCEPT = """
import sys
import forge.services.common.serving as serving
def _stop_at_accept(self, sockets=None):
    report()
    raise SystemExit(0)
serving.DrainingServer.run = _stop_at_accept
"""


def run_probe(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` with FORGE_ENV=dev and a store under `tmp_path` (no outer FORGE_ or
    STORAGE_ variable leaks in); bounded to 120 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "STORAGE_"))}
    env.update(FORGE_ENV="dev", STORAGE_ROOT=str(tmp_path / "storage"))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False, env=env, cwd=tmp_path)
