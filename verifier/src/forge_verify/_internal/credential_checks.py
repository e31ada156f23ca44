"""Offline checks of an Open Badges 3.0 credential issued from a Forge verdict.

`verify_credential(token, trusted, verdict=…, status_list=…)` returns the same `VerifyResult`
as verdict verification: PASS only when the JWT is signed (EdDSA) by the trusted key its
`kid` names, the credential has the OpenBadgeCredential shape, and, when given, the verdict
file has the digest the credential names (and verifies with a trusted key) and the status
list (itself signed by a trusted key) does not mark it revoked. Every failed check is a
reason with a stable code; nothing here reaches the network or a Forge installation.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forge_verify._internal.checks import load_trusted_keys
from forge_verify._internal.report import printable
from forge_verify._internal.verify_result import InputError, VerifyResult
from forge_verify.bundle import sha256_hex
from forge_verify.credential import (
    ALGORITHM,
    CREDENTIAL_TYPES,
    JWT_TYPE,
    OB_CONTEXT,
    SCENARIO_URN,
    STATUS_ENTRY_TYPE,
    STATUS_LIST_TYPES,
    STATUS_PURPOSE,
    VC_CONTEXT,
    CompactJws,
    CredentialFormatError,
    decode_compact,
    parse_time,
    sri_hex,
    status_bit,
)
from forge_verify.dsse import EnvelopeError, parse_envelope
from forge_verify.files import InputRefused, read_bounded
from forge_verify.keys import key_id_for, same_text
from forge_verify.score import SCENARIO_ID_RE, TIME_RE
from forge_verify.verdict import StatementError, parse_statement

_KID = re.compile(r"[0-9a-f]{16}")
_INDEX = re.compile(r"0|[1-9][0-9]{0,9}")
CAPS = {"credential": 256 * 1024, "verdict.sig": 1024 * 1024, "status list": 1024 * 1024}


def _types(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    """A JSON array as a list; anything else (a number, an object, null) as no items."""
    return value if isinstance(value, list) else []


def _score(vc: dict[str, Any]) -> float | None:
    """The first result's value as a number, when it is one (the issuer writes a string)."""
    results = _list(_dict(vc.get("credentialSubject")).get("result"))
    value = _dict(results[0]).get("value") if results else None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _signed_by(jws: CompactJws, trusted: dict[str, Ed25519PublicKey], what: str,
               res: VerifyResult) -> bool:
    """Header rules (EdDSA, vc+jwt, a key id) and the signature by the key it names."""
    head = jws.header
    if head.get("alg") != ALGORITHM:
        res.fail("algorithm_refused", f"{what}: alg {str(head.get('alg'))[:20]!r} is not "
                                      f"{ALGORITHM} (only Ed25519 signatures are accepted)")
        return False
    if head.get("typ") != JWT_TYPE:
        res.fail("header_invalid", f"{what}: typ is not {JWT_TYPE!r}")
    kid = head.get("kid")
    if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
        res.fail("header_invalid", f"{what}: kid missing or not a Forge key id")
        return False
    key = trusted.get(kid)
    if key is None:
        res.fail("unknown_key", f"{what}: signed by key {kid}, which is not among the "
                                "trusted keys")
        return False
    if not jws.verifies_with(key):
        res.fail("signature_invalid", f"{what}: the signature does not verify with key {kid}")
        return False
    res.checked.append(f"{what}: EdDSA signature verifies with trusted key {kid}")
    return True


def _structure(vc: dict[str, Any], res: VerifyResult) -> None:
    """The OpenBadgeCredential shape this verifier relies on, each gap a reason."""
    problems: list[str] = []
    ctx = vc.get("@context")
    if not isinstance(ctx, list) or not ctx or ctx[0] != VC_CONTEXT or OB_CONTEXT not in ctx:
        problems.append(f"@context must start with {VC_CONTEXT} and include {OB_CONTEXT}")
    if not set(CREDENTIAL_TYPES) <= set(_types(vc.get("type"))):
        problems.append("type must include VerifiableCredential and OpenBadgeCredential")
    if not isinstance(vc.get("id"), str) or not vc["id"].startswith("urn:uuid:"):
        problems.append("id must be a urn:uuid")
    issuer = _dict(vc.get("issuer"))
    if not isinstance(issuer.get("id"), str):
        problems.append("issuer.id missing")
    elif "iss" in vc and vc["iss"] != issuer["id"]:
        problems.append("iss differs from issuer.id")
    if "jti" in vc and vc["jti"] != vc.get("id"):
        problems.append("jti differs from id")
    if not isinstance(vc.get("validFrom"), str) or TIME_RE.fullmatch(vc["validFrom"]) is None:
        problems.append("validFrom must be an RFC 3339 UTC time")
    subject = _dict(vc.get("credentialSubject"))
    achievement = _dict(subject.get("achievement"))
    if "AchievementSubject" not in _types(subject.get("type")):
        problems.append("credentialSubject.type must include AchievementSubject")
    if "Achievement" not in _types(achievement.get("type")) or not isinstance(
            achievement.get("name"), str) or not isinstance(achievement.get("criteria"), dict):
        problems.append("credentialSubject.achievement must be an Achievement with name "
                        "and criteria")
    for problem in problems:
        res.fail("credential_invalid", f"credential: {problem}")
    if not problems:
        res.checked.append("credential is an OpenBadgeCredential (VC data model 2.0)")
        res.notes.append(f"achievement: {achievement['name']}; issuer: "
                         f"{issuer.get('name') or issuer['id']}; issued {vc['validFrom']}")


