"""The offline verifier: checks a verdict set and reports every reason it fails.

Used by `forge verify` and scripts/verify_verdict.py. Needs only the standard library,
`cryptography` and `zstandard`, and no Forge configuration, services or environment.
Without trusted keys it proves integrity (the four files agree and are signed by the key
in verdict.pub) but not origin (who holds that key); with trusted keys it proves both.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forge_verify._internal.bundle_checks import (
    check_audit,
    check_bundle,
    check_evidence,
    check_recordings,
    rejudge_checks,
)
from forge_verify._internal.verify_result import InputError, VerifyResult
from forge_verify.bundle import ReadLimits, sha256_hex
from forge_verify.canonical import CanonicalJSONError, is_canonical_file, loads
from forge_verify.dsse import Envelope, EnvelopeError, exact_problem, parse_envelope
from forge_verify.files import InputRefused, read_bounded
from forge_verify.keys import (
    PublicKeyError,
    key_id_for,
    load_public_pems,
    public_pem,
    raw_public_bytes,
    same_text,
)
from forge_verify.score import (
    SCENARIO_ID_RE,
    SCORE_FORMAT,
    ScoreInputError,
    recompute_from_document,
)
from forge_verify.verdict import StatementError, Verdict, parse_statement

__all__ = ["INPUT_CAPS", "ORIGIN_NOT_PROVEN", "expect", "load_trusted_keys", "verify_artifacts",
           "verify_paths"]

MAX_INPUT_BYTES = 256 * 1024 * 1024  # the bundle; the other files are far smaller
INPUT_CAPS = {"score": 16 * 1024 * 1024, "bundle": MAX_INPUT_BYTES,
              "verdict.sig": 1024 * 1024, "verdict.pub": 64 * 1024, "trusted key": 64 * 1024}
ORIGIN_NOT_PROVEN = ("no trusted key given: only integrity was proven, not origin "
                     "(anyone can sign with a fresh key; use --trusted-key)")
NOT_JUDGED_UNSIGNED = ("checks were not judged again: score.json or the bundle is not what "
                       "the verdict signs, so their criteria and outputs prove nothing (and a "
                       "pattern taken from them could run for ever)")


def load_trusted_keys(path: Path) -> list[Ed25519PublicKey]:
    """Trusted public keys from a PEM file (one or more keys) or a directory of PEM files.

    In a directory, files that are not PEM public keys (a README, notes) are skipped; one
    over the trusted key cap is such a file too (no key is that large), not a reason to stop."""
    in_dir = path.is_dir()
    files = sorted(p for p in path.iterdir() if p.is_file()) if in_dir else [path]
    keys: list[Ed25519PublicKey] = []
    for f in files:
        try:
            data = read_bounded(f, INPUT_CAPS["trusted key"], what="trusted key")
        except InputRefused as exc:
            if in_dir and exc.reason.startswith("larger than"):
                continue
            raise InputError(str(exc)) from None
        if in_dir and b"-----BEGIN PUBLIC KEY-----" not in data:
            continue
        try:
            keys.extend(load_public_pems(data))
        except PublicKeyError as exc:
            raise InputError(f"trusted key {f}: {exc}") from None
    if not keys:
        raise InputError(f"trusted key {path}: no Ed25519 public key found")
    return keys


def _signature(env: Envelope | None, key: Ed25519PublicKey | None, kid: str | None,
               res: VerifyResult) -> bool:
    if env is None or key is None:
        return False
    good = env.verify(key)
    if not good:
        res.fail("signature_invalid", "verdict.sig: no signature verifies with verdict.pub")
        return False
    res.checked.append("DSSE signature verifies with verdict.pub")
    if kid not in good:
        res.fail("keyid_mismatch", f"verdict.sig: signature keyid {good[0]!r} is not the id "
                                   f"of verdict.pub ({kid})")
    return True


def _score_doc(score_json: bytes, verdict: Verdict | None, res: VerifyResult) -> dict[str, Any]:
    try:
        doc = loads(score_json)
    except CanonicalJSONError as exc:
        res.fail("score_invalid", f"score.json: {exc}")
        return {}
    if not isinstance(doc, dict) or doc.get("format") != SCORE_FORMAT:
        res.fail("score_invalid", f"score.json: not a {SCORE_FORMAT} document")
        return {}
    sid = doc.get("scenario_id")
    if not isinstance(sid, str) or SCENARIO_ID_RE.fullmatch(sid) is None:
        res.fail("score_invalid", "score.json: scenario_id missing or malformed")
    if not is_canonical_file(score_json):
        res.fail("score_not_canonical", "score.json: not in canonical JSON form")
    try:
        summary = recompute_from_document(doc)
    except ScoreInputError as exc:
        res.fail("score_inconsistent", f"score.json: {exc}")
        return doc
    stated = (doc.get("score"), doc.get("passed"), doc.get("total"))
    if stated != (summary.score, summary.passed, summary.total):
        res.fail("score_inconsistent", f"score.json: states {stated} but its criteria give "
                                       f"{(summary.score, summary.passed, summary.total)}")
    elif verdict is not None and (verdict.score, verdict.passed, verdict.total) != stated:
        res.fail("score_inconsistent", "verdict predicate score/passed/total differ from "
                                       "score.json")
    else:
        res.checked.append("score recomputed from criteria matches score.json and verdict")
    return doc


def _whose(doc: dict[str, Any], res: VerifyResult) -> None:
    """Whose verdict on which lab, as score.json says (signed when its digest matched): a
    genuine PASS of another learner, or of an easier lab, verifies too, so the report
    names both and `expect` compares them."""
    tenant, subject, template = doc.get("tenant_id"), doc.get("subject"), doc.get("template")
    if isinstance(tenant, str) and isinstance(subject, str):
        res.learner = f"{tenant}/{subject}"
    if isinstance(doc.get("track"), str):
        res.track = doc["track"]
    if isinstance(template, dict):
        name, digest = template.get("name"), template.get("sha256")
        res.lab = name if isinstance(name, str) else None
        res.template_sha256 = digest if isinstance(digest, str) else None


def expect(res: VerifyResult, *, learner: str | None = None, lab: str | None = None) -> None:
    """Fail ``res`` unless the verdict is ``learner``'s (``tenant/subject``) on ``lab`` (a
    template name), where given: what the person checking a verdict was told it is."""
    for what, given, found in (("learner", learner, res.learner), ("lab", lab, res.lab)):
        if given is None:
            continue
        if found is not None and same_text(found, given):
            res.checked.append(f"the verdict's {what} is {given}, as expected")
        else:
            res.fail(f"{what}_mismatch", f"the verdict's {what} is "
                                         f"{found or '(none named)'}, not {given}")


def verify_artifacts(
    score_json: bytes, bundle: bytes, bundle_name: str, verdict_sig: bytes, verdict_pub: bytes,
    *, trusted: list[Ed25519PublicKey] | None = None, limits: ReadLimits | None = None,
) -> VerifyResult:
    """Run every check over the four files' bytes and collect every failure."""
    res = VerifyResult()
    key: Ed25519PublicKey | None = None
    try:
        key = load_public_pems(verdict_pub)[0]
        res.key_id = key_id_for(key)
        if public_pem(key) != verdict_pub:
            res.fail("pubkey_not_canonical", "verdict.pub: bytes differ from the canonical PEM "
                                             "of the key it holds (altered?)")
    except PublicKeyError as exc:
        res.fail("pubkey_invalid", f"verdict.pub: {exc}")
    env: Envelope | None = None
    try:
        env = parse_envelope(verdict_sig)
        if (problem := exact_problem(verdict_sig, env)) is not None:
            res.fail("envelope_not_canonical", f"verdict.sig: {problem}")
    except EnvelopeError as exc:
        res.fail("envelope_invalid", f"verdict.sig: {exc}")
    signed = _signature(env, key, res.key_id, res)  # and below: both digests match
    verdict: Verdict | None = None
    if env is not None:
        try:
            verdict = parse_statement(env)
        except StatementError as exc:
            res.fail("statement_invalid", f"verdict statement: {exc}")
    signed = signed and verdict is not None
    if verdict is not None:
        res.scenario_id = verdict.scenario_id
        res.score, res.passed, res.total = verdict.score, verdict.passed, verdict.total
        if res.key_id is not None and verdict.key_id != res.key_id:
            res.fail("keyid_mismatch", f"verdict names key {verdict.key_id}, verdict.pub is "
                                       f"{res.key_id}")
        if same_text(sha256_hex(score_json), verdict.score_sha256):
            res.checked.append("score.json sha256 matches the signed statement")
        else:
            signed = False
            res.fail("score_digest_mismatch", "score.json: sha256 differs from the signed "
                                              "statement")
        if same_text(sha256_hex(bundle), verdict.bundle_sha256):
            res.checked.append(f"{bundle_name} sha256 matches the signed statement")
        else:
            signed = False
            res.fail("bundle_digest_mismatch", f"{bundle_name}: sha256 differs from the "
                                               "signed statement")
        if bundle_name != verdict.bundle_name:
            res.notes.append(f"bundle file is named {bundle_name}; the statement names "
                             f"{verdict.bundle_name}")
    doc = _score_doc(score_json, verdict, res)
    if verdict is not None and same_text(sha256_hex(score_json), verdict.score_sha256):
        _whose(doc, res)  # named only from the score.json the statement signs
    members, manifest = check_bundle(bundle, limits, res)
    check_recordings(members, manifest, res)
    ids = {"statement": verdict.scenario_id if verdict else None,
           "score.json": doc.get("scenario_id"), "manifest": manifest.get("scenario_id")}
    present = {k: v if isinstance(v, str) else repr(v) for k, v in ids.items() if v is not None}
    if len(set(present.values())) > 1:
        res.fail("scenario_mismatch", "scenario_id differs: " + ", ".join(
            f"{k}={v}" for k, v in present.items()))
    elif len(present) == 3:
        res.checked.append("scenario_id agrees in statement, score.json and manifest")
    sid = doc.get("scenario_id") or (verdict.scenario_id if verdict else None)
    res.origin = _origin(key, trusted)  # before judging, which needs proven origin
    if doc and members and isinstance(sid, str) and SCENARIO_ID_RE.fullmatch(sid):
        check_evidence(doc, members, res)
        if signed:
            rejudge_checks(doc, members, res)
        else:
            res.notes.append(NOT_JUDGED_UNSIGNED)
        check_audit(doc, members, sid, key, res.key_id, res)
    if trusted is None:
        res.notes.append(ORIGIN_NOT_PROVEN)
    elif res.origin == "proven":
        res.checked.append(f"verdict.pub ({res.key_id}) is a trusted key: origin proven")
    elif res.origin == "untrusted":
        res.fail("untrusted_key", f"verdict.pub ({res.key_id}) is not among the trusted keys")
    return res


