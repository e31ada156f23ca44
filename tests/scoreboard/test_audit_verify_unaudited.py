"""`forge audit verify` after a scoreboard killed between a verdict's results and its audit.

The results are written first, then the verdict is audited (`scoreboard.written`): a kill
in between leaves a stored score.json that no log names yet, which the next delivery of
the completion audits. That is a verdict still being sealed, not a log put back to an
older copy: the check must not call it a rollback.
"""

from __future__ import annotations

from typer.testing import CliRunner

from forge.audit.log import global_log
from forge.cli import app as forge_cli
from forge.cli.audit import _verdicts_missing
from forge.store.db import Database

from .test_finalized_once import Replicas, replicas, stores  # noqa: F401 (fixtures)


def _verify(replicas: Replicas, name: str) -> tuple[int, str]:  # noqa: F811 (fixture name)
    out = CliRunner().invoke(forge_cli, ["audit", "verify", "--keys-dir", str(replicas.keys)],
                             env=replicas.environ(name))
    return out.exit_code, out.output


def test_a_verdict_not_yet_audited_is_no_rollback(
        replicas: Replicas, stores: list[Database]) -> None:  # noqa: F811
    replicas.results = replicas.tmp_path / "board-a"  # one machine: results on its root
    scorer = replicas.scorer("board-a", stores[0])
    event, pack = replicas.completion()
    scorer.score(event, pack)  # an earlier verdict: the global log exists
    assert _verify(replicas, "board-a")[0] == 0

    later, later_pack = replicas.completion()
    replicas.kill_scoring(later, "board-a", "scoreboard.written")
    assert (replicas.results / "scenarios" / later.scenario_id / "results").is_dir()
    code, out = _verify(replicas, "board-a")
    assert code == 0, out

    # Delivered again, it is audited, and the log holds it.
    replicas.scorer("board-a", stores[0]).score(later, later_pack)
    code, out = _verify(replicas, "board-a")
    assert code == 0, out


def test_a_verdict_sealed_while_the_check_runs_is_no_rollback(
        replicas: Replicas, stores: list[Database]) -> None:  # noqa: F811
    """The check reads the global log, then lists the verdicts stored: one scored and sealed
    in between (a live scoreboard) is on disk, in its scenario's log, no longer marked
    unsealed, and not in the copy of the global log read before it."""
    replicas.results = replicas.tmp_path / "board-a"
    root = replicas.tmp_path / "board-a"
    scorer = replicas.scorer("board-a", stores[0])
    scorer.score(*replicas.completion())
    read_first = global_log(root).read_bytes()  # what `forge audit verify` read at its start
    scorer.score(*replicas.completion())  # meanwhile, sealed in full
    assert _verdicts_missing(root, read_first) == []
