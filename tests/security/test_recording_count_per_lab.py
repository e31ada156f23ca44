"""Attack: open more terminal sessions than a lab's evidence can hold.

A lab keeps at most MAX_RECORDINGS terminal recordings, the number an evidence pack carries
(`forge.bus.evidence_pack`). The count used to be per host: a learner with terminals on
several hosts could open MAX_RECORDINGS sessions on each, and the lab's recordings then no
longer fitted in its evidence pack (grading failed, or recordings were lost). Now the count
is per lab, all hosts together; past it no terminal opens, and none opens unrecorded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.runtime.base import RuntimeFault, TtySession
from forge.runtime.recording import (
    MAX_RECORDINGS,
    read_recordings,
    recorded_tty,
    recordings_dir,
)

from ..runtime.test_recording import Scripted

SID = "scn-00000000000000c1"


class Terminals:
    """A runtime whose every `tty` is a fresh scripted session."""

    def tty(self, lab_id: str, host: str, rows: int = 24, cols: int = 80) -> TtySession:
        return Scripted([])


def test_the_recording_count_is_capped_per_lab_across_hosts(tmp_path: Path) -> None:
    directory = recordings_dir(tmp_path, SID)
    directory.mkdir(parents=True, mode=0o700)
    for n in range(1, MAX_RECORDINGS):  # earlier sessions on two hosts, one short of the cap
        host = "router" if n % 2 else "learner"
        (directory / f"{host}.{n}.cast").touch(mode=0o600)
    open_tty = recorded_tty(Terminals(), tmp_path)
    open_tty(SID, "server", 24, 80).close()  # the last one the lab may record
    with pytest.raises(RuntimeFault, match=f"already has {MAX_RECORDINGS} recordings"):
        open_tty(SID, "server", 24, 80)
    with pytest.raises(RuntimeFault):
        open_tty(SID, "attacker", 24, 80)
    assert len(read_recordings(tmp_path, SID)) == MAX_RECORDINGS
