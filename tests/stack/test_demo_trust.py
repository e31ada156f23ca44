"""`forge demo`'s verify step proves the verdict's origin when it can: results in this
storage root are checked against this platform's signing keyring (``--trusted-key``), so a
verdict re-signed with another key fails the demo instead of passing as "integrity only".
Real signed result files (tests/evidence/sample.py), the real verifier in its own process."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.signing.keystore import SigningKey, SigningKeyring
from forge.stack.journey import Journey, JourneyError
from tests.evidence.sample import SCENARIO_ID, build, fixed_key, write_files


def _ring(directory: Path, *keys: SigningKey) -> Path:
    """A keyring directory holding these public keys, as the scoreboard's does."""
    directory.mkdir(parents=True)
    for key in keys:
        (directory / f"{key.key_id}.pub").write_bytes(key.public_pem())
    return directory


def _journey(storage: Path, keyring: Path | None, results: Path,
             signer: SigningKey | None = None, **options: object) -> Journey:
    files = write_files(build(storage / "work", key=signer or fixed_key(7)), results)
    trip = Journey(spawn_url="http://spawn.invalid", scoreboard_url="http://board.invalid",
                   storage_root=storage, keyring=keyring, **options)  # type: ignore[arg-type]
    trip.result.scenario_id = SCENARIO_ID
    bundle = next(p for name, p in files.items() if name.startswith("evidence.tar"))
    trip.result.artifacts = {"score.json": files["score.json"], "bundle": bundle,
                             "verdict.sig": files["verdict.sig"],
                             "verdict.pub": files["verdict.pub"]}
    return trip


def _local(storage: Path) -> Path:
    return storage / "scenarios" / SCENARIO_ID / "results"


def test_a_verdict_signed_by_a_key_since_retired_is_verified_with_the_ring(
        tmp_path: Path) -> None:
    """The platform signed with its key, then rotated: the retired key's verdict is still
    the platform's (the ring keeps every public key)."""
    ring = SigningKeyring(tmp_path / "ring")
    signer = ring.generate()
    ring.rotate()
    trip = _journey(tmp_path, ring.directory, _local(tmp_path), signer)
    detail = trip._verify()
    assert trip.result.verified and "signed by this platform's key" in detail
    assert trip.result.trusted_keys == tmp_path / "demo-trusted-keys" / SCENARIO_ID
    assert "integrity only" not in trip.result.verify_output
    assert sorted(p.name for p in trip.result.trusted_keys.iterdir()) == sorted(
        f"{kid}.pem" for kid in ring.public_keys())
    assert len(ring.public_keys()) == 2


def test_the_demos_own_platform_is_checked_with_its_ring_wherever_results_come_from(
        tmp_path: Path) -> None:
    """Results downloaded from the scoreboard (results kept in JetStream) of a platform
    the demo started: still its ring, so a verdict re-signed elsewhere fails."""
    downloaded = tmp_path / "demo-verdicts" / SCENARIO_ID
    trip = _journey(tmp_path, _ring(tmp_path / "ring", fixed_key(9)), downloaded,
                    own_platform=True)
    with pytest.raises(JourneyError, match="verify offline"):
        trip._verify()
    trip = _journey(tmp_path / "b", _ring(tmp_path / "ring-b", fixed_key(7)),
                    tmp_path / "b" / "demo-verdicts" / SCENARIO_ID, own_platform=True)
    assert "signed by this platform's key" in trip._verify()


def test_keys_given_on_the_command_line_are_the_ones_trusted(tmp_path: Path) -> None:
    """`forge demo --url … --trusted-key KEYS` for a platform elsewhere: those keys, and no
    ring of this machine, decide."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "platform.pem").write_bytes(fixed_key(9).public_pem())
    downloaded = tmp_path / "demo-verdicts" / SCENARIO_ID
    trip = _journey(tmp_path, _ring(tmp_path / "ring", fixed_key(7)), downloaded,
                    trusted_key=keys)
    with pytest.raises(JourneyError, match="verify offline"):
        trip._verify()  # signed by key 7, which the given keys do not hold
    (keys / "platform.pem").write_bytes(fixed_key(7).public_pem())
    assert "signed by this platform's key" in trip._verify()


def test_a_verdict_signed_by_another_key_fails_the_demo(tmp_path: Path) -> None:
    """Before, the demo ran the verifier without a key: files anyone re-signed passed."""
    trip = _journey(tmp_path, _ring(tmp_path / "ring", fixed_key(9)), _local(tmp_path))
    with pytest.raises(JourneyError, match="verify offline"):
        trip._verify()
    assert not trip.result.verified


@pytest.mark.parametrize("where", ["no ring", "empty ring", "downloaded"])
def test_without_this_platforms_key_the_pass_says_integrity_only(
        tmp_path: Path, where: str) -> None:
    """No keyring, a ring with no key, or results downloaded from a platform elsewhere
    (whose keys this storage root need not hold): the verifier's integrity-only PASS."""
    ring = None if where == "no ring" else tmp_path / "ring"  # "empty ring": never made
    if where == "downloaded":
        _ring(tmp_path / "ring", fixed_key(9))
    results = (tmp_path / "demo-verdicts" / SCENARIO_ID if where == "downloaded"
               else _local(tmp_path))
    trip = _journey(tmp_path, ring, results)
    detail = trip._verify()
    assert trip.result.verified and trip.result.trusted_keys is None
    assert "integrity only" in detail and "integrity only" in trip.result.verify_output
    assert not (tmp_path / "demo-trusted-keys" / SCENARIO_ID).exists()