def _scenario_id(vc: dict[str, Any]) -> str | None:
    for ev in _list(vc.get("evidence")):
        ident = _dict(ev).get("id")
        if isinstance(ident, str) and ident.startswith(SCENARIO_URN):
            sid = ident[len(SCENARIO_URN):]
            return sid if SCENARIO_ID_RE.fullmatch(sid) else None
    return None


def _verdict_sha(vc: dict[str, Any]) -> str | None:
    for item in _list(vc.get("relatedResource")):
        found = sri_hex(_dict(item).get("digestSRI"))
        if found is not None:
            return found
    return None


def _recipient(vc: dict[str, Any], learner: str, res: VerifyResult) -> None:
    """The credential names ``learner`` (``tenant/subject``): one of its hashed identifiers
    is sha256 of it and that identifier's salt. A genuine credential of another learner
    verifies in every other check, so whoever presents one must be compared with it."""
    subject = _dict(vc.get("credentialSubject"))
    for ident in _list(subject.get("identifier")):
        ident = _dict(ident)
        salt, digest = ident.get("salt"), ident.get("identityHash")
        if not isinstance(salt, str) or not isinstance(digest, str):
            continue
        want = "sha256$" + hashlib.sha256((learner + salt).encode()).hexdigest()
        if same_text(digest, want):
            res.learner = learner
            res.checked.append(f"the credential's learner is {learner}, as expected")
            return
    res.fail("learner_mismatch", f"the credential was not issued to {learner} (its "
                                 "hashed identifier names another learner)")


def _verdict(vc: dict[str, Any], verdict: bytes, trusted: dict[str, Ed25519PublicKey],
             res: VerifyResult) -> None:
    """The given verdict.sig is the one the credential names, and genuine."""
    want = _verdict_sha(vc)
    if want is None:
        res.fail("credential_invalid", "credential: relatedResource names no sha256 "
                                       "digestSRI of the verdict")
        return
    if not same_text(sha256_hex(verdict), want):
        res.fail("verdict_digest_mismatch", "verdict.sig: its sha256 is not the digest the "
                                            "credential names (another or altered verdict)")
        return
    res.checked.append("verdict.sig sha256 matches the credential's digestSRI")
    try:
        env = parse_envelope(verdict)
        statement = parse_statement(env)
    except (EnvelopeError, StatementError) as exc:
        res.fail("verdict_invalid", f"verdict.sig: {exc}")
        return
    good = [kid for kid, key in trusted.items() if env.verify(key)]
    if not good:
        res.fail("verdict_signature_invalid", "verdict.sig: no signature verifies with a "
                                              "trusted key")
    else:
        res.checked.append(f"verdict.sig is signed by trusted key {good[0]}")
    if statement.scenario_id != res.scenario_id:
        res.fail("scenario_mismatch", f"verdict is about {statement.scenario_id}, the "
                                      f"credential about {res.scenario_id}")
    if statement.passed != statement.total:
        res.fail("verdict_not_passing", f"verdict: {statement.passed} of {statement.total} "
                                        "criteria passed; a credential needs all")


def _status(vc: dict[str, Any], status_list: bytes, trusted: dict[str, Ed25519PublicKey],
            res: VerifyResult, at: datetime) -> None:
    """The credential's entry in the signed status list is not set (not revoked)."""
    entry = _dict(vc.get("credentialStatus"))
    index, url = entry.get("statusListIndex"), entry.get("statusListCredential")
    if (entry.get("type") != STATUS_ENTRY_TYPE or entry.get("statusPurpose") != STATUS_PURPOSE
            or not isinstance(index, str) or _INDEX.fullmatch(index) is None
            or not isinstance(url, str)):
        res.fail("credential_invalid", "credential: credentialStatus is not a revocation "
                                       f"{STATUS_ENTRY_TYPE}")
        return
    try:
        jws = decode_compact(status_list)
    except CredentialFormatError as exc:
        res.fail("status_list_invalid", f"status list: {exc}")
        return
    if not _signed_by(jws, trusted, "status list", res):
        return
    doc, subject = jws.claims, _dict(jws.claims.get("credentialSubject"))
    if not set(STATUS_LIST_TYPES) <= set(_types(doc.get("type"))) or subject.get(
            "statusPurpose") != STATUS_PURPOSE:
        res.fail("status_list_invalid", "status list: not a revocation "
                                        "BitstringStatusListCredential")
        return
    if doc.get("id") != url:
        res.fail("status_list_mismatch", "status list: it is not the list the credential "
                                         "points to")
        return
    try:
        revoked = status_bit(subject.get("encodedList"), int(index))  # type: ignore[arg-type]
    except CredentialFormatError as exc:
        res.fail("status_list_invalid", f"status list: {exc}")
        return
    when = doc.get("validFrom")
    if not _fresh(vc, doc, at, res):
        return
    if revoked:
        res.fail("revoked", f"credential: revoked by its issuer (status list of {when})")
    else:
        res.checked.append(f"not revoked (status list of {when})")


