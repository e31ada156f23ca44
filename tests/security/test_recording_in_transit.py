"""Attack: slipping a terminal recording into the evidence a lab node ships to the scoreboard.

Recordings travel in the evidence pack with the check outputs, and their sha256 is written by
the node into the scenario's audit log (`scenario.completed`) before the pack is built. Before
(no recordings), a pack field carrying one would simply have been bundled and signed. Now the
scoreboard refuses a pack whose recordings differ from the ones the node's audit entry lists
(`evidence_mismatch`), so nobody on the bus can add, drop or swap a recording and get it into
a signed verdict. Real nats-server, scoreboard app and consumer, SQLite.
"""

# ruff: noqa: F811 - `make_board` is a fixture imported from tests/scoreboard/conftest.py

from __future__ import annotations

from pathlib import Path

from forge.bus.evidence_pack import EvidencePack

from ..scoreboard.conftest import (
    MakeBoard,
    build_completion,
    make_board,  # noqa: F401 - the live-scoreboard fixture
)
from .test_evidence_in_transit import inline, node_settings, pack_of, refused

CAST = b'{"height": 24, "version": 2, "width": 80}\n[0.1, "i", "cat /flag\\r"]\n'


async def test_a_recording_the_node_did_not_record_is_refused(make_board: MakeBoard,
                                                              tmp_path: Path) -> None:
    board = await make_board()
    node = node_settings(tmp_path)
    done = build_completion(node, record_in=board.settings)
    honest = pack_of(node, done)
    slipped = EvidencePack(done.scenario_id, honest.audit_log, honest.outputs,
                           {"learner.1.cast": CAST})
    error = await refused(board, inline(done, slipped), "r-slipped")
    assert "evidence_mismatch" in error and "recordings" in error
