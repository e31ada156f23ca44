"""Runbook, "Offline verdict verification": the command copied from the runbook, run from the
installation's directory (so `storage/...` resolves) in a fresh venv holding only the
verifier's two dependencies, on artifacts a real platform run stored."""

from __future__ import annotations

import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.venvs import create_venv

from .conftest import REPO, Drill, spawn_lab, submit, wait_verdict

RUNBOOKS = (REPO / "docs" / "operator_runbook.md", REPO.parent / "shared" / "seed"
            / "operator_runbook.md")


def runbook_command() -> list[str]:
    """The verify command exactly as the runbook prints it (line continuations joined)."""
    doc = next(p for p in RUNBOOKS if p.exists()).read_text(encoding="utf-8")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", doc, re.DOTALL)
    block = next(b for b in blocks if "scripts/verify_verdict.py" in b
                 and "<scenario_id>" in b)
    line = next(part for part in block.replace("\\\n", " ").splitlines()
                if "scripts/verify_verdict.py" in part)
    return shlex.split(line.lstrip("$ "))


def bare_venv(root: Path) -> Path:
    """A fresh venv with only cryptography and zstandard (from the local wheelhouse)."""
    # create_venv links the interpreter (symlinks), never copies it: a copy still open for
    # writing while the other thread forks would make its exec fail with "Text file busy".
    return create_venv(root, "cryptography", "zstandard")


@pytest.mark.slow
@pytest.mark.root
def test_runbook_verify_command_in_clean_venv(drill: Drill, tmp_path: Path) -> None:
    argv = runbook_command()
    assert argv[:2] == ["python", "scripts/verify_verdict.py"], argv
    with ThreadPoolExecutor(1) as pool:
        made = pool.submit(bare_venv, tmp_path / "bare")
        drill.forge_ok("keys", "generate")
        drill.start()
        learner = drill.learner("acme", "vera")
        sid = spawn_lab(drill, learner)
        submit(drill, learner, sid)
        wait_verdict(drill, learner, sid)
        python = made.result()
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True, check=True).stdout
    names = {line.split("==")[0].lower() for line in installed.split()}
    assert {"cryptography", "zstandard"} <= names
    assert not names & {"forge", "frostgate-forge", "frostgate-forge-verify", "pydantic",
                        "pyjwt", "sqlalchemy"}

    # The operator's working directory: the checkout's scripts/ beside the storage/ root.
    (drill.root / "scripts").symlink_to(REPO / "scripts")
    bundle = next(drill.results(sid).glob("evidence.tar.*")).name
    args = [a.replace("<scenario_id>", sid).replace("<evidence_bundle>", bundle)
            for a in argv[1:]]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(python), *args, *extra], cwd=drill.root,
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin"})

    ok = run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"PASS {sid}")
    trusted = drill.root / "trusted"
    drill.forge_ok("keys", "export-public", "--out", str(trusted))
    proven = run("--trusted-key", str(trusted))
    assert proven.returncode == 0, proven.stdout

    # Tampering with the stored score is caught by the same command.
    score = drill.results(sid) / "score.json"
    score.write_bytes(score.read_bytes().replace(b'"total"', b'"totaI"', 1))
    tampered = run()
    assert tampered.returncode == 1 and tampered.stdout.startswith("FAIL"), tampered.stdout
