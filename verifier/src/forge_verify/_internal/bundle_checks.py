"""Checks over a verdict's evidence bundle: its members against the manifest, terminal
recordings, the evidence score.json names, the checks judged again, and the audit chain
sealed in score.json. Each records what failed, and what held, in a VerifyResult.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forge_verify._internal.verify_result import VerifyResult
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
from forge_verify.keys import same_text
from forge_verify.recordings import MEMBER_PREFIX, recording_problem
from forge_verify.rejudge import NOT_REJUDGED, rejudge_bundle

AUDIT_MEMBER = "audit/scenario.jsonl"
TEMPLATE_MEMBER = "template.yaml"
NOT_JUDGED_ORIGIN = ("checks were not judged again: their origin is not proven, so anyone "
                     "could have written criteria.json and a pattern in it could run for ever; "
                     "a trusted key (--trusted-key) proves origin and has them judged again")


def check_bundle(bundle: bytes, limits: ReadLimits | None, res: VerifyResult
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


def check_recordings(members: dict[str, bytes], manifest: dict[str, Any],
                     res: VerifyResult) -> None:
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


def check_evidence(doc: dict[str, Any], members: dict[str, bytes], res: VerifyResult) -> None:
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


def rejudge_checks(doc: dict[str, Any], members: dict[str, bytes], res: VerifyResult) -> None:
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


def check_audit(doc: dict[str, Any], members: dict[str, bytes], scenario_id: str,
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
