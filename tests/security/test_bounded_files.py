"""Attack: hand the offline verifier or the CLI a file that never ends, never opens, or is far
too large, to hang it or exhaust the machine's memory.

Before issue 12 `verify_verdict.py … /dev/zero` read until memory ran out, a FIFO blocked it
forever, and `forge template check` on 100,000 nested `[` died with a RecursionError
traceback. Now every such input is answered with exit 2 and a one-line reason. Each command
runs under an address-space limit, so the old behaviour fails the test instead of the host.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from forge.config import load_settings
from forge.config.settings import ConfigError
from forge.templates.validate import MAX_TEMPLATE_BYTES
from forge_verify import INPUT_CAPS

from ..services.conftest import prod_environ

REPO = Path(__file__).resolve().parents[2]
VERIFY = [sys.executable, str(REPO / "scripts" / "verify_verdict.py")]
FORGE = [sys.executable, "-m", "forge"]
MEMORY_CAP = 1024 * 1024 * 1024


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command as an operator would; a hang fails as a timeout, and memory is capped:
    by RLIMIT_AS for the standalone verifier, by a watchdog for `forge` (whose native
    allocator reserves more address space than any sensible RLIMIT_AS)."""
    standalone = argv[:2] == VERIFY
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, stdin=subprocess.DEVNULL,
                            preexec_fn=_cap_memory if standalone else None)
    watched = psutil.Process(proc.pid)
    for _ in range(3000):  # 60 s of 20 ms polls
        try:
            out, err = proc.communicate(timeout=0.02)
            return subprocess.CompletedProcess(argv, proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(psutil.Error):
                if watched.memory_info().rss > MEMORY_CAP:
                    break
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"{argv[2:]} hung or passed {MEMORY_CAP} bytes of memory: {err[-500:]}")


@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, Path]:
    """/dev/zero, a FIFO nobody writes to, and sparse files one byte over each cap."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    paths = {"zero": Path("/dev/zero"), "fifo": fifo}
    for name, cap in (("big_bundle", INPUT_CAPS["bundle"]), ("big_score", INPUT_CAPS["score"]),
                      ("big_template", MAX_TEMPLATE_BYTES)):
        path = tmp_path / name
        with open(path, "wb") as fh:
            fh.truncate(cap + 1)
        paths[name] = path
    ok = tmp_path / "small.json"
    ok.write_text("{}\n")
    paths["small"] = ok
    return paths


REFUSALS = {"zero": "is a device, not a regular file", "fifo": "is a FIFO, not a regular file",
            "big_bundle": f"larger than {INPUT_CAPS['bundle']} bytes",
            "big_score": f"larger than {INPUT_CAPS['score']} bytes",
            "big_template": f"larger than {MAX_TEMPLATE_BYTES} bytes"}


@pytest.mark.parametrize(("slot", "attack"), [
    (0, "zero"), (1, "zero"), (2, "fifo"), (1, "fifo"), (3, "zero"), (1, "big_bundle"),
    (0, "big_score"),
])
@pytest.mark.parametrize("command", ["script", "forge"])
def test_verifier_refuses_endless_blocking_and_oversized_inputs(
        hostile: dict[str, Path], slot: int, attack: str, command: str) -> None:
    files = [str(hostile["small"])] * 4
    files[slot] = str(hostile[attack])
    argv = [*VERIFY, *files] if command == "script" else [*FORGE, "verify", *files]
    result = run(argv)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    kind = "score" if slot == 0 else "bundle" if slot == 1 else \
        "verdict.sig" if slot == 2 else "verdict.pub"
    assert result.stdout.splitlines() == [f"ERROR {kind} {hostile[attack]}: {REFUSALS[attack]}"]


@pytest.mark.parametrize("attack", ["zero", "fifo"])
def test_verifier_refuses_a_hostile_trusted_key(hostile: dict[str, Path], attack: str) -> None:
    small = str(hostile["small"])
    result = run([*VERIFY, small, small, small, small, "--trusted-key", str(hostile[attack])])
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"ERROR trusted key {hostile[attack]}: {REFUSALS[attack]}"]


@pytest.mark.parametrize("attack", ["zero", "fifo", "big_template"])
def test_template_check_refuses_endless_blocking_and_oversized_files(
        hostile: dict[str, Path], attack: str) -> None:
    result = run([*FORGE, "template", "check", str(hostile[attack])])
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: {hostile[attack]}: cannot read file: {REFUSALS[attack]}"]


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_template_check_on_deeply_nested_yaml_is_a_clean_error(tmp_path: Path,
                                                               opener: str) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text(opener * 100_000)
    result = run([*FORGE, "template", "check", str(deep)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {deep}: not parsed: collections nested deeper than 64 levels"]


def test_policy_eval_refuses_a_fifo_and_deep_json(hostile: dict[str, Path],
                                                  tmp_path: Path) -> None:
    fifo = run([*FORGE, "policy", "eval", "forge.capabilities", str(hostile["fifo"])])
    assert fifo.returncode == 2
    assert fifo.stderr.strip() == (f"error: cannot read input JSON {hostile['fifo']}: "
                                   "is a FIFO, not a regular file")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    nested = run([*FORGE, "policy", "eval", "forge.capabilities", str(deep)])
    assert nested.returncode == 2 and "Traceback" not in nested.stderr
    assert nested.stderr.strip().endswith("nested too deeply")


def test_secret_file_that_is_a_fifo_is_a_config_error(hostile: dict[str, Path],
                                                      tmp_path: Path) -> None:
    environ = prod_environ(tmp_path / "s")
    environ.pop("SAT_HMAC_SECRET")
    environ["SAT_HMAC_SECRET_FILE"] = str(hostile["fifo"])
    with pytest.raises(ConfigError) as err:
        load_settings(environ)
    assert f"SAT_HMAC_SECRET_FILE: cannot read {hostile['fifo']}: is a FIFO, not a regular " \
           "file" in err.value.problems