def _origin(key: Ed25519PublicKey | None, trusted: list[Ed25519PublicKey] | None) -> str:
    """proven when verdict.pub is one of the trusted keys, untrusted when it is not,
    not_checked without trusted keys (or without a readable verdict.pub)."""
    if trusted is None or key is None:
        return "not_checked"
    raw = raw_public_bytes(key)
    if any(hmac.compare_digest(raw, raw_public_bytes(t)) for t in trusted):
        return "proven"
    return "untrusted"


def _read(path: Path, what: str) -> bytes:
    """A regular file within its cap (no device, FIFO or endless input), else InputError."""
    try:
        return read_bounded(path, INPUT_CAPS[what], what=what)
    except InputRefused as exc:
        raise InputError(str(exc)) from None


def _is_or_holds(trusted_key: Path, file: Path) -> bool:
    """Whether `trusted_key` (a key file or a folder of them) is, or holds, `file`."""
    try:
        if trusted_key.is_dir():
            return any(p.is_file() and p.samefile(file) for p in trusted_key.iterdir())
        return trusted_key.samefile(file)
    except OSError:
        return False


def verify_paths(
    score: Path, bundle: Path, sig: Path, pub: Path, *, trusted_key: Path | None = None,
    limits: ReadLimits | None = None,
) -> VerifyResult:
    """Verify four files on disk; unreadable input gives status ERROR (exit code 2).

    A trusted key that is the set's own verdict.pub (`--trusted-key .` in the results
    folder) is refused: the files' own key proves nothing about who signed them."""
    try:
        if trusted_key is not None and _is_or_holds(Path(trusted_key), Path(pub)):
            raise InputError(
                f"trusted key {trusted_key}: is or holds {pub}, the verdict.pub of the files "
                "being verified, so it proves nothing about who signed them; give the "
                "platform's public keys instead (forge keys export-public)")
        trusted = load_trusted_keys(trusted_key) if trusted_key is not None else None
        data = [_read(Path(p), w) for p, w in ((score, "score"), (bundle, "bundle"),
                                               (sig, "verdict.sig"), (pub, "verdict.pub"))]
    except InputError as exc:
        res = VerifyResult(error=True)
        res.fail("unreadable_input", str(exc))
        return res
    return verify_artifacts(data[0], data[1], Path(bundle).name, data[2], data[3],
                            trusted=trusted, limits=limits)
