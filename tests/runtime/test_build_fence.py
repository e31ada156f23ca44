"""BuildFence on its own (no lab, no root): what it makes on disk, and which waits it
never takes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from forge.runtime.local.build_fence import BuildFence


def test_a_fresh_state_directory_made_by_a_fence_is_owner_only(tmp_path: Path) -> None:
    # A create's first step is now the fence, before the create's own
    # makedirs(state_dir, 0o700): the state directory must not come out 0755.
    old = os.umask(0o022)
    try:
        fence = BuildFence(str(tmp_path / "runtime"))
        with fence.building("fgdm.scn-00000000000000a1"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "runtime").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "runtime" / ".fence").stat().st_mode) == 0o700
