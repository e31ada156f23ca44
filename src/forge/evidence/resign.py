"""Signing stored verdicts again after their key was revoked (`forge keys resign`).

Works on whichever artifact store the install uses (the storage root's results folders,
or the JetStream bucket of a multi-machine install), through `ArtifactStore`.

A revoked key's verdicts no longer verify against the installation's keys (whoever holds
the leaked key could have signed anything with it). The verdicts the platform itself
stored are still its own: each one that verifies in full against the revoked key (so its
score.json and bundle are exactly what was signed) gets a new verdict.sig and verdict.pub
from the current key, over the same statement but for the key id. score.json and the
bundle are not touched; a result set that does not verify in full is left as it is and
reported, never signed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forge.evidence.artifact_store import ArtifactStore
from forge.evidence.artifacts import PUB_NAME, SIG_NAME
from forge.signing.keystore import SigningKey
from forge_verify import verify_artifacts
from forge_verify.bundle import BUNDLE_NAMES
from forge_verify.canonical import CanonicalJSONError, loads
from forge_verify.dsse import EnvelopeError, parse_envelope
from forge_verify.keys import PublicKeyError, key_id_for, load_public_pems
from forge_verify.score import SCENARIO_ID_RE
from forge_verify.verdict import SCORE_NAME, sign_statement

MAX_SIG_BYTES = 1024 * 1024


@dataclass
class ResignReport:
    """What one pass did: scenario ids signed again, and those left alone with why."""

    resigned: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def _signed_by(store: ArtifactStore, scenario_id: str, key_id: str) -> bool:
    """Whether the result set's verdict.pub holds the key ``key_id`` (cheap pre-filter)."""
    pem = store.read_file(scenario_id, PUB_NAME)
    if pem is None or len(pem) > 64 * 1024:
        return False
    try:
        keys = load_public_pems(pem)
    except PublicKeyError:
        return False
    return len(keys) == 1 and key_id_for(keys[0]) == key_id


def resign_one(store: ArtifactStore, scenario_id: str, revoked: Ed25519PublicKey,
               key: SigningKey) -> str | None:
    """Sign one scenario's stored verdict again with ``key``; None when done, else why
    it was left as it is."""
    files = store.read(scenario_id) or {}
    bundle = next((n for n in BUNDLE_NAMES.values() if n in files), None)
    if bundle is None or any(n not in files for n in (SCORE_NAME, SIG_NAME, PUB_NAME)):
        return "result set incomplete"
    if len(files[SIG_NAME]) > MAX_SIG_BYTES:
        return f"{SIG_NAME} larger than {MAX_SIG_BYTES} bytes"
    new_pub = key.public_pem()
    # The signature is replaced first, then the public key: in between the set fails
    # (never passes under a key that did not sign it; a reader who fetches then asks
    # again), and a pass cut short there finds the new signature and writes the key.
    if not verify_artifacts(files[SCORE_NAME], files[bundle], bundle, files[SIG_NAME],
                            new_pub, trusted=[key.public_key]).ok:
        res = verify_artifacts(files[SCORE_NAME], files[bundle], bundle, files[SIG_NAME],
                               files[PUB_NAME], trusted=[revoked])
        if not res.ok:
            codes = ", ".join(sorted({r.code for r in res.reasons}))
            return f"does not verify against the revoked key ({codes}); not signed again"
        try:
            statement = loads(parse_envelope(files[SIG_NAME]).payload)
        except (EnvelopeError, CanonicalJSONError) as exc:  # verified above: cannot happen
            return f"{SIG_NAME}: {exc}"
        statement["predicate"]["key_id"] = key.key_id
        if not store.replace_signature_file(scenario_id, SIG_NAME,
                                            sign_statement(statement, key).to_json()):
            return "results deleted meanwhile"
    if not store.replace_signature_file(scenario_id, PUB_NAME, new_pub):
        return "results deleted meanwhile"
    return None


def resign_verdicts(store: ArtifactStore, revoked_id: str, revoked: Ed25519PublicKey,
                    key: SigningKey) -> ResignReport:
    """Sign again every stored verdict signed by the revoked key ``revoked_id``."""
    report = ResignReport()
    for scenario_id in sorted(store.score_stamps()):
        if SCENARIO_ID_RE.fullmatch(scenario_id) is None \
                or not _signed_by(store, scenario_id, revoked_id):
            continue
        why = resign_one(store, scenario_id, revoked, key)
        if why is None:
            report.resigned.append(scenario_id)
        else:
            report.refused.append((scenario_id, why))
    return report
