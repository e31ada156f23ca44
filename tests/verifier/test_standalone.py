"""The standalone verifier as a learner installs it: the wheel built from verifier/, in a
fresh venv holding nothing but it, cryptography and zstandard (installed from the local
wheelhouse), checking a verdict Forge produced."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.evidence.sample import SCENARIO_ID, build, fixed_key, write_files
from tests.support.venvs import REPO, create_venv

FILES = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")
# What may sit in the venv besides the verifier: its two dependencies, theirs, and pip's own.
ALLOWED = {"frostgate-forge-verify", "cryptography", "zstandard", "cffi", "pycparser", "pip",
           "setuptools"}


@dataclass(frozen=True)
class Standalone:
    """A venv with only the verifier wheel installed, and the wheel itself."""

    root: Path
    python: Path
    wheel: Path

    @property
    def command(self) -> Path:
        """The `forge-verify` console script of the venv."""
        return self.root / "bin" / "forge-verify"


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """Build the verifier wheel from verifier/ and install it alone into a fresh venv."""
    dist = tmp_path_factory.mktemp("verifier-dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(dist), str(REPO / "verifier")], check=True, capture_output=True,
                   timeout=300)
    wheel = next(dist.glob("frostgate_forge_verify-*.whl"))
    root = tmp_path_factory.mktemp("verifier-venv")
    yield Standalone(root, create_venv(root, str(wheel)), wheel)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def verdict(tmp_path: Path) -> dict[str, Path]:
    """The four files of a verdict Forge built and signed, in a directory outside the repo."""
    return write_files(build(tmp_path / "work"), tmp_path / "results")


def _run(argv: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run with a bare environment, away from the checkout (nothing found by accident)."""
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})


def _args(files: dict[str, Path]) -> list[str | Path]:
    return [files[name] for name in FILES]


def test_wheel_declares_only_cryptography_and_zstandard(standalone: Standalone) -> None:
    with zipfile.ZipFile(standalone.wheel) as whl:
        names = whl.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = [line.split(":", 1)[1].strip() for line in
                    whl.read(meta).decode().splitlines() if line.startswith("Requires-Dist:")]
        entry = whl.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert sorted(r.split(">")[0].split("=")[0].strip() for r in requires) == [
        "cryptography", "zstandard"]
    assert "forge-verify = forge_verify:main" in entry
    assert all(n.startswith(("forge_verify/", "frostgate_forge_verify-")) for n in names)


def test_venv_holds_nothing_but_the_verifier(standalone: Standalone, tmp_path: Path) -> None:
    listed = _run([standalone.python, "-m", "pip", "list", "--format=freeze"], tmp_path)
    names = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert "frostgate-forge-verify" in names
    assert names <= ALLOWED, names - ALLOWED
    probe = _run([standalone.python, "-c",
                  "import forge_verify, importlib.util as u; print(forge_verify.__file__); "
                  "print(u.find_spec('forge'))"], tmp_path)
    where, forge = probe.stdout.split()
    assert Path(where).is_relative_to(standalone.root), where  # the wheel, not the checkout
    assert forge == "None"


def test_forge_verify_passes_a_forge_verdict(standalone: Standalone,
                                             verdict: dict[str, Path], tmp_path: Path) -> None:
    ok = _run([standalone.command, *_args(verdict)], tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"PASS {SCENARIO_ID}")
    assert "checks were not judged again: their origin is not proven" in ok.stdout
    assert "audit chain intact" in ok.stdout
    assert "only integrity was proven, not origin" in ok.stdout

    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(fixed_key().public_pem())
    proven = _run([standalone.command, *_args(verdict), "--trusted-key", trusted, "--json"],
                  tmp_path)
    assert proven.returncode == 0, proven.stdout + proven.stderr
    report = json.loads(proven.stdout)
    assert (report["status"], report["origin"]) == ("PASS", "proven")
    assert any("every check judged again from criteria.json agrees" in c
               for c in report["checked"])


