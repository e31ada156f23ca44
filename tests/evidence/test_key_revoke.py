"""Revoking a signing key that leaked, and signing the stored verdicts again.

A revoked key never signs again (the current one is replaced first), drops out of every
set a verifier is told to trust (and out of a folder an earlier export filled), and
`resign_verdicts` gives each stored verdict it signed a new signature, only when the set
still verifies in full against the revoked key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli import app as forge_cli
from forge.evidence.artifact_store import FilesystemArtifactStore
from forge.evidence.artifacts import write_results
from forge.evidence.resign import resign_verdicts
from forge.signing.keystore import (
    NoSigningKey,
    SigningKeyError,
    SigningKeyring,
    UnknownKey,
)
from forge_verify import verify_paths
from forge_verify.canonical import dumps_file
from forge_verify.keys import key_id_for, load_public_pems

from .sample import OTHER_SCENARIO_ID, SCENARIO_ID, build


def _ring(tmp_path: Path) -> SigningKeyring:
    ring = SigningKeyring(tmp_path / "storage" / "keys" / "signing")
    ring.generate()
    return ring


def _verify(storage: Path, sid: str, trusted: Path) -> tuple[bool, list[str]]:
    res = storage / "scenarios" / sid / "results"
    out = verify_paths(res / "score.json", res / "evidence.tar.zst", res / "verdict.sig",
                       res / "verdict.pub", trusted_key=trusted)
    return out.ok, [r.code for r in out.reasons]


def test_revoking_a_retired_key_drops_it_from_every_trusted_set(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    old = ring.current()
    ring.rotate()
    folder = tmp_path / "trusted"
    ring.export_public(folder)
    assert (folder / f"{old.key_id}.pem").exists()

    newly, replacement = ring.revoke(old.key_id, "laptop stolen")
    assert newly and replacement is None  # it was not current: the current key stays
    info = {i.key_id: i for i in ring.list_keys()}[old.key_id]
    assert info.revoked_at and info.revoked_reason == "laptop stolen" and not info.can_sign
    assert old.key_id not in ring.trusted_public_keys()
    assert old.key_id in ring.public_keys()  # its audit checkpoints still read
    pems = ring.export_public(folder)
    assert [key_id_for(k) for k in load_public_pems(pems)] == [ring.current().key_id]
    # Exported into the same folder again: the revoked key's file goes, or it stays trusted.
    assert sorted(p.stem for p in folder.glob("*.pem")) == [ring.current().key_id]
    assert ring.revoke(old.key_id, "again") == (False, None)  # once is enough
    assert {i.key_id: i for i in ring.list_keys()}[old.key_id].revoked_reason == "laptop stolen"


def test_revoking_the_current_key_replaces_it_first(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    leaked = ring.current()
    newly, replacement = ring.revoke(leaked.key_id)
    assert newly and replacement is not None and replacement.key_id != leaked.key_id
    assert ring.current().key_id == replacement.key_id
    assert not (ring.directory / f"{leaked.key_id}.key").exists()
    assert set(ring.trusted_public_keys()) == {replacement.key_id}


def test_export_public_counts_only_the_keys_it_wrote(tmp_path: Path) -> None:
    """After a revoke the export leaves the revoked key out: its line must not count it
    (an operator reading "wrote 2" would think the leaked key went to the verifiers)."""
    ring = _ring(tmp_path)
    ring.revoke(ring.current().key_id)
    out = tmp_path / "trusted"
    done = CliRunner().invoke(forge_cli, ["keys", "export-public", "--storage",
                                          str(tmp_path / "storage"), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert f"wrote 1 public keys to {out}" in done.output
    assert [p.name for p in out.iterdir()] == [f"{ring.current().key_id}.pem"]


def test_a_revoke_cut_short_never_leaves_the_revoked_key_signing(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    kid = ring.current().key_id
    # As if the revoke stopped after marking the key but before replacing it.
    meta = json.loads((ring.directory / f"{kid}.json").read_text())
    (ring.directory / f"{kid}.json").write_text(json.dumps({**meta, "revoked_at": "now"}))
    with pytest.raises(NoSigningKey, match="revoked; run `forge keys rotate`"):
        ring.current()
    assert ring.current_or_none() is None
    ring.rotate()
    assert ring.current().key_id != kid


def test_revoke_refuses_an_unknown_key_or_a_bad_reason(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    with pytest.raises(UnknownKey, match="no key '0123456789abcdef'"):
        ring.revoke("0123456789abcdef")
    with pytest.raises(UnknownKey):
        ring.revoke("../current")
    with pytest.raises(SigningKeyError, match="reason: at most 200"):
        ring.revoke(ring.current().key_id, "two\nlines")
    assert not ring.revoked_ids()


def test_stored_verdicts_are_signed_again_only_when_intact(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    storage = tmp_path / "storage"
    leaked = ring.current()
    write_results(storage, build(tmp_path / "a", scenario_id=SCENARIO_ID, key=leaked))
    write_results(storage, build(tmp_path / "b", scenario_id=OTHER_SCENARIO_ID, key=leaked))
    tampered = storage / "scenarios" / OTHER_SCENARIO_ID / "results"
    score = tampered / "score.json"
    score.chmod(0o640)
    doc = json.loads(score.read_bytes())
    score.write_bytes(dumps_file({**doc, "score": 1.0}))  # its holder raised the score
    before = {n: (tampered / n).read_bytes() for n in ("verdict.sig", "verdict.pub")}
    good = storage / "scenarios" / SCENARIO_ID / "results"
    kept = {n: (good / n).read_bytes() for n in ("score.json", "evidence.tar.zst")}

    _, new = ring.revoke(leaked.key_id, "leaked")
    assert new is not None
    trusted = tmp_path / "trusted"
    ring.export_public(trusted)
    assert _verify(storage, SCENARIO_ID, trusted) == (False, ["untrusted_key"])

    report = resign_verdicts(FilesystemArtifactStore(storage), leaked.key_id, leaked.public_key, new)
    assert report.resigned == [SCENARIO_ID]
    assert [s for s, _ in report.refused] == [OTHER_SCENARIO_ID]
    assert "does not verify against the revoked key" in report.refused[0][1]
    assert _verify(storage, SCENARIO_ID, trusted) == (True, [])
    assert {n: (good / n).read_bytes() for n in kept} == kept  # only the signature changed
    # The tampered set is never vouched for by the new key.
    assert {n: (tampered / n).read_bytes() for n in before} == before
    # Again: nothing left to sign but the refused set.
    again = resign_verdicts(FilesystemArtifactStore(storage), leaked.key_id, leaked.public_key, new)
    assert again.resigned == [] and [s for s, _ in again.refused] == [OTHER_SCENARIO_ID]


def test_a_resign_cut_between_its_two_files_is_finished_by_the_next(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    storage = tmp_path / "storage"
    leaked = ring.current()
    write_results(storage, build(tmp_path / "a", key=leaked))
    _, new = ring.revoke(leaked.key_id)
    assert new is not None
    results = storage / "scenarios" / SCENARIO_ID / "results"
    old_pub = (results / "verdict.pub").read_bytes()
    resign_verdicts(FilesystemArtifactStore(storage), leaked.key_id, leaked.public_key, new)
    (results / "verdict.pub").write_bytes(old_pub)  # as if it stopped before the key
    trusted = tmp_path / "trusted"
    ring.export_public(trusted)
    assert not _verify(storage, SCENARIO_ID, trusted)[0]
    assert resign_verdicts(FilesystemArtifactStore(storage), leaked.key_id, leaked.public_key, new).resigned == [
        SCENARIO_ID]
    assert _verify(storage, SCENARIO_ID, trusted) == (True, [])
