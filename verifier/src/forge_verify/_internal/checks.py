"""The offline verifier: checks a verdict set and reports every reason it fails.

Used by `forge verify` and scripts/verify_verdict.py. Needs only the standard library,
`cryptography` and `zstandard`, and no Forge configuration, services or environment.
Without trusted keys it proves integrity (the four files agree and are signed by the key
in verdict.pub) but not origin (who holds that key); with trusted keys it proves both.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forge_verify.aids import aids_problems
from forge_verify.audit_chain import scenario_stream, verify_chain
from forge_verify.bundle import (
    MANIFEST,
    BundleError,
    ReadLimits,
    parse_manifest,
    read_bundle,
    sha256_hex,
)
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
from forge_verify.recordings import MEMBER_PREFIX, recording_problem
from forge_verify.rejudge import NOT_REJUDGED, rejudge_bundle
from forge_verify.score import (
    SCENARIO_ID_RE,
    SCORE_FORMAT,
    ScoreInputError,
    recompute_from_document,
)
from forge_verify.verdict import StatementError, Verdict, parse_statement

AUDIT_MEMBER = "audit/scenario.jsonl"
TEMPLATE_MEMBER = "template.yaml"
MAX_INPUT_BYTES = 256 * 1024 * 1024  # the bundle; the other files are far smaller
INPUT_CAPS = {"score": 16 * 1024 * 1024, "bundle": MAX_INPUT_BYTES,
              "verdict.sig": 1024 * 1024, "verdict.pub": 64 * 1024, "trusted key": 64 * 1024}
ORIGIN_NOT_PROVEN = ("no trusted key given: only integrity was proven, not origin "
                     "(anyone can sign with a fresh key; use --trusted-key)")
NOT_JUDGED_UNSIGNED = ("checks were not judged again: score.json or the bundle is not what "
                       "the verdict signs, so their criteria and outputs prove nothing (and a "
                       "pattern taken from them could run for ever)")
NOT_JUDGED_ORIGIN = ("checks were not judged again: their origin is not proven, so anyone "
                     "could have written criteria.json and a pattern in it could run for ever; "
                     "a trusted key (--trusted-key) proves origin and has them judged again")


class InputError(Exception):
    """An input file is missing or unreadable (exit code 2, not a verification failure)."""


@dataclass(frozen=True)
class Reason:
    """One failed check: a stable code and a human explanation."""

    code: str
    message: str


@dataclass
class VerifyResult:
    """Everything the verifier found; `status` is PASS, FAIL or ERROR (unreadable input)."""

    reasons: list[Reason] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    origin: str = "not_checked"
    error: bool = False
    scenario_id: str | None = None
    key_id: str | None = None
    score: float | None = None
    passed: int | None = None
    total: int | None = None
    learner: str | None = None  # "tenant/subject", as score.json names them
    lab: str | None = None  # the template's name
    track: str | None = None
    template_sha256: str | None = None

    @property
    def ok(self) -> bool:
        """True only when nothing failed and every input was readable."""
        return not self.reasons and not self.error

    @property
    def status(self) -> str:
        """PASS, FAIL or ERROR."""
        return "ERROR" if self.error else ("PASS" if not self.reasons else "FAIL")

    @property
    def exit_code(self) -> int:
        """0 PASS, 1 FAIL, 2 unreadable input."""
        return {"PASS": 0, "FAIL": 1, "ERROR": 2}[self.status]

    def fail(self, code: str, message: str) -> None:
        """Record a failed check."""
        self.reasons.append(Reason(code, message))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for --json)."""
        return {
            "status": self.status, "ok": self.ok, "origin": self.origin,
            "scenario_id": self.scenario_id, "key_id": self.key_id, "score": self.score,
            "passed": self.passed, "total": self.total, "learner": self.learner,
            "lab": self.lab, "track": self.track, "template_sha256": self.template_sha256,
            "checked": self.checked,
            "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
            "notes": self.notes,
        }


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


def _bundle(bundle: bytes, limits: ReadLimits | None, res: VerifyResult
            ) -> tuple[dict[str, bytes], dict[str, Any]]:
    try:
        members = read_bundle(bundle, limits)
        manifest = parse_manifest(members)
    except BundleError as exc:
        res.fail("bundle_invalid", f"bundle: {exc}")
        return {}, {}
    listed: dict[str, dict[str, Any]] = {}
    for m in manifest["members"]:
        if m["name"] in listed or m["name"] == MANIFEST:
            res.fail("manifest_invalid", f"manifest: {m['name']!r} listed twice or self-listed")
        listed[m["name"]] = m
    bad = len(res.reasons)
    for name in sorted(set(listed) - set(members)):
        res.fail("member_missing", f"bundle: {name} is in the manifest but not in the bundle")
    for name in sorted(set(members) - set(listed) - {MANIFEST}):
        res.fail("member_extra", f"bundle: {name} is in the bundle but not in the manifest")
    for name in sorted(set(listed) & set(members)):
        data, m = members[name], listed[name]
        if len(data) != m["size"] or not same_text(sha256_hex(data), m["sha256"]):
            res.fail("member_digest_mismatch", f"bundle: {name} does not match its manifest "
                                               "digest/size")
    if len(res.reasons) == bad:
        res.checked.append(f"all {len(listed)} bundle members match the manifest")
    return members, manifest


