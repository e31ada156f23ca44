"""Result files are written atomically and once: complete or absent, never overwritten."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from forge.evidence import artifacts as art_mod
from forge.evidence.artifacts import (
    Artifacts,
    EvidenceInputs,
    ResultConflict,
    build_artifacts,
    read_results,
    results_dir,
    score_and_write,
    write_results,
)
from forge_verify import verify_paths
from forge_verify.score import ScoreInputError, StreamOutput

from .sample import (
    POLICY,
    SCENARIO_ID,
    SIGNED_AT,
    TEMPLATE,
    audit_log,
    build,
    fixed_key,
    score_inputs,
)

REPO = Path(__file__).resolve().parents[2]


def _leftovers(storage: Path) -> list[str]:
    scen = storage / "scenarios" / SCENARIO_ID
    return sorted(p.name for p in scen.iterdir()) if scen.exists() else []


def test_write_creates_the_four_files_that_verify(artifacts: Artifacts, tmp_path: Path) -> None:
    written = write_results(tmp_path, artifacts)
    assert written.created and written.directory == results_dir(tmp_path, SCENARIO_ID)
    assert sorted(p.name for p in written.directory.iterdir()) == [
        "evidence.tar.zst", "score.json", "verdict.pub", "verdict.sig"]
    d = written.directory
    assert verify_paths(d / "score.json", d / "evidence.tar.zst", d / "verdict.sig",
                        d / "verdict.pub").ok
    assert _leftovers(tmp_path) == ["results"]
    assert written.score_sha256 == hashlib.sha256(artifacts.score_json).hexdigest()


def test_redelivery_of_the_same_completion_is_a_no_op(tmp_path: Path) -> None:
    first = build(tmp_path / "w1")
    later = build(tmp_path / "w2", signed_at=SIGNED_AT + timedelta(minutes=5))
    assert first.verdict_sig != later.verdict_sig  # signed at another time...
    assert write_results(tmp_path / "s", first).created
    again = write_results(tmp_path / "s", later)  # ...but the same score and evidence
    assert not again.created
    assert read_results(tmp_path / "s", SCENARIO_ID) == first.files()


def test_a_different_result_for_a_final_scenario_is_refused(tmp_path: Path) -> None:
    write_results(tmp_path / "s", build(tmp_path / "w1"))
    inputs = score_inputs()
    flipped = tuple(replace(r, passed=True) for r in inputs.results)
    evidence = EvidenceInputs(TEMPLATE, POLICY, audit_log(tmp_path / "w2"))
    other = build_artifacts(replace(inputs, results=flipped), evidence, fixed_key())
    with pytest.raises(ResultConflict) as info:
        write_results(tmp_path / "s", other)
    assert info.value.scenario_id == SCENARIO_ID
    assert "score.json" in info.value.differing
    assert read_results(tmp_path / "s", SCENARIO_ID)["score.json"] != other.score_json


def test_an_exception_between_files_leaves_no_results_dir(
    artifacts: Artifacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = art_mod._write_file
    calls: list[str] = []

    def failing(path: Path, data: bytes) -> None:
        calls.append(path.name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(art_mod, "_write_file", failing)
    with pytest.raises(OSError, match="No space"):
        write_results(tmp_path, artifacts)
    assert not results_dir(tmp_path, SCENARIO_ID).exists()
    assert _leftovers(tmp_path) == []  # the temp dir is removed too
    monkeypatch.setattr(art_mod, "_write_file", real)
    assert write_results(tmp_path, artifacts).created


def test_a_process_killed_mid_write_leaves_no_results_dir(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from forge.evidence import artifacts as a
        from tests.evidence.sample import build
        real, n = a._write_file, []
        def killing(path, data):
            n.append(1)
            if len(n) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, data)
        a._write_file = killing
        a.write_results(Path({str(tmp_path / "s")!r}), build(Path({str(tmp_path / "w")!r})))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60,
                          capture_output=True)
    assert proc.returncode == -9, proc.stderr
    storage = tmp_path / "s"
    assert not results_dir(storage, SCENARIO_ID).exists()
    assert read_results(storage, SCENARIO_ID) is None
    stale = [p for p in _leftovers(storage) if p.startswith(".results-tmp-")]
    assert len(stale) == 1  # the dead writer's temp dir, never mistaken for results
    # A later writer succeeds and sweeps temp dirs once they are old.
    old = storage / "scenarios" / SCENARIO_ID / stale[0]
    os.utime(old, (1, 1))
    assert write_results(storage, build(tmp_path / "w2")).created
    assert _leftovers(storage) == ["results"]


@pytest.mark.parametrize("bad", ["../../etc", "scn-00112233AABBCCDD", "scn-0011", "x" * 20,
                                 "scn-00112233aabbccdd/../x"])
def test_scenario_id_is_validated_before_it_touches_a_path(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ScoreInputError, match="scenario_id"):
        results_dir(tmp_path, bad)
    with pytest.raises(ScoreInputError, match="scenario_id"):
        read_results(tmp_path, bad)
    assert list(tmp_path.iterdir()) == []


def test_template_bytes_must_match_the_recorded_hash(tmp_path: Path) -> None:
    evidence = EvidenceInputs(TEMPLATE + b"# edited\n", POLICY, audit_log(tmp_path))
    with pytest.raises(ScoreInputError, match="template_sha256"):
        score_and_write(tmp_path, score_inputs(), evidence, fixed_key())
    assert not (tmp_path / "scenarios").exists()


def test_a_broken_audit_log_is_refused(tmp_path: Path) -> None:
    log = audit_log(tmp_path).splitlines(keepends=True)
    evidence = EvidenceInputs(TEMPLATE, POLICY, b"".join(log[:1] + log[2:]))
    with pytest.raises(ScoreInputError, match="audit_log"):
        build_artifacts(score_inputs(), evidence, fixed_key())


def test_large_outputs_are_capped_but_keep_the_full_hash(tmp_path: Path) -> None:
    big = "A" * 5000
    full = StreamOutput(big, hashlib.sha256(big.encode()).hexdigest(), 5000, False)
    inputs = score_inputs()
    results = (replace(inputs.results[0], stdout=full), *inputs.results[1:])
    evidence = EvidenceInputs(TEMPLATE, POLICY, audit_log(tmp_path))
    art = build_artifacts(replace(inputs, results=results), evidence, fixed_key(),
                          output_cap=1000)
    stdout = art.document["criteria"][0]["checks"][0]["stdout"]
    assert stdout == {"sha256": full.sha256, "size": 5000, "truncated": True,
                      "evidence": "checks/find-target/0/stdout.txt"}
    paths = {}
    for name, data in art.files().items():
        (tmp_path / name).write_bytes(data)
        paths[name] = tmp_path / name
    assert verify_paths(paths["score.json"], paths["evidence.tar.zst"], paths["verdict.sig"],
                        paths["verdict.pub"]).ok


def test_text_that_is_not_the_hashed_output_is_marked_truncated(tmp_path: Path) -> None:
    lossy = StreamOutput("caf\ufffd", hashlib.sha256(b"caf\xe9").hexdigest(), 4, False)
    inputs = score_inputs()
    results = (replace(inputs.results[0], stdout=lossy), *inputs.results[1:])
    evidence = EvidenceInputs(TEMPLATE, POLICY, audit_log(tmp_path))
    art = build_artifacts(replace(inputs, results=results), evidence, fixed_key())
    assert art.document["criteria"][0]["checks"][0]["stdout"]["truncated"] is True


def test_criteria_come_from_a_real_loaded_template(tmp_path: Path) -> None:
    from forge.evidence.artifacts import criteria_from_template
    from forge.templates.registry import TemplateRegistry
    from forge_verify.score import CheckResult

    from ..conftest import TEMPLATE_FIXTURES
    from .sample import stream

    loaded = TemplateRegistry.load(TEMPLATE_FIXTURES).get("lab-netplus")
    criteria = criteria_from_template(loaded.template.spec.success_criteria)
    assert [c.id for c in criteria] == [c.id for c in loaded.template.spec.success_criteria]
    results = tuple(
        CheckResult(c.id, i, c.id == criteria[0].id, 0, stream("x"), stream(""), False, 5)
        for c in criteria for i in range(c.check_count))
    inputs = replace(score_inputs(), template_name=loaded.name, template_sha256=loaded.sha256,
                     criteria=criteria, results=results)
    evidence = EvidenceInputs(loaded.source, POLICY, audit_log(tmp_path))
    written = score_and_write(tmp_path, inputs, evidence, fixed_key())
    d = written.directory
    res = verify_paths(d / "score.json", d / "evidence.tar.zst", d / "verdict.sig",
                       d / "verdict.pub")
    total = sum(c.weight for c in criteria)
    assert res.ok and res.score == round(criteria[0].weight / total, 6)
