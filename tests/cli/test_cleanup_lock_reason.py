"""`forge runtime cleanup` refused while another command holds the storage root says why
in that holder's terms. A `forge store copy` holding it was answered "stop it first (a
running orchestrator's labs being built would be destroyed)": a copy runs no
orchestrator and builds no lab, so the operator was given a false reason to kill it
mid-copy. Refused before any runtime work: nothing of the engine is touched."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from forge.cli.runtime import app
from forge.stack.lock import CLEANUP, COPY, UP, StorageLock

from ..support.configured_runtime import runtime_env
from ..support.prefixes import runtime_prefix


def test_a_cleanup_refused_names_the_holders_own_reason(tmp_path: Path) -> None:
    env = runtime_env(tmp_path, runtime_prefix("k"))
    for holder, why in ((UP, "a running orchestrator's labs being built would be destroyed"),
                        (CLEANUP, "one cleanup at a time"),
                        (COPY, "or let it end: one command holds the storage root at a time")):
        held = StorageLock.acquire(tmp_path, holder)
        try:
            refused = CliRunner().invoke(app, ["cleanup"], env=env)
        finally:
            held.release()
        assert refused.exit_code == 1, refused.output
        assert "cleanup refused: " in refused.output and f"stop it first ({why})" in \
            refused.output, refused.output
        if holder != UP:
            assert "orchestrator" not in refused.output, refused.output
