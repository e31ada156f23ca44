"""Labs of this prefix another installation holds (red team AS): `forge runtime cleanup`
run from a directory without the installation's STORAGE_ROOT found every healthy lab of
the prefix `degraded` (no state under the wrong root) and destroyed them, also while
`forge up` ran on the right root. Now such a lab is `foreign`: listed as such, never
cleaned up, never taken by `destroy --all` (it can still be named). A lab this runtime
could not fully destroy keeps its state, so it stays its own (`degraded`) and a cleanup
finishes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli.runtime import app
from forge.runtime.local import LocalRuntime, lab_teardown
from tests.runtime.helpers import leftovers, simple_lab

from ..support.configured_runtime import runtime_env
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root


def test_another_installations_lab_is_foreign_and_left_alone(tmp_path: Path) -> None:
    prefix = runtime_prefix("f")
    mine = LocalRuntime(str(tmp_path / "right-root" / "runtime"), prefix=prefix)
    try:
        mine.create(simple_lab("theirs"))
        elsewhere = LocalRuntime(str(tmp_path / "wrong-root" / "runtime"), prefix=prefix)
        assert [(i.lab_id, i.state) for i in elsewhere.list()] == [("theirs", "foreign")]
        assert elsewhere.cleanup_orphans() == []
        elsewhere.close()

        env = runtime_env(tmp_path / "wrong-root", prefix)
        runner = CliRunner()
        listed = runner.invoke(app, ["list"], env=env)
        assert listed.exit_code == 0 and "theirs  foreign" in listed.output, listed.output
        cleaned = runner.invoke(app, ["cleanup"], env=env)
        assert cleaned.exit_code == 1, cleaned.output
        assert "0 orphaned lab(s) removed" in cleaned.output
        assert "left alone: 1 lab(s) of this prefix with no state" in cleaned.output
        # A root made by the command is announced, with --prefix as without (audit AS).
        fresh = runner.invoke(app, ["list", "--prefix", prefix],
                              env={**env, "STORAGE_ROOT": str(tmp_path / "fresh")})
        assert fresh.exit_code == 0, fresh.output
        assert "creating a new storage root at" in fresh.output
        everything = runner.invoke(app, ["destroy", "--all"], env=env)
        assert everything.exit_code == 2, everything.output  # nothing of this root's
        assert [i.state for i in mine.list()] == ["running"]
        assert mine.exec("theirs", "box", ["/bin/true"]).exit_code == 0
    finally:
        for info in mine.list():
            mine.destroy(info.lab_id)
        mine.close()


def test_a_destroy_that_left_something_keeps_the_lab_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix, state = runtime_prefix("k"), str(tmp_path / "runtime")
    rt = LocalRuntime(state, prefix=prefix)
    try:
        rt.create(simple_lab("stuck"))
        real = lab_teardown.remove_netns

        def refuse(name: str) -> None:
            raise OSError(16, "Device or resource busy")

        monkeypatch.setattr(lab_teardown, "remove_netns", refuse)
        with pytest.raises(OSError, match="destroy stuck incomplete"):
            rt.destroy("stuck")
        monkeypatch.setattr(lab_teardown, "remove_netns", real)
        assert [(i.lab_id, i.state) for i in rt.list()] == [("stuck", "degraded")]
        assert rt.cleanup_orphans() == ["stuck"]
        assert leftovers(prefix, state) == []
    finally:
        for info in rt.list():
            rt.destroy(info.lab_id)
        rt.close()
