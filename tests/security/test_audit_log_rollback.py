"""Attack: put back an older copy of an audit log (with its head file), to erase what was
audited since: a verdict, a retention hold, a scenario's end.

An older copy is a valid chain with a valid signed head, so `forge audit verify` used to
say OK. The verdicts stored on the same root give it away: the global log must hold the
`score.finalized` entry of each one, and a scenario's log must reach the entry its verdict
(score.json) sealed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from forge.audit.log import global_log, scenario_log
from forge.cli import app as forge_cli

from ..scoreboard.conftest import MakeBoard, make_board  # noqa: F401 (fixture)
from .test_credential_forgery import _scored


def _verify(env: dict[str, str], *args: str) -> tuple[int, str]:
    out = CliRunner().invoke(forge_cli, ["audit", "verify", *args], env=env)
    return out.exit_code, out.output


async def test_a_rolled_back_global_log_is_broken(
        make_board: MakeBoard, tmp_path: Path) -> None:  # noqa: F811
    board = await make_board()
    env, root = board.cli_env(), board.settings.storage_root
    await _scored(board, tenant="acme", subject="alice")
    log = global_log(root)
    saved = tmp_path / "saved"
    saved.mkdir()
    log.checkpoint(board.keyring().current())  # signed head, as every 100 entries
    for path in (log.path, log.head_path):
        shutil.copy2(path, saved / path.name)
    later = await _scored(board, tenant="acme", subject="bob")
    assert _verify(env)[0] == 0

    for path in (log.path, log.head_path):  # the older copy, head file and all
        shutil.copy2(saved / path.name, path)
    # And a line in the verdict's scenario log that is JSON but no entry, naming the
    # event: the check read it as one and stopped with a traceback (AttributeError),
    # saying nothing of the rollback.
    own = scenario_log(root, later).path
    own.write_bytes(b'"score.finalized"\n' + own.read_bytes())
    code, out = _verify(env)
    assert code == 1, out
    assert f"lacks the score.finalized entry of 1 verdict(s) stored here ({later})" in out


async def test_a_scenario_log_rolled_back_to_before_its_verdict_is_broken(
        make_board: MakeBoard) -> None:  # noqa: F811
    board = await make_board()
    env, root = board.cli_env(), board.settings.storage_root
    sid = await _scored(board, tenant="acme", subject="alice")
    assert _verify(env, "--scenario", sid)[0] == 0
    log = scenario_log(root, sid)
    lines = log.path.read_bytes().splitlines(keepends=True)
    # Back to how it was while the lab ran: before its end, before any head file.
    cut = next(i for i, line in enumerate(lines) if b"scenario.completed" in line)
    log.path.write_bytes(b"".join(lines[:cut]))
    log.head_path.unlink()
    code, out = _verify(env, "--scenario", sid)
    assert code == 1, out
    assert "where its verdict (score.json) sealed" in out