def _recordings(members: dict[str, bytes], manifest: dict[str, Any], res: VerifyResult) -> None:
    """Terminal recordings the manifest lists must be asciicast v2 (it covered their bytes);
    a member it does not list is already `member_extra` and is not parsed at all."""
    listed = {m["name"] for m in _list(manifest.get("members"))}
    names = sorted(n for n in members if n.startswith(MEMBER_PREFIX) and n in listed)
    problems = [p for n in names if (p := recording_problem(n, members[n])) is not None]
    for problem in problems:
        res.fail("recording_invalid", f"bundle: {problem}")
    if names and not problems:
        res.checked.append(f"{len(names)} terminal recording(s) are well-formed asciicast v2")


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


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


def _evidence(doc: dict[str, Any], members: dict[str, bytes], res: VerifyResult) -> None:
    template = members.get(TEMPLATE_MEMBER)
    tdoc = doc.get("template")
    # bundled_sha256: the template as bundled, hints' text withheld (else it is the same)
    want = tdoc.get("bundled_sha256", tdoc.get("sha256")) if isinstance(tdoc, dict) else None
    if template is None:
        res.fail("member_missing", f"bundle: {TEMPLATE_MEMBER} is missing")
    elif not isinstance(want, str) or not same_text(sha256_hex(template), want):
        res.fail("template_mismatch", "bundle template.yaml does not match score.json's "
                                      "template sha256")
    for crit in _list(doc.get("criteria")):
        if not isinstance(crit, dict):
            continue
        for ref in _list(crit.get("evidence")):
            if not isinstance(ref, str) or ref not in members:
                res.fail("member_missing", f"bundle: evidence {ref!r} of criterion "
                                           f"{crit.get('id')!r} is missing")
        for check in _list(crit.get("checks")):
            for stream in ("stdout", "stderr"):
                meta = check.get(stream) if isinstance(check, dict) else None
                if not isinstance(meta, dict) or meta.get("truncated") is not False:
                    continue
                kept = members.get(str(meta.get("evidence")))
                if kept is not None and sha256_hex(kept) != meta.get("sha256"):
                    res.fail("output_mismatch", f"bundle: {meta.get('evidence')!r} does not "
                                                "match the output hash in score.json")


def _rejudge(doc: dict[str, Any], members: dict[str, bytes], res: VerifyResult) -> None:
    """Judge every check again from criteria.json and its bundled outputs.

    Only for signed content of proven origin: the patterns in criteria.json are run, and
    Python's regular expressions have no time bound, so a pattern from anyone else (with an
    output made for it) could stop the verifier for ever. Otherwise only the hints are
    compared with aids.json (no pattern runs) and a note says why the checks were not."""
    if res.origin != "proven":
        for problem in aids_problems(doc, members):
            res.fail("criterion_inconsistent", problem)
        res.notes.append(NOT_JUDGED_ORIGIN)
        return
    problems = rejudge_bundle(doc, members)
    if problems is None:
        res.notes.append(NOT_REJUDGED)
        return
    for problem in problems:
        res.fail("criterion_inconsistent", problem)
    if not problems:
        res.checked.append("every check judged again from criteria.json agrees with score.json")


def _audit(doc: dict[str, Any], members: dict[str, bytes], scenario_id: str,
           key: Ed25519PublicKey | None, kid: str | None, res: VerifyResult) -> None:
    log = members.get(AUDIT_MEMBER)
    if log is None:
        res.fail("member_missing", f"bundle: {AUDIT_MEMBER} is missing")
        return
    keys = {kid: key} if key is not None and kid is not None else None
    report = verify_chain(log, stream=scenario_stream(scenario_id), public_keys=keys,
                          unknown_key_is_error=False)
    for reason in report.reasons:
        res.fail("audit_chain_broken", f"audit log: {reason}")
    res.notes.extend(f"audit log: {n}" for n in report.notes)
    raw_sealed = doc.get("audit")
    sealed: dict[str, Any] = raw_sealed if isinstance(raw_sealed, dict) else {}
    entries, head = sealed.get("entries"), sealed.get("head")
    if not isinstance(entries, int) or not isinstance(head, str):
        res.fail("score_invalid", "score.json: audit entries/head missing")
    elif report.reasons and report.entries < log.count(b"\n"):
        pass  # the chain broke at a line (audit_chain_broken names it): not cut short
    elif report.entries < entries:
        res.fail("audit_truncated", f"audit log: truncated, {report.entries} entries where "
                                    f"score.json seals {entries}")
    elif report.entries != entries or not same_text(report.head, head):
        res.fail("audit_mismatch", "audit log: head differs from the one sealed in score.json")
    elif report.ok:
        res.checked.append(f"audit chain intact ({entries} entries, head sealed in score.json)")


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
    members, manifest = _bundle(bundle, limits, res)
    _recordings(members, manifest, res)
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
        _evidence(doc, members, res)
        if signed:
            _rejudge(doc, members, res)
        else:
            res.notes.append(NOT_JUDGED_UNSIGNED)
        _audit(doc, members, sid, key, res.key_id, res)
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