def _fresh(vc: dict[str, Any], doc: dict[str, Any], at: datetime, res: VerifyResult) -> bool:
    """The status list is current at `at` and newer than the credential: a list saved
    before a revocation is refused once its validUntil has passed, and one older than the
    credential cannot speak for it."""
    start, until = parse_time(doc.get("validFrom")), parse_time(doc.get("validUntil"))
    if start is None or until is None:
        res.fail("status_list_expired", "status list: it has no validFrom/validUntil; "
                                        "fetch a fresh list from the issuer")
        return False
    if at > until:
        res.fail("status_list_expired", f"status list: valid until {doc['validUntil']}, "
                 f"checked at {at.strftime('%Y-%m-%dT%H:%M:%SZ')}; fetch a fresh list")
        return False
    issued = parse_time(vc.get("validFrom"))
    if issued is not None and start < issued:
        res.fail("status_list_stale", f"status list: issued {doc['validFrom']}, before the "
                 f"credential ({vc['validFrom']}); fetch a fresh list")
        return False
    return True


def verify_credential(
    token: bytes, trusted: list[Ed25519PublicKey], *, verdict: bytes | None = None,
    status_list: bytes | None = None, at: datetime | None = None,
    learner: str | None = None,
) -> VerifyResult:
    """Every check of a credential JWT; see the module docstring. With ``learner``
    (``tenant/subject``), also that the credential was issued to that learner."""
    res = VerifyResult(origin="not_checked")
    keys = {key_id_for(k): k for k in trusted}
    try:
        jws = decode_compact(token)
    except CredentialFormatError as exc:
        res.fail("credential_invalid", f"credential: {exc}")
        return res
    kid = jws.header.get("kid")
    res.key_id = kid if isinstance(kid, str) and _KID.fullmatch(kid) else None
    vc = jws.claims
    res.scenario_id = _scenario_id(vc)
    if _signed_by(jws, keys, "credential", res):
        res.origin = "proven"
    _structure(vc, res)
    res.score = _score(vc)
    if res.scenario_id is None:
        res.fail("credential_invalid", "credential: evidence names no Forge scenario")
    if verdict is not None:
        _verdict(vc, verdict, keys, res)
    else:
        res.notes.append("verdict not given: its digest was not compared (use --verdict)")
    if status_list is not None:
        _status(vc, status_list, keys, res, at or datetime.now(UTC))
    else:
        res.notes.append("status list not given: revocation was not checked "
                         "(use --status-list)")
    if learner is not None:
        _recipient(vc, learner, res)
    else:
        res.notes.append("learner not given: anyone may present this credential (use "
                         "--expect-learner TENANT/SUBJECT)")
    return res


def verify_credential_paths(
    credential: Path, *, trusted_key: Path, verdict: Path | None = None,
    status_list: Path | None = None, at: datetime | None = None, learner: str | None = None,
) -> VerifyResult:
    """Verify files on disk; unreadable input gives status ERROR (exit code 2)."""
    try:
        trusted = load_trusted_keys(trusted_key)
        token = _read_capped(credential, "credential")
        sig = _read_capped(verdict, "verdict.sig") if verdict is not None else None
        lst = _read_capped(status_list, "status list") if status_list is not None else None
    except InputError as exc:
        res = VerifyResult(error=True)
        res.fail("unreadable_input", str(exc))
        return res
    return verify_credential(token, trusted, verdict=sig, status_list=lst, at=at,
                             learner=learner)


def _read_capped(path: Path, what: str) -> bytes:
    """A regular file within its cap, else InputError."""
    try:
        return read_bounded(path, CAPS[what], what=what)
    except InputRefused as exc:
        raise InputError(str(exc)) from None


def render_credential(res: VerifyResult) -> str:
    """Human report: status line, reasons, what was checked, notes."""
    if res.error:
        return printable("ERROR " + "; ".join(r.message for r in res.reasons))
    head = f"{res.status} credential"
    if res.scenario_id:
        head += f" for lab {res.scenario_id}"
    if res.score is not None:
        head += f" score={res.score:g}"
    if res.key_id:
        head += f" key={res.key_id}"
    lines = [head]
    lines += [f"  FAIL [{r.code}] {r.message}" for r in res.reasons]
    lines += [f"  ok   {c}" for c in res.checked]
    lines += [f"  note {n}" for n in res.notes]
    return "\n".join(printable(line) for line in lines)
