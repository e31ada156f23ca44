"""Policy bundle hash and pin, Rego unit tests in CI, and the `forge policy` commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli import _register, app
from forge.policy import PolicyBundle, PolicyHashMismatch, check_pinned_hash, policy_hash

from .conftest import POLICIES

runner = CliRunner()
_register()


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "policies"
    shutil.copytree(POLICIES, dest)
    return dest


def test_hash_is_stable_and_tracks_content(policy_copy: Path) -> None:
    first = policy_hash(policy_copy)
    assert first == policy_hash(policy_copy) == policy_hash(POLICIES)
    assert len(first) == 64
    f = policy_copy / "spawn.rego"
    f.write_bytes(f.read_bytes() + b"\n")
    changed = policy_hash(policy_copy)
    assert changed != first
    f.rename(policy_copy / "spawn2.rego")  # same bytes, other path
    assert policy_hash(policy_copy) not in (first, changed)


def test_hash_covers_tests_but_engine_loads_only_modules(bundle: PolicyBundle) -> None:
    names = [f.relpath for f in bundle.files]
    assert names == sorted(names)
    assert {"training.rego", "capabilities.rego", "spawn.rego"} <= {f.relpath for f in bundle.modules}
    assert all(f.relpath.endswith("_test.rego") for f in bundle.tests) and bundle.tests


def test_pin_mismatch_shows_both_hashes(policy_copy: Path) -> None:
    actual = policy_hash(policy_copy)
    assert check_pinned_hash(actual, root=policy_copy) == actual
    assert check_pinned_hash(None, root=policy_copy) == actual
    assert check_pinned_hash(actual.upper(), root=policy_copy) == actual
    pin = "ab" * 32
    with pytest.raises(PolicyHashMismatch) as info:
        check_pinned_hash(pin, root=policy_copy)
    assert pin in str(info.value) and actual in str(info.value)
    assert (info.value.expected, info.value.actual) == (pin, actual)


def test_cli_hash_matches_library() -> None:
    result = runner.invoke(app, ["policy", "hash", "--policies", str(POLICIES)])
    assert result.exit_code == 0
    assert result.output.strip() == policy_hash(POLICIES)


def test_cli_eval_allow_deny_and_bad_input(tmp_path: Path) -> None:
    allow_in = tmp_path / "allow.json"
    allow_in.write_text(json.dumps(
        {"template": {"track": "ccna", "tier": "intermediate",
                      "containers": [{"name": "r1", "capabilities": ["NET_ADMIN"]}]}}))
    ok = runner.invoke(app, ["policy", "eval", "forge.capabilities", str(allow_in),
                             "--policies", str(POLICIES)], env={"OPA_URL": ""})
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["allow"] is True
    deny_in = tmp_path / "deny.json"
    deny_in.write_text(json.dumps(
        {"template": {"track": "ccna", "tier": "foundation",
                      "containers": [{"name": "r1", "capabilities": ["NET_ADMIN"]}]}}))
    no = runner.invoke(app, ["policy", "eval", "forge.capabilities", str(deny_in),
                             "--policies", str(POLICIES)], env={"OPA_URL": ""})
    assert no.exit_code == 1
    assert "requests capability NET_ADMIN" in json.loads(no.output)["reasons"][0]
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2")
    bad = runner.invoke(app, ["policy", "eval", "forge.capabilities", str(junk)])
    assert bad.exit_code == 2 and "cannot read input JSON" in bad.output


def test_cli_eval_outage_is_not_a_deny(tmp_path: Path) -> None:
    doc = tmp_path / "in.json"
    doc.write_text("{}")
    result = runner.invoke(app, ["policy", "eval", "forge.training", str(doc), "--opa-url",
                                 "http://127.0.0.1:9", "--policies", str(POLICIES)])
    assert result.exit_code == 2
    assert "unavailable (not a deny)" in result.output


def _run_rego_tests(policies: Path) -> subprocess.CompletedProcess[str]:
    # A subprocess, so an engine crash fails this test instead of killing the test run.
    return subprocess.run(
        [sys.executable, "-m", "forge.policy.rego_tests", "--json", "--policies", str(policies)],
        capture_output=True, text=True, timeout=120,
    )


def test_repository_rego_tests_pass() -> None:
    proc = _run_rego_tests(POLICIES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)
    files = {r["file"] for r in results}
    assert files == {"training_test.rego", "capabilities_test.rego", "spawn_test.rego",
                     "assignment_test.rego"}
    assert len(results) >= 20
    assert all(r["outcome"] == "pass" for r in results)


def test_failing_rego_test_fails(policy_copy: Path) -> None:
    (policy_copy / "broken_test.rego").write_text(
        "package forge.broken_test\nimport rego.v1\nimport data.forge.spawn\n\n"
        "test_empty_request_allowed if {\n\tspawn.allowed({})\n}\n\n"
        "test_false if {\n\tfalse\n}\n"
    )
    proc = _run_rego_tests(policy_copy)
    assert proc.returncode == 1
    failed = {r["name"]: r for r in json.loads(proc.stdout) if r["outcome"] != "pass"}
    assert set(failed) == {"test_empty_request_allowed", "test_false"}
    assert failed["test_false"]["detail"] == "rule is undefined, not true"


def test_cli_policy_test() -> None:
    result = runner.invoke(app, ["policy", "test", "--policies", str(POLICIES)])
    assert result.exit_code == 0, result.output
    assert " passed, 0 failed" in result.output
