"""The import contract of docs/architecture.md holds: no cycles, services apart, layers kept.

The contract lives in pyproject.toml (`[tool.importlinter]`) and is checked with
import-linter. A second test plants the violations the contract exists to catch in a
throwaway package and checks that the same contract reports each one, so a contract that
silently stopped matching anything would not pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(config: Path, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = f"{extra_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([str(LINT_IMPORTS), str(config), "--no-cache"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_forge_keeps_its_import_contract() -> None:
    result = _lint(REPO / "pyproject.toml", REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def _renamed(value: Any, root: str) -> Any:
    if isinstance(value, str):
        return value.replace("forge", root)
    if isinstance(value, list):
        return [_renamed(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _renamed(v, root) for k, v in value.items()}
    return value


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _write_config(path: Path, root: str) -> None:
    contract = _renamed(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]
                        ["importlinter"], root)
    lines = ["[tool.importlinter]"]
    lines += [f"{k} = {_toml(v)}" for k, v in contract.items() if k != "contracts"]
    for c in contract["contracts"]:
        lines += ["", "[[tool.importlinter.contracts]]"]
        lines += [f"{k} = {_toml(v)}" for k, v in c.items()]
    path.write_text("\n".join(lines) + "\n")


def _package(root: Path, modules: dict[str, str]) -> None:
    for dotted, body in modules.items():
        path = root.joinpath(*dotted.split("."))
        path.mkdir(parents=True, exist_ok=True)
        (path / "__init__.py").write_text(body)


def test_the_contract_catches_a_cycle_a_service_import_and_a_layer_inversion(
        tmp_path: Path) -> None:
    root = "plantedforge"
    _package(tmp_path, {
        root: "",
        # the CLI reaching past the runtime factory into an engine
        f"{root}.cli": f"import {root}.runtime.local\n",
        f"{root}.stack": "",
        f"{root}.services": "",
        f"{root}.services.orchestrator": "",
        # a service importing another service
        f"{root}.services.spawn": f"import {root}.services.scoreboard\n",
        f"{root}.services.scoreboard": "",
        # a cycle between two concepts
        f"{root}.audit": f"import {root}.evidence\n",
        f"{root}.evidence": f"import {root}.audit\n",
        # a record-layer package reaching up into a service
        f"{root}.store": f"import {root}.services.orchestrator\n",
        # a service reaching past the runtime factory into an engine
        f"{root}.services.common": f"import {root}.runtime.local\n",
        f"{root}.runtime.local": "",
        # the standalone verifier reaching into the platform
        f"{root}_verify": f"import {root}.store\n",
        **{f"{root}.{name}": "" for name in (
            "lifecycle", "billing", "entitlements", "identity", "classroom", "quotas", "retention",
            "grading", "policy", "runtime", "bus", "templates", "plans", "signing", "tokens",
            "images", "config", "content", "faults", "errors", "treepath", "detached", "durable",
            "scenario_paths", "ca_file", "machine_path", "second_grid",
            "authoring")},
    })
    config = tmp_path / "contract.toml"
    _write_config(config, root)
    result = _lint(config, tmp_path, extra_path=tmp_path)
    assert result.returncode != 0
    out = result.stdout
    assert "0 kept, 5 broken" in out, out
    assert f"{root}.services.spawn -> {root}.services.scoreboard" in out
    assert ".evidence -> .audit" in out or ".audit -> .evidence" in out
    assert f"{root}.store -> {root}.services.orchestrator" in out
    assert f"{root}.services.common -> {root}.runtime.local" in out
    assert f"{root}.cli -> {root}.runtime.local" in out
    assert f"{root}_verify is not allowed to import {root}" in out
