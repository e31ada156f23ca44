"""A peer's proof (`forge.services.common.peer_proof`): good for its purpose, with the
secret it names, for one minute, once; anything else is refused."""

from __future__ import annotations

import pytest

from forge.config.keyring import HmacKeyring
from forge.services.common import peer_proof
from forge.services.common.peer_proof import (
    LIFETIME_S,
    ProofVerifier,
    is_proof,
    keyring_read,
    mint_proof,
)

SAT = HmacKeyring("SAT_HMAC_SECRET", b"sat-secret-0123456789-0123456789-abcdef")
OPERATOR = HmacKeyring("OPERATOR_TOKEN", b"operator-token-0123456789-0123456789-abc",
                       previous=b"operator-token-previous-0123456789-0123")
NOW = 1_800_000_000.0
KEYRING_READ = keyring_read("orchestrator")


def test_a_proof_is_taken_once_with_the_secret_it_was_made_with() -> None:
    proof = mint_proof(OPERATOR, KEYRING_READ, now=NOW)
    assert is_proof(proof) and OPERATOR.current.decode() not in proof
    verifier = ProofVerifier()
    assert verifier.verify(proof, (SAT, OPERATOR), KEYRING_READ, now=NOW + 5) == OPERATOR.current
    assert verifier.verify(proof, (SAT, OPERATOR), KEYRING_READ, now=NOW + 6) is None  # replay
    # Each proof has its own nonce: the next one is taken.
    again = mint_proof(OPERATOR, KEYRING_READ, now=NOW)
    assert again != proof
    assert verifier.verify(again, (OPERATOR,), KEYRING_READ, now=NOW) == OPERATOR.current


def test_a_previous_secret_of_the_ring_is_named_by_its_kid() -> None:
    old = HmacKeyring("OPERATOR_TOKEN", OPERATOR.previous or b"")
    proof = mint_proof(old, KEYRING_READ, now=NOW)
    assert ProofVerifier().verify(proof, (OPERATOR,), KEYRING_READ, now=NOW) == OPERATOR.previous


@pytest.mark.parametrize("offset", [-LIFETIME_S - 1, LIFETIME_S + 1, -86_400, 86_400])
def test_a_proof_outside_its_minute_is_refused(offset: int) -> None:
    proof = mint_proof(SAT, KEYRING_READ, now=NOW)
    assert ProofVerifier().verify(proof, (SAT,), KEYRING_READ, now=NOW + offset) is None
    edge = LIFETIME_S if offset > 0 else -LIFETIME_S  # the minute's own ends are within it
    assert ProofVerifier().verify(proof, (SAT,), KEYRING_READ, now=NOW + edge) == SAT.current


def test_a_proof_for_another_purpose_ring_or_secret_is_refused() -> None:
    verifier = ProofVerifier()
    proof = mint_proof(SAT, KEYRING_READ, now=NOW)
    assert verifier.verify(proof, (SAT,), "POST /v1/admin/anything", now=NOW) is None
    # The same secret under another ring's name: the MAC covers the name.
    same_secret = HmacKeyring("OPERATOR_TOKEN", SAT.current)
    assert verifier.verify(proof, (same_secret,), KEYRING_READ, now=NOW) is None
    # A ring without that kid, or an unknown secret with a kid of the ring.
    assert verifier.verify(proof, (OPERATOR,), KEYRING_READ, now=NOW) is None
    forger = HmacKeyring("SAT_HMAC_SECRET", b"a-secret-the-services-never-had-0123456789")
    kid, rest = SAT.current_kid, mint_proof(forger, KEYRING_READ, now=NOW).split(".", 2)[2]
    assert verifier.verify(f"fgp1.{kid}.{rest}", (SAT,), KEYRING_READ, now=NOW) is None
    # The refusals above took nothing: the genuine proof is still good once.
    assert verifier.verify(proof, (SAT,), KEYRING_READ, now=NOW) == SAT.current


def test_changed_or_malformed_proofs_are_refused() -> None:
    proof = mint_proof(SAT, KEYRING_READ, now=NOW)
    prefix, kid, stamp, nonce, mac = proof.split(".")
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    other_nonce = ("A" if nonce[0] != "A" else "B") + nonce[1:]
    bad = [
        f"{prefix}.{kid}.{stamp}.{nonce}.{flipped}",
        f"{prefix}.{kid}.{int(stamp) + 1}.{nonce}.{mac}",
        f"{prefix}.{kid}.{stamp}.{other_nonce}.{mac}",
        f"{prefix}.{kid}.{stamp}.{nonce}.{mac.upper()}",
        f"{prefix}.{kid}.{stamp}.{nonce}.{mac}.",
        f"fgp2.{kid}.{stamp}.{nonce}.{mac}",
        f"{prefix}.{kid}.-{stamp}.{nonce}.{mac}",
        f"{prefix}.{kid}.{'9' * 13}.{nonce}.{mac}",
        f"{prefix}.{kid}.{stamp}.{nonce[:-1]}é.{mac}",
        proof + "\n", " " + proof, "", "fgp1.", SAT.current.decode(),
    ]
    verifier = ProofVerifier()
    for candidate in bad:
        assert verifier.verify(candidate, (SAT,), KEYRING_READ, now=NOW) is None, candidate
    assert verifier.verify(proof, (SAT,), KEYRING_READ, now=NOW) == SAT.current


def test_a_full_nonce_store_forgets_the_oldest_rather_than_refuse(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_proof, "MAX_NONCES", 4)
    verifier = ProofVerifier()
    made = [mint_proof(SAT, KEYRING_READ, now=NOW + i) for i in range(4)]
    assert all(verifier.verify(p, (SAT,), KEYRING_READ, now=NOW + 4) for p in made)
    # Full: a flood of proofs does not stop the next one; the half expiring first goes.
    late = mint_proof(SAT, KEYRING_READ, now=NOW + 5)
    assert verifier.verify(late, (SAT,), KEYRING_READ, now=NOW + 5) == SAT.current
    assert verifier.verify(late, (SAT,), KEYRING_READ, now=NOW + 6) is None
    assert verifier.verify(made[3], (SAT,), KEYRING_READ, now=NOW + 6) is None  # kept
    assert verifier.verify(made[0], (SAT,), KEYRING_READ, now=NOW + 6) == SAT.current  # gone


def test_a_proof_names_the_service_it_is_for() -> None:
    proof = mint_proof(SAT, keyring_read("orchestrator"), now=NOW)
    verifier = ProofVerifier()
    assert verifier.verify(proof, (SAT,), keyring_read("scoreboard"), now=NOW) is None
    assert verifier.verify(proof, (SAT,), keyring_read("orchestrator"), now=NOW) == SAT.current
