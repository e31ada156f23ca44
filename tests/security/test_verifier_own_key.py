"""A set of verdict files trusted on its own key.

`--trusted-key` proves who signed a verdict only when the keys come from the platform.
Given the results folder itself (`--trusted-key .` run there, or an empty value, which
became "."), the set's own verdict.pub was taken as trusted: files anyone signed with a
key of their own passed with origin proven. Now a trusted key that is, or holds, the
verdict.pub being verified is refused (exit 2), and an empty --trusted-key is a usage
error. Real verifier code, through the same CLI as the runbook's command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli import app
from forge_verify import main, verify_paths

from ..evidence.conftest import artifacts, result_files  # noqa: F401  (fixtures)

FILES = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")


def test_the_sets_own_folder_or_key_is_not_a_trusted_key(
        result_files: dict[str, Path]) -> None:  # noqa: F811
    paths = [result_files[n] for n in FILES]
    for own in (result_files["verdict.pub"].parent, result_files["verdict.pub"]):
        res = verify_paths(*paths, trusted_key=own)
        assert res.error and res.exit_code == 2 and res.origin != "proven"
        assert "proves nothing about who signed them" in res.reasons[0].message
    # the same key exported apart (the platform's keys) still proves origin
    exported = result_files["verdict.pub"].parent.parent / "trusted"
    exported.mkdir()
    (exported / "k.pem").write_bytes(result_files["verdict.pub"].read_bytes())
    res = verify_paths(*paths, trusted_key=exported)
    assert res.ok and res.origin == "proven"


@pytest.mark.parametrize("value", ["", "."])
def test_run_in_the_results_folder_the_cli_refuses_it(
        result_files: dict[str, Path], value: str,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    here = os.getcwd()
    os.chdir(result_files["verdict.pub"].parent)
    try:
        with pytest.raises(SystemExit) as usage:
            code = main(["--trusted-key", value, *FILES])
            raise SystemExit(code)
        assert usage.value.code == 2
        out = capsys.readouterr()
        assert "PASS" not in out.out
        if value == "":
            assert "--trusted-key: empty path" in out.err
        shown = CliRunner().invoke(app, ["verify", *FILES, "--trusted-key", value])
        assert shown.exit_code == 2 and "PASS" not in shown.output
    finally:
        os.chdir(here)
