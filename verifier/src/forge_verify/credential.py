"""Open Badges 3.0 credentials from passing verdicts: the formats, shared by issuer and verifier.

A credential is an `OpenBadgeCredential` (W3C Verifiable Credentials data model 2.0) secured
as a JWT (VC-JOSE: `typ: vc+jwt`, `alg: EdDSA`, `kid` = the verdict key's id), so it is
checked with the same Ed25519 keys as verdicts. It names the achievement (lab title,
objectives), the result (score, criteria met) and the verdict it was issued from, by the
sha256 of `verdict.sig` (`relatedResource[].digestSRI`). Its `credentialStatus` points to a
Bitstring Status List (revocation) that the scoreboard publishes, itself a signed JWT.

Standard library + cryptography only: the offline verifier decodes and checks these without
PyJWT; the platform issues them with PyJWT and both are tested against each other.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forge_verify.score import TIME_RE

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
OB_CONTEXT = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
CREDENTIAL_TYPES = ("VerifiableCredential", "OpenBadgeCredential")
STATUS_LIST_TYPES = ("VerifiableCredential", "BitstringStatusListCredential")
STATUS_ENTRY_TYPE = "BitstringStatusListEntry"
STATUS_PURPOSE = "revocation"
# How long a signed status list is believed after it was issued: a revoked learner can show
# a list saved before the revocation for at most this long. The scoreboard re-signs well
# within it; an employer fetches a fresh list.
STATUS_LIST_VALIDITY_S = 24 * 3600
JWT_TYPE = "vc+jwt"
ALGORITHM = "EdDSA"
MEDIA_TYPE = "application/vc+jwt"
CREDENTIAL_FILE = "credential.vc"
VERDICT_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
STATUS_LIST_BITS = 131_072  # 16 KiB, the Bitstring Status List minimum (herd privacy)
MAX_JWT_BYTES = 256 * 1024
EARNED_WHEN = "every objective of the lab is met (all criteria passed)"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_SRI = re.compile(r"sha256-([A-Za-z0-9+/]{43}=)")


class CredentialFormatError(ValueError):
    """Bytes that should hold a credential (or status list) do not; the message names the part."""


@dataclass(frozen=True)
class CompactJws:
    """A decoded compact JWS: header and claims as JSON, the signed bytes and the signature."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    def verifies_with(self, key: Ed25519PublicKey) -> bool:
        """True when the Ed25519 signature over the signing input verifies with `key`."""
        try:
            key.verify(self.signature, self.signing_input)
        except InvalidSignature:
            return False
        return True


