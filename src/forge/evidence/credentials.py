"""Issuing Open Badges 3.0 credentials from passing verdicts, and the signed status list.

A credential is issued once per scenario, only when its verdict passes (every criterion met,
`forge_verify.credential.EARNED_WHEN`) and verifies with the platform's keys. It is a JWT-VC
signed with the current verdict key (PyJWT, EdDSA, `kid` in the header), and stored as
issued so every download returns the same bytes. Each credential gets a random, unique
index in one revocation Bitstring Status List (131,072 entries: an index says nothing
about how many credentials exist); the list is signed on each publication.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forge.errors import ForgeError
from forge.evidence.artifact_store import ArtifactStore
from forge.signing.keystore import SigningKey
from forge.store.db import Database
from forge.store.issued_credentials import (
    find_for_scenario,
    record_issued,
    replace_token,
    revoked_indexes,
    signed_by,
)
from forge.store.models import IssuedCredential
from forge_verify.bundle import BUNDLE_NAMES, BundleError, read_bundle
from forge_verify.credential import (
    ALGORITHM,
    EARNED_WHEN,
    JWT_TYPE,
    OB_CONTEXT,
    STATUS_LIST_BITS,
    VC_CONTEXT,
    Achievement,
    credential_claims,
    digest_sri,
    is_passing,
    status_list_claims,
)
from forge_verify.dsse import EnvelopeError, parse_envelope
from forge_verify.score import format_time
from forge_verify.verdict import SCORE_NAME

ISSUER_NAME = "FrostGate Forge"
TEMPLATE_MEMBER = "template.yaml"
SIG_NAME = "verdict.sig"
_INDEX_ATTEMPTS = 16


class CredentialRefused(ForgeError):
    """No credential for this verdict; the message says why in plain words."""


@dataclass(frozen=True)
class CredentialUrls:
    """Where the installation publishes what its credentials point to."""

    base: str

    @property
    def issuer(self) -> str:
        """The issuer profile (also the credential's `issuer.id` and JWT `iss`)."""
        return f"{self.base}/v1/credentials/issuer"

    @property
    def status_list(self) -> str:
        """The signed revocation status list."""
        return f"{self.base}/v1/credentials/status/1"

    def achievement(self, template: str) -> str:
        """The achievement a lab stands for."""
        return f"{self.base}/v1/credentials/achievements/{template}"

    def verdict(self, scenario_id: str) -> str:
        """The verdict file the credential was issued from (owner-only download)."""
        return f"{self.base}/v1/scores/{scenario_id}/artifacts/{SIG_NAME}"


def sign_jwt(claims: Mapping[str, Any], key: SigningKey) -> str:
    """A compact JWS (`typ: vc+jwt`, EdDSA) over `claims`, naming the key by its id."""
    return jwt.encode(dict(claims), key.private_key, algorithm=ALGORITHM,
                      headers={"kid": key.key_id, "typ": JWT_TYPE})


def resign_jwt(token: str, revoked: Ed25519PublicKey, key: SigningKey,
               verdict_sig: bytes | None = None) -> str:
    """The same claims signed by ``key``, from a credential JWT that ``revoked`` signed
    (jwt.InvalidTokenError when it did not: a token not verified is never signed again);
    with ``verdict_sig`` (the verdict signed again), naming that verdict by its digest.
    Its times are kept, so an expired credential stays expired."""
    claims = jwt.decode(token, revoked, algorithms=[ALGORITHM], options={
        "verify_exp": False, "verify_nbf": False, "verify_iat": False,
        "verify_aud": False, "verify_iss": False})
    if verdict_sig is not None:
        for item in claims.get("relatedResource") or []:
            if isinstance(item, dict) and "digestSRI" in item:
                item["digestSRI"] = digest_sri(verdict_sig)
    return sign_jwt(claims, key)


def _resigned_verdict(store: ArtifactStore, scenario_id: str, key: SigningKey) -> bytes | None:
    """The scenario's stored verdict.sig when ``key`` signed it (signed again), else None."""
    try:
        sig = store.read_file(scenario_id, SIG_NAME)
        return sig if sig is not None and parse_envelope(sig).verify(key.public_key) else None
    except (ValueError, EnvelopeError):
        return None


def resign_credentials(db: Database, store: ArtifactStore, revoked_id: str,
                       revoked: Ed25519PublicKey, key: SigningKey,
                       ) -> tuple[int, list[tuple[str, str]]]:
    """Sign again every stored credential the revoked key signed, naming its verdict as
    signed again when it was: (how many, those left as they are with why)."""
    done, refused = 0, []
    for row in signed_by(db, revoked_id):
        verdict = _resigned_verdict(store, row.scenario_id, key)
        try:
            token = resign_jwt(row.token, revoked, key, verdict)
        except jwt.InvalidTokenError as exc:
            refused.append((row.credential_id, f"does not verify against the revoked key "
                                               f"({type(exc).__name__}); not signed again"))
            continue
        if replace_token(db, row.credential_id, revoked_id, key.key_id, token):
            done += 1
    return done, refused


def achievement_of(files: Mapping[str, bytes], urls: CredentialUrls,
                   score_doc: dict[str, Any]) -> Achievement:
    """The lab as graded: title, summary and objectives from the bundle's template.yaml (the
    exact template the verdict covers), falling back to the template's name."""
    name = str(_dict(score_doc.get("template")).get("name") or score_doc.get("track"))
    meta: dict[str, Any] = {}
    bundle = next((files[n] for n in BUNDLE_NAMES.values() if n in files), None)
    try:
        members = read_bundle(bundle) if bundle is not None else {}
        doc = yaml.safe_load(members.get(TEMPLATE_MEMBER, b"") or b"{}")
        meta = _dict(_dict(doc).get("metadata"))
    except (BundleError, yaml.YAMLError):
        meta = {}
    objectives = tuple(str(o) for o in meta.get("objectives") or [] if isinstance(o, str))
    criteria = tuple(str(c.get("description")) for c in score_doc.get("criteria") or []
                     if isinstance(c, dict))
    return Achievement(id=urls.achievement(name), title=str(meta.get("title") or name),
                       summary=str(meta.get("summary") or f"Lab {name}"),
                       objectives=objectives or criteria)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def refuse_unless_passing(score_doc: dict[str, Any]) -> None:
    """409 `credential_not_earned` for a verdict that does not pass."""
    if not is_passing(score_doc):
        raise CredentialRefused(
            "credential_not_earned", 409,
            f"No credential for this lab: one is issued only when {EARNED_WHEN}; this verdict "
            f"has {score_doc.get('passed')} of {score_doc.get('total')} criteria passed.",
            [{"field": "passed", "problem": "not every criterion passed"}])


def issue_credential(db: Database, files: Mapping[str, bytes], key: SigningKey,
                     urls: CredentialUrls, now: datetime | None = None) -> IssuedCredential:
    """The scenario's credential: the one already issued, or a new one signed by `key`.
    The caller has checked who may have it and that the verdict verifies."""
    score_doc = json.loads(files[SCORE_NAME])
    refuse_unless_passing(score_doc)
    sid = str(score_doc["scenario_id"])
    existing = find_for_scenario(db, sid)
    if existing is not None:
        return existing
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    achievement = achievement_of(files, urls, score_doc)
    for _ in range(_INDEX_ATTEMPTS):
        credential_id = f"urn:uuid:{uuid.uuid4()}"
        index = secrets.randbelow(STATUS_LIST_BITS)
        claims = credential_claims(
            credential_id=credential_id, issuer_id=urls.issuer, issuer_name=ISSUER_NAME,
            issued_at=format_time(moment, "issued_at"), achievement=achievement,
            score_doc=score_doc, verdict_sig=files[SIG_NAME], verdict_url=urls.verdict(sid),
            status_list_url=urls.status_list, status_index=index,
            identity_salt=secrets.token_hex(16))
        claims |= {"iat": int(moment.timestamp()), "nbf": int(moment.timestamp())}
        row = record_issued(db, IssuedCredential(
            credential_id=credential_id, scenario_id=sid, tenant_id=score_doc["tenant_id"],
            subject=score_doc["subject"], status_index=index, key_id=key.key_id,
            token=sign_jwt(claims, key), issued_at=moment, revoked_at=None,
            revoke_reason=None))
        if row is not None:
            return row
    raise ForgeError("credential_unavailable", 503,
                     "the revocation list has no free place for a new credential; retry")


def status_list_token(db: Database, key: SigningKey, urls: CredentialUrls,
                      now: datetime | None = None) -> str:
    """The revocation status list as it stands now, signed by `key`."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    claims = status_list_claims(list_url=urls.status_list, issuer_id=urls.issuer,
                                issuer_name=ISSUER_NAME,
                                issued_at=format_time(moment, "issued_at"),
                                revoked=revoked_indexes(db))
    claims |= {"iat": int(moment.timestamp())}
    return sign_jwt(claims, key)


def issuer_profile(urls: CredentialUrls) -> dict[str, Any]:
    """The issuer's Open Badges Profile, served at its id."""
    return {"@context": [VC_CONTEXT, OB_CONTEXT],
            "id": urls.issuer, "type": ["Profile"], "name": ISSUER_NAME,
            "description": "Issues credentials from signed, offline-verifiable lab verdicts; "
                           f"public keys at {urls.base}/v1/credentials/keys"}
