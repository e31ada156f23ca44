"""scripts/verify_verdict.py on a bare machine (only cryptography + zstandard, no Forge and no
forge_verify installed: the script runs the checkout's verifier/src), and `forge verify`,
with the runbook's command line and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from forge.evidence.artifacts import Artifacts, write_results

from .sample import SCENARIO_ID, fixed_key

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "verify_verdict.py"
RESULTS = f"storage/scenarios/{SCENARIO_ID}/results"
RUNBOOK_ARGS = [f"{RESULTS}/score.json", f"{RESULTS}/evidence.tar.zst", f"{RESULTS}/verdict.sig",
                f"{RESULTS}/verdict.pub"]


def _run(python: Path | str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})


def test_runbook_command_in_a_bare_venv(bare_python: Path, artifacts: Artifacts,
                                        tmp_path: Path) -> None:
    installed = subprocess.run([str(bare_python), "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True, check=True).stdout
    names = {line.split("==")[0].lower() for line in installed.split()}
    assert {"cryptography", "zstandard"} <= names
    assert not names & {"frostgate-forge", "frostgate-forge-verify", "pydantic"}
    write_results(tmp_path / "storage", artifacts)
    good = _run(bare_python, RUNBOOK_ARGS, tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith(f"PASS {SCENARIO_ID}")
    assert "only integrity was proven, not origin" in good.stdout
    assert "checks were not judged again: their origin is not proven" in good.stdout

    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(fixed_key().public_pem())
    proven = _run(bare_python, [*RUNBOOK_ARGS, "--trusted-key", str(trusted), "--json"],
                  tmp_path)
    assert proven.returncode == 0
    assert json.loads(proven.stdout)["origin"] == "proven"
    assert any("every check judged again from criteria.json" in c  # judging is stdlib
               for c in json.loads(proven.stdout)["checked"])

    untrusted = tmp_path / "other.pem"
    untrusted.write_bytes(fixed_key(5).public_pem())
    refused = _run(bare_python, [*RUNBOOK_ARGS, "--trusted-key", str(untrusted)], tmp_path)
    assert refused.returncode == 1 and "[untrusted_key]" in refused.stdout

    score = tmp_path / RESULTS / "score.json"
    score.write_bytes(score.read_bytes().replace(b'"score":0.75', b'"score":1.00'))
    tampered = _run(bare_python, RUNBOOK_ARGS, tmp_path)
    assert tampered.returncode == 1
    assert tampered.stdout.startswith("FAIL")
    assert "[score_digest_mismatch]" in tampered.stdout

    missing = _run(bare_python, [*RUNBOOK_ARGS[:3], f"{RESULTS}/nope.pub"], tmp_path)
    assert missing.returncode == 2 and "file not found" in missing.stdout
    usage = _run(bare_python, RUNBOOK_ARGS[:2], tmp_path)
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_verifier_imports_nothing_beyond_stdlib_cryptography_zstandard() -> None:
    code = ("import sys, forge_verify, forge_verify.__main__; "
            "print('\\n'.join(sorted(sys.modules)))")
    mods = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True, timeout=60).stdout.split()
    tops = {m.split(".")[0] for m in mods}
    assert "forge_verify" in tops
    assert tops.isdisjoint({"forge", "pydantic", "filelock", "yaml", "typer", "sqlalchemy",
                            "jwt"})


def test_forge_verify_cli_has_the_same_exit_codes(result_files: dict[str, Path]) -> None:
    args = [sys.executable, "-m", "forge", "verify",
            *(str(result_files[n]) for n in ("score.json", "evidence.tar.zst", "verdict.sig",
                                             "verdict.pub"))]
    ok = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["status"] == "PASS"
    result_files["verdict.pub"].write_bytes(fixed_key(9).public_pem())
    bad = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "[signature_invalid]" in bad.stdout
    result_files["verdict.sig"].unlink()
    gone = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert gone.returncode == 2


def test_a_reader_that_stops_early_changes_no_exit_code(result_files: dict[str, Path]) -> None:
    """`verify_verdict.py … | head -1`: the pipe's reader is gone before the report is
    written. The exit code is still the verdict's (0 PASS, 1 FAIL), with no traceback."""
    args = [sys.executable, str(SCRIPT),
            *(str(result_files[n]) for n in ("score.json", "evidence.tar.zst", "verdict.sig",
                                             "verdict.pub"))]
    for expected in (0, 1):
        if expected == 1:
            result_files["verdict.pub"].write_bytes(fixed_key(9).public_pem())
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # gone before the verifier has written anything
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == expected, err
        assert "Traceback" not in err and "BrokenPipeError" not in err


def _empty_venv(root: Path) -> Path:
    """A venv with nothing installed (no pip either): the runbook's `python` on a machine
    where neither cryptography nor zstandard was installed."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    return root / "bin" / "python"


def test_a_python_without_the_packages_reruns_with_the_checkouts_venv(
        artifacts: Artifacts, tmp_path: Path) -> None:
    """After `make demo`, the printed `python scripts/verify_verdict.py ...` works with a
    system Python that lacks the packages: the script runs again in the checkout's venv."""
    assert (REPO / ".venv" / "bin" / "python").is_file()  # make test runs from it
    write_results(tmp_path / "storage", artifacts)
    result = _run(_empty_venv(tmp_path / "empty"), RUNBOOK_ARGS, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"PASS {SCENARIO_ID}")


def test_without_the_packages_or_a_venv_the_script_says_what_to_install(
        artifacts: Artifacts, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"  # scripts/ and verifier/src, no .venv
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, checkout / "scripts" / "verify_verdict.py")
    shutil.copytree(REPO / "verifier" / "src", checkout / "verifier" / "src")
    write_results(tmp_path / "storage", artifacts)
    result = subprocess.run(
        [str(_empty_venv(tmp_path / "empty")), str(checkout / "scripts" / "verify_verdict.py"),
         *RUNBOOK_ARGS], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "needs cryptography and zstandard" in result.stderr
    assert "make venv" in result.stderr
    assert "apt install python3-cryptography python3-zstandard" in result.stderr
