"""The verifier passes a good verdict set and names the right reason for each tampering."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from forge.evidence.artifacts import AUDIT_MEMBER, Artifacts
from forge_verify import ORIGIN_NOT_PROVEN, VerifyResult, render_text, verify_paths
from forge_verify.bundle import MANIFEST, build_bundle, read_bundle
from forge_verify.canonical import dumps_file

from .sample import OTHER_SCENARIO_ID, SCENARIO_ID, build, fixed_key, write_files

FILES = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")


def _verify(paths: dict[str, Path], trusted: Path | None = None) -> VerifyResult:
    return verify_paths(*(paths[n] for n in FILES), trusted_key=trusted)


def _codes(res: VerifyResult) -> set[str]:
    return {r.code for r in res.reasons}


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _rebundle(path: Path, scenario_id: str, change: object) -> None:
    """Rewrite a bundle member and its manifest consistently (a careful forger)."""
    members = read_bundle(path.read_bytes())
    del members[MANIFEST]
    change(members)  # type: ignore[operator]
    path.write_bytes(build_bundle(scenario_id, members))


def test_a_good_set_passes_and_says_origin_was_not_proven(result_files: dict[str, Path]) -> None:
    res = _verify(result_files)
    assert res.status == "PASS" and res.exit_code == 0, res.reasons
    assert (res.scenario_id, res.score, res.passed, res.total) == (SCENARIO_ID, 0.75, 2, 3)
    assert res.key_id == fixed_key().key_id
    assert res.origin == "not_checked" and ORIGIN_NOT_PROVEN in res.notes
    assert any("audit chain intact" in c for c in res.checked)
    # Said on the PASS line itself, where a reader who looks no further sees it.
    head = render_text(res).splitlines()[0]
    assert head.startswith(f"PASS {SCENARIO_ID} ") and head.endswith(
        "(integrity only: origin not proven, no --trusted-key)")


def test_trusted_key_proves_origin(result_files: dict[str, Path], tmp_path: Path) -> None:
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(fixed_key(99).public_pem() + fixed_key().public_pem())
    res = _verify(result_files, trusted)
    assert res.ok and res.origin == "proven"
    assert ORIGIN_NOT_PROVEN not in res.notes
    assert "origin not proven" not in render_text(res)


EXPECTED = {
    "score.json": {"score_digest_mismatch"},
    "evidence.tar.zst": {"bundle_digest_mismatch"},
    "verdict.sig": {"signature_invalid", "envelope_invalid", "keyid_mismatch"},
    "verdict.pub": {"signature_invalid", "pubkey_invalid", "pubkey_not_canonical"},
}


@pytest.mark.parametrize("name", FILES)
def test_a_flipped_bit_anywhere_in_any_file_fails_with_that_files_reason(
    artifacts: Artifacts, tmp_path: Path, name: str
) -> None:
    size = len(artifacts.files()[name])
    offsets = sorted({0, size // 7, size // 3, size // 2, 2 * size // 3, size - 2, size - 1})
    for i, offset in enumerate(offsets):
        paths = write_files(artifacts, tmp_path / f"{name}-{i}")
        _flip(paths[name], offset, bit=i % 8)
        res = _verify(paths)
        assert res.status == "FAIL" and res.exit_code == 1, (name, offset)
        assert _codes(res) & EXPECTED[name], (name, offset, res.reasons)


def test_flipped_signature_bit_is_an_invalid_signature(result_files: dict[str, Path]) -> None:
    env = json.loads(result_files["verdict.sig"].read_bytes())
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[10] ^= 0x01
    env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    result_files["verdict.sig"].write_bytes(dumps_file(env))  # exact form: only the bit differs
    assert _codes(_verify(result_files)) == {"signature_invalid"}


def test_a_verdict_swapped_from_another_scenario_fails(tmp_path: Path) -> None:
    mine = write_files(build(tmp_path / "a"), tmp_path / "mine")
    other = write_files(build(tmp_path / "b", scenario_id=OTHER_SCENARIO_ID), tmp_path / "other")
    for name in ("verdict.sig", "verdict.pub"):
        mine[name].write_bytes(other[name].read_bytes())
    res = _verify(mine)
    assert res.exit_code == 1
    assert {"scenario_mismatch", "score_digest_mismatch", "bundle_digest_mismatch"} <= _codes(res)
    assert any(OTHER_SCENARIO_ID in r.message and SCENARIO_ID in r.message
               for r in res.reasons if r.code == "scenario_mismatch")


def test_a_set_resigned_with_another_key_fails_under_trusted_key(tmp_path: Path) -> None:
    forged = write_files(build(tmp_path / "w", key=fixed_key(66)), tmp_path / "forged")
    # On its own the forged set is internally consistent: integrity holds...
    alone = _verify(forged)
    assert alone.ok and ORIGIN_NOT_PROVEN in alone.notes
    assert "origin not proven" in render_text(alone).splitlines()[0]
    # ...but its key is not the operator's.
    trusted_dir = tmp_path / "trusted"
    trusted_dir.mkdir()
    (trusted_dir / "forge.pem").write_bytes(fixed_key().public_pem())
    (trusted_dir / "README").write_text("keys exported by forge keys export-public\n")
    res = _verify(forged, trusted_dir)
    assert res.exit_code == 1 and res.origin == "untrusted"
    assert _codes(res) == {"untrusted_key"}


def test_a_member_altered_together_with_its_manifest_breaks_the_bundle_digest(
    result_files: dict[str, Path],
) -> None:
    def change(members: dict[str, bytes]) -> None:
        members["checks/report/1/stdout.txt"] = b"risk register complete\n"

    _rebundle(result_files["evidence.tar.zst"], SCENARIO_ID, change)
    codes = _codes(_verify(result_files))
    assert "bundle_digest_mismatch" in codes
    assert "member_digest_mismatch" not in codes  # the manifest was forged consistently


def test_a_member_altered_without_its_manifest_is_named(result_files: dict[str, Path]) -> None:
    members = read_bundle(result_files["evidence.tar.zst"].read_bytes())
    members["template.yaml"] = b"kind: Other\n"
    from forge_verify.bundle import _tar_bytes, compress

    result_files["evidence.tar.zst"].write_bytes(compress(_tar_bytes(members), "zst"))
    res = _verify(result_files)
    assert {"bundle_digest_mismatch", "member_digest_mismatch", "template_mismatch"} <= _codes(res)


def test_a_truncated_audit_chain_is_detected(result_files: dict[str, Path]) -> None:
    def truncate(members: dict[str, bytes]) -> None:
        lines = members[AUDIT_MEMBER].splitlines(keepends=True)
        members[AUDIT_MEMBER] = b"".join(lines[:-2])

    _rebundle(result_files["evidence.tar.zst"], SCENARIO_ID, truncate)
    res = _verify(result_files)
    assert "audit_truncated" in _codes(res)
    assert any("4 entries where score.json seals 6" in r.message for r in res.reasons)


def test_an_audit_line_removed_from_the_middle_breaks_the_chain(
    result_files: dict[str, Path],
) -> None:
    def cut(members: dict[str, bytes]) -> None:
        lines = members[AUDIT_MEMBER].splitlines(keepends=True)
        members[AUDIT_MEMBER] = b"".join(lines[:1] + lines[2:])

    _rebundle(result_files["evidence.tar.zst"], SCENARIO_ID, cut)
    assert "audit_chain_broken" in _codes(_verify(result_files))


def test_gzip_bundles_are_accepted(tmp_path: Path) -> None:
    art = build(tmp_path / "w", bundle_format="gz")
    paths = write_files(art, tmp_path / "r")
    res = verify_paths(paths["score.json"], paths["evidence.tar.gz"], paths["verdict.sig"],
                       paths["verdict.pub"])
    assert res.ok, res.reasons


@pytest.mark.parametrize("missing", FILES)
def test_a_missing_file_is_an_input_error(result_files: dict[str, Path], missing: str) -> None:
    result_files[missing].unlink()
    res = _verify(result_files)
    assert res.status == "ERROR" and res.exit_code == 2
    assert _codes(res) == {"unreadable_input"} and missing in res.reasons[0].message


def test_unreadable_trusted_key_is_an_input_error(result_files: dict[str, Path],
                                                 tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    assert _verify(result_files, bad).exit_code == 2
    assert _verify(result_files, tmp_path / "nope.pem").exit_code == 2


def test_json_result_lists_every_reason(result_files: dict[str, Path]) -> None:
    _flip(result_files["score.json"], 5)
    doc = _verify(result_files).to_dict()
    assert doc["status"] == "FAIL" and doc["ok"] is False
    assert {"code", "message"} == set(doc["reasons"][0])
    json.dumps(doc)


def _hostile_docs(good: dict) -> list[dict]:  # type: ignore[type-arg]
    import copy

    docs = []
    for path, value in [
        (("criteria",), 5), (("criteria",), [1, "x", None]), (("template",), ["a"]),
        (("template", "sha256"), "é" * 64), (("audit",), "none"), (("audit", "head"), "ü"),
        (("criteria", 0, "evidence"), 7), (("criteria", 0, "evidence"), [{"a": 1}]),
        (("criteria", 0, "checks"), {"a": 1}), (("criteria", 0, "checks", 0, "stdout"), []),
        (("criteria", 0, "weight"), "heavy"), (("scenario_id",), ["scn"]), (("score",), None),
    ]:
        doc = copy.deepcopy(good)
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        docs.append(doc)
    return docs


def test_hostile_documents_fail_cleanly_without_crashing(artifacts: Artifacts) -> None:
    from forge_verify import verify_artifacts
    from forge_verify.canonical import dumps_file

    good = json.loads(artifacts.score_json)
    files = artifacts.files()
    for doc in _hostile_docs(good):
        res = verify_artifacts(dumps_file(doc), files["evidence.tar.zst"], "evidence.tar.zst",
                               files["verdict.sig"], files["verdict.pub"])
        assert res.status == "FAIL" and "score_digest_mismatch" in _codes(res), doc

    members = read_bundle(files["evidence.tar.zst"])
    manifest = json.loads(members[MANIFEST])
    manifest["members"][0]["sha256"] = "ß" * 64
    members[MANIFEST] = dumps_file(manifest)
    from forge_verify.bundle import _tar_bytes, compress

    res = verify_artifacts(files["score.json"], compress(_tar_bytes(members), "zst"),
                           "evidence.tar.zst", files["verdict.sig"], files["verdict.pub"])
    assert {"bundle_digest_mismatch", "member_digest_mismatch"} <= _codes(res)


def test_the_report_says_in_words_what_the_learner_achieved(
        result_files: dict[str, Path]) -> None:
    """`PASS scn-… score=0.0 passed=0/3` read as a passed lab (EZ): "PASS" is the verdict's
    genuineness. The line after it says what the learner achieved."""
    lines = render_text(_verify(result_files)).splitlines()
    assert lines[0].startswith(f"PASS {SCENARIO_ID} score=0.75 passed=2/3")
    assert lines[1] == ("  result 2 of 3 criteria met: the lab was not fully passed (PASS "
                        "means this verdict is genuine, not that the learner passed)")
