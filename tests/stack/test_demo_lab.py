"""`forge demo --lab NAME` refuses, before starting anything, a lab it cannot run: unknown,
outside the PRO plan the demo buys, or solved in several terminals (the message names the
option). Runs the real CLI as a process with the shipped templates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from forge.authoring.scaffold import scaffold
from forge.cli.demo import demo_lab
from forge.config import load_settings

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # nothing reaches a store

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("lab", "message"), [
    ("nope", "--lab: unknown lab 'nope'; labs: "),
    ("cissp", "--lab: cissp (cissp, advanced) is not in the PRO plan the demo buys"),
    ("ccna", "--lab: ccna's solution is typed on several hosts"),
])
def test_demo_refuses_a_lab_it_cannot_run(tmp_path: Path, lab: str, message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
    env["COLUMNS"] = "220"
    proc = subprocess.run([sys.executable, "-m", "forge", "demo", "--storage",
                           str(tmp_path / "storage"), "--lab", lab, "--url",
                           "http://127.0.0.1:9", "--scoreboard-url", "http://127.0.0.1:9"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stdout
    assert not (tmp_path / "storage" / "logs").exists()  # no platform was started


def test_demo_runs_the_default_lab_or_the_one_named(tmp_path: Path) -> None:
    settings = load_settings({"STORAGE_ROOT": str(tmp_path)})
    assert demo_lab(settings, None) is None  # the journey's default: netplus
    chosen = demo_lab(settings, "netplus")
    assert chosen is not None and chosen[0] == "netplus" and chosen[1].name == "netplus.sh"


def test_demo_runs_an_authored_lab_with_the_solution_its_test_plan_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/authoring.md's lab (`forge lab new`: NAME.yaml, NAME.lab-test.yaml naming
    NAME.solution.sh, in FORGE_TEMPLATE_DIR) was refused: "has no reference solution
    (vault-code.sh)", a file the author is never told to write. The demo now types the
    solution the test plan names; without a plan it says what to write."""
    labs = tmp_path / "labs"
    scaffold("vault-code", labs, tmp_path / "images")
    settings = load_settings({"STORAGE_ROOT": str(tmp_path), "FORGE_TEMPLATE_DIR": str(labs)})
    assert demo_lab(settings, "vault-code") == ("netplus", labs / "vault-code.solution.sh")

    (labs / "vault-code.lab-test.yaml").unlink()
    with pytest.raises(typer.Exit) as refused:
        demo_lab(settings, "vault-code")
    assert refused.value.exit_code == 2
    said = " ".join(capsys.readouterr().out.split())
    assert ("--lab: vault-code has no reference solution: the demo types the one its test "
            "plan vault-code.lab-test.yaml names (`forge lab new` writes it next to the "
            "template)") in said