def test_forge_verify_fails_a_tampered_score_with_the_reason(
        standalone: Standalone, verdict: dict[str, Path], tmp_path: Path) -> None:
    score = verdict["score.json"]
    score.write_bytes(score.read_bytes().replace(b'"score":0.75', b'"score":1.00'))
    bad = _run([standalone.command, *_args(verdict)], tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert bad.stdout.startswith("FAIL")
    assert "[score_digest_mismatch] score.json: sha256 differs from the signed statement" \
        in bad.stdout
    assert "[score_inconsistent]" in bad.stdout  # 1.00 is not what its criteria give


def test_forge_verify_usage_and_unreadable_input_exit_2(
        standalone: Standalone, verdict: dict[str, Path], tmp_path: Path) -> None:
    usage = _run([standalone.command, verdict["score.json"]], tmp_path)
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: forge-verify")
    assert "the following arguments are required: bundle, sig, pub" in usage.stderr
    missing = _run([standalone.command, *_args(verdict)[:3], tmp_path / "nope.pub"], tmp_path)
    assert missing.returncode == 2
    assert missing.stdout.startswith("ERROR verdict.pub") and "file not found" in missing.stdout


def test_python_dash_m_and_the_runbook_script_run_the_same_main(
        standalone: Standalone, verdict: dict[str, Path], tmp_path: Path) -> None:
    console = _run([standalone.command, *_args(verdict)], tmp_path)
    module = _run([standalone.python, "-m", "forge_verify", *_args(verdict)], tmp_path)
    assert module.returncode == 0 and module.stdout == console.stdout
    usage = _run([standalone.python, "-m", "forge_verify"], tmp_path)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: python -m forge_verify")

    # The runbook's script, copied away from the checkout: it uses the installed forge_verify.
    script = tmp_path / "verify_verdict.py"
    shutil.copy(REPO / "scripts" / "verify_verdict.py", script)
    copied = _run([standalone.python, script, *_args(verdict)], tmp_path)
    assert copied.returncode == 0 and copied.stdout == console.stdout
    # The same copy where no forge_verify is installed (no site-packages at all): exit 2
    # saying what to do, never a traceback and the exit 1 of a FAIL (audit AS).
    alone = _run([sys.executable, "-I", "-S", script, *_args(verdict)], tmp_path)
    assert alone.returncode == 2, alone.stderr
    assert "forge_verify" in alone.stderr and "Traceback" not in alone.stderr
    # `forge verify` of the platform prints the same report.
    platform = subprocess.run([sys.executable, "-m", "forge", "verify", *map(str, _args(verdict))],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert platform.returncode == 0 and platform.stdout == console.stdout


def test_forge_verify_checks_a_credential_without_pyjwt(
        standalone: Standalone, verdict: dict[str, Path], tmp_path: Path) -> None:
    """A credential Forge signs with PyJWT verifies in the venv that has no PyJWT (issue 18
    item 5); forgeries are tests/security/test_credential_forgery.py's."""
    from forge.evidence.credentials import CredentialUrls, sign_jwt
    from forge_verify.credential import Achievement, credential_claims

    urls = CredentialUrls("https://forge.example")
    claims = credential_claims(
        credential_id="urn:uuid:00000000-0000-4000-8000-000000000000", issuer_id=urls.issuer,
        issuer_name="FrostGate Forge", issued_at="2026-12-01T00:00:00Z",
        achievement=Achievement(urls.achievement("lab"), "A lab", "What it is.", ("one",)),
        score_doc=json.loads(verdict["score.json"].read_bytes()),
        verdict_sig=verdict["verdict.sig"].read_bytes(), verdict_url=urls.verdict(SCENARIO_ID),
        status_list_url=urls.status_list, status_index=7, identity_salt="00")
    (tmp_path / "credential.vc").write_text(sign_jwt(claims, fixed_key()))
    (tmp_path / "keys.pem").write_bytes(fixed_key().public_pem())
    ok = _run([standalone.command, "credential", "credential.vc", "--trusted-key", "keys.pem"],
              tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"PASS credential for lab {SCENARIO_ID}")