def b64url_decode(text: str, what: str) -> bytes:
    """Unpadded base64url, strictly (no padding, no other alphabet)."""
    if _B64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise CredentialFormatError(f"{what}: not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CredentialFormatError(f"{what}: not base64url") from None


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: > 4300 digits too
        raise CredentialFormatError(f"{what}: not JSON") from None
    if not isinstance(value, dict):
        raise CredentialFormatError(f"{what}: not a JSON object")
    return value


def decode_compact(token: bytes | str) -> CompactJws:
    """Split and decode a compact JWS (`header.claims.signature`); no signature check here."""
    raw = token.encode("ascii", "replace") if isinstance(token, str) else token
    if len(raw) > MAX_JWT_BYTES:
        raise CredentialFormatError(f"token: larger than {MAX_JWT_BYTES} bytes")
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise CredentialFormatError("token: not ASCII text") from None
    parts = text.split(".")
    if len(parts) != 3:
        raise CredentialFormatError("token: not a compact JWS (header.payload.signature)")
    header = _json_object(b64url_decode(parts[0], "header"), "header")
    claims = _json_object(b64url_decode(parts[1], "payload"), "payload")
    signature = b64url_decode(parts[2], "signature")
    return CompactJws(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def digest_sri(data: bytes) -> str:
    """Subresource-Integrity form of sha256 (`sha256-<base64>`), as VCDM 2.0 `digestSRI`."""
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def sri_hex(value: object) -> str | None:
    """The hex sha256 named by a `digestSRI` value, or None when it is not `sha256-…`."""
    if not isinstance(value, str) or (m := _SRI.fullmatch(value)) is None:
        return None
    return base64.b64decode(m.group(1)).hex()


def is_passing(score_doc: dict[str, Any]) -> bool:
    """The pass rule for a credential: every criterion passed (see EARNED_WHEN)."""
    passed, total = score_doc.get("passed"), score_doc.get("total")
    return (isinstance(passed, int) and isinstance(total, int) and not isinstance(passed, bool)
            and total > 0 and passed == total)


def encode_status_list(revoked: Iterable[int], bits: int = STATUS_LIST_BITS) -> str:
    """The `encodedList` of a Bitstring Status List: multibase base64url (`u…`) of the
    GZIP-compressed bitstring, index 0 being the most significant bit of the first byte."""
    buf = bytearray(bits // 8)
    for index in revoked:
        if not 0 <= index < bits:
            raise ValueError(f"status index {index} outside 0..{bits - 1}")
        buf[index // 8] |= 0x80 >> (index % 8)
    return "u" + b64url_encode(gzip.compress(bytes(buf), mtime=0))


def status_bit(encoded: str, index: int, max_bits: int = 8 * STATUS_LIST_BITS) -> bool:
    """The bit at `index` of an `encodedList` (bounded decompression: no gzip bomb)."""
    if not isinstance(encoded, str) or not encoded.startswith("u"):
        raise CredentialFormatError("encodedList: not multibase base64url ('u' prefix)")
    packed = b64url_decode(encoded[1:], "encodedList")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(packed, max_bits // 8 + 1)
    except zlib.error:
        raise CredentialFormatError("encodedList: not GZIP data") from None
    if len(data) > max_bits // 8 or not inflater.eof:
        raise CredentialFormatError("encodedList: larger than allowed or truncated")
    if not 0 <= index < len(data) * 8:
        raise CredentialFormatError(f"statusListIndex {index} is outside the list "
                                    f"({len(data) * 8} entries)")
    return bool(data[index // 8] & (0x80 >> (index % 8)))


SCENARIO_URN = "urn:forge:scenario:"


@dataclass(frozen=True)
class Achievement:
    """What the credential names: the lab (template) and what passing it shows."""

    id: str
    title: str
    summary: str
    objectives: tuple[str, ...]


def credential_claims(
    *, credential_id: str, issuer_id: str, issuer_name: str, issued_at: str,
    achievement: Achievement, score_doc: dict[str, Any], verdict_sig: bytes,
    verdict_url: str, status_list_url: str, status_index: int, identity_salt: str,
) -> dict[str, Any]:
    """The JWT claims of an OpenBadgeCredential for a passing verdict (the VC itself, plus
    `iss`, `jti`, `nbf` and `iat` for JWT tooling). The learner is named only by a salted
    hash of `tenant/subject` (an OB IdentityObject), never in clear."""
    sid = str(score_doc["scenario_id"])
    identity = f"{score_doc['tenant_id']}/{score_doc['subject']}"
    criteria = "\n".join(f"- {o}" for o in achievement.objectives)
    vc: dict[str, Any] = {
        "@context": [VC_CONTEXT, OB_CONTEXT],
        "id": credential_id,
        "type": list(CREDENTIAL_TYPES),
        "issuer": {"id": issuer_id, "type": ["Profile"], "name": issuer_name},
        "validFrom": issued_at,
        "name": achievement.title,
        "credentialSubject": {
            "type": ["AchievementSubject"],
            "identifier": [{
                "type": "IdentityObject", "identityType": "identifier", "hashed": True,
                "identityHash": "sha256$" + hashlib.sha256(
                    (identity + identity_salt).encode()).hexdigest(),
                "salt": identity_salt}],
            "achievement": {
                "id": achievement.id, "type": ["Achievement"], "name": achievement.title,
                "description": achievement.summary, "achievementType": "Assessment",
                "criteria": {"narrative": f"Earned when {EARNED_WHEN}. Objectives:\n{criteria}"},
                "resultDescription": [{
                    "id": f"{achievement.id}#score", "type": ["ResultDescription"],
                    "name": "Score (weight earned minus hint costs)",
                    "resultType": "ScaledScore", "valueMin": "0", "valueMax": "1"}],
            },
            "result": [{"type": ["Result"], "resultDescription": f"{achievement.id}#score",
                        "value": f"{score_doc['score']:g}"}],
            "activityEndDate": score_doc["completed_at"],
        },
        "evidence": [{
            "id": SCENARIO_URN + sid, "type": ["Evidence"],
            "name": f"Signed verdict of lab {sid}",
            "description": f"{score_doc['passed']} of {score_doc['total']} criteria passed; "
                           "every check judged again and signed by the platform.",
            "genre": "Forge verdict (DSSE, Ed25519)"}],
        "relatedResource": [{"id": verdict_url, "digestSRI": digest_sri(verdict_sig),
                             "mediaType": VERDICT_MEDIA_TYPE}],
        "credentialStatus": {
            "id": f"{status_list_url}#{status_index}", "type": STATUS_ENTRY_TYPE,
            "statusPurpose": STATUS_PURPOSE, "statusListIndex": str(status_index),
            "statusListCredential": status_list_url},
    }
    return {**vc, "iss": issuer_id, "jti": credential_id}


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 UTC time of second precision (`2026-01-02T03:04:05Z`), else None."""
    if not isinstance(value, str) or TIME_RE.fullmatch(value) is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def status_list_claims(*, list_url: str, issuer_id: str, issuer_name: str, issued_at: str,
                       revoked: Iterable[int]) -> dict[str, Any]:
    """The claims of a BitstringStatusListCredential (revocation) naming `revoked` indexes,
    valid for STATUS_LIST_VALIDITY_S from `issued_at` (a saved list cannot hide a later
    revocation for longer)."""
    start = parse_time(issued_at)
    if start is None:
        raise CredentialFormatError("issued_at must be an RFC 3339 UTC time")
    until = (start + timedelta(seconds=STATUS_LIST_VALIDITY_S)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "@context": [VC_CONTEXT], "id": list_url, "type": list(STATUS_LIST_TYPES),
        "issuer": {"id": issuer_id, "type": ["Profile"], "name": issuer_name},
        "validFrom": issued_at, "validUntil": until,
        "credentialSubject": {"id": f"{list_url}#list", "type": "BitstringStatusList",
                              "statusPurpose": STATUS_PURPOSE,
                              "encodedList": encode_status_list(revoked)},
        "iss": issuer_id, "jti": list_url,
    }


__all__ = [
    "ALGORITHM",
    "CREDENTIAL_FILE",
    "CREDENTIAL_TYPES",
    "EARNED_WHEN",
    "JWT_TYPE",
    "MEDIA_TYPE",
    "OB_CONTEXT",
    "SCENARIO_URN",
    "STATUS_ENTRY_TYPE",
    "STATUS_LIST_BITS",
    "STATUS_LIST_TYPES",
    "STATUS_LIST_VALIDITY_S",
    "STATUS_PURPOSE",
    "VC_CONTEXT",
    "VERDICT_MEDIA_TYPE",
    "Achievement",
    "CompactJws",
    "CredentialFormatError",
    "b64url_decode",
    "b64url_encode",
    "credential_claims",
    "decode_compact",
    "digest_sri",
    "encode_status_list",
    "is_passing",
    "parse_time",
    "sri_hex",
    "status_bit",
    "status_list_claims",
]
