"""Forge installs anywhere: its wheel carries everything `forge demo` needs.

The wheel and sdist are built from this tree; the wheel goes into a fresh venv outside the
checkout (dependencies from the local wheelhouse, never a package index), and `forge demo`
runs from an empty directory with no variable pointing back at the repository. The signed
verdict it produces is then verified by `forge-verify` installed alone in a third venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from ..live_server import distinct_ports
from ..support.prefixes import runtime_prefix
from ..support.venvs import create_venv

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (
    "forge/content/templates/netplus.yaml",
    "forge/content/policies/spawn.rego",
    "forge/content/plans.yaml",
    "forge/content/images/base.yaml",
    "forge/content/solutions/netplus.sh",
    "forge/services/spawn/web/pages/lab.html",
    "forge/services/spawn/web/static/vendor/xterm.js",
    "forge/store/migrations/versions/0001_initial_schema.py",
)


def _build(source: Path, out: Path) -> tuple[Path, Path]:
    """sdist, then the wheel built from that sdist (so the sdist must be complete)."""
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                    str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment minus anything that could lead back to the checkout."""
    drop = ("FORGE_", "NATS_", "PYTHON", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(REPO)))
    env["COLUMNS"] = "220"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    forge_wheel, forge_sdist = _build(REPO, out / "forge")
    verify_wheel, _ = _build(REPO / "verifier", out / "verify")
    return {"forge": forge_wheel, "sdist": forge_sdist, "verify": verify_wheel}


def test_the_wheel_and_sdist_carry_the_package_data(built: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(built["forge"]).namelist())
    missing = [n for n in SHIPPED if n not in names]
    assert not missing, missing
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    with tarfile.open(built["sdist"]) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {f"src/{n}" for n in SHIPPED} <= members
    assert "verifier/pyproject.toml" in members
    assert not any(m.startswith((".venv/", "build/", ".make-stamps/")) for m in members)


@pytest.mark.root
@pytest.mark.usefixtures("sqlite_only_store")
def test_forge_demo_from_an_installed_wheel_in_an_empty_directory(
        built: dict[str, Path], tmp_path: Path) -> None:
    forge_python = create_venv(tmp_path / "forge-venv", str(built["verify"]),
                               str(built["forge"]))
    bindir = forge_python.parent
    where = subprocess.run([str(forge_python), "-c", "import forge; print(forge.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path,
                           env=_clean_env()).stdout.strip()
    assert where.startswith(str(tmp_path / "forge-venv")), where

    empty = tmp_path / "empty"
    empty.mkdir()
    ports = distinct_ports(3)
    env = _clean_env(FORGE_RUNTIME_PREFIX=runtime_prefix("w"),
                     PATH=f"{bindir}{os.pathsep}{_clean_env()['PATH']}")
    demo = subprocess.run(
        [str(bindir / "forge"), "demo", "--storage", "storage",
         "--spawn-port", str(ports[0]), "--orchestrator-port", str(ports[1]),
         "--scoreboard-port", str(ports[2]), "--timeout", "120"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "score 1.00" in demo.stdout and "verified (PASS)" in demo.stdout
    (results,) = (empty / "storage" / "scenarios").glob("scn-*/results")

    # A learner holding the four files and nothing but the verifier's wheel.
    verify_python = create_venv(tmp_path / "verify-venv", str(built["verify"]))
    listed = subprocess.run([str(verify_python), "-m", "pip", "list", "--format=freeze",
                             "--disable-pip-version-check"], capture_output=True, text=True,
                            check=True).stdout
    installed = {line.split("==")[0].lower() for line in listed.split()}
    assert installed <= {"frostgate-forge-verify", "cryptography", "zstandard", "cffi",
                         "pycparser", "pip", "setuptools"}, installed
    verified = subprocess.run(
        [str(verify_python.parent / "forge-verify"), str(results / "score.json"),
         str(results / "evidence.tar.zst"), str(results / "verdict.sig"),
         str(results / "verdict.pub")],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "PASS" in verified.stdout
