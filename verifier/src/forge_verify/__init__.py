"""Offline verification of FrostGate Forge verdicts: score.json, evidence bundle, DSSE verdict.

Needs only the standard library, `cryptography` and `zstandard`: no Forge installation,
configuration, services or network. The public entry points are here:

    from forge_verify import verify_paths
    result = verify_paths(score, bundle, sig, pub, trusted_key=None)
    result.ok, result.status, result.exit_code, result.reasons   # every failed check
    result.learner, result.lab          # whose verdict on which lab ("tenant/subject")
    expect(result, learner="acme/ann", lab="lab-netplus")   # fails a verdict of another

Credentials (Open Badges 3.0, issued from passing verdicts) are checked the same way:

    from forge_verify import verify_credential_paths
    result = verify_credential_paths(cred, trusted_key=keys, verdict=sig, status_list=lst,
                                     learner="acme/ann")   # fails a credential of another

or `forge-verify credential credential.vc --trusted-key KEYS [--verdict verdict.sig]
[--status-list status.jwt] [--expect-learner TENANT/SUBJECT]`; the formats are in the
public module `credential`.

The command line (`forge-verify`, `python -m forge_verify`, `forge verify` and the runbook's
`scripts/verify_verdict.py`) is `main`: exit 0 PASS, 1 FAIL (every reason printed), 2 usage
or unreadable input.

Public submodules, shared with the Forge platform that produces what this package checks
(so producer and verifier run one implementation): `canonical` (canonical JSON), `keys`
(key ids, public PEMs), `files` (bounded reads of outside files), `dsse` (envelopes),
`bundle` (the evidence bundle), `score` (score.json), `verdict` (the signed statement),
`judging` and `rules` (the judging rule and rendered criteria), `rejudge` (judging a bundle
again), `audit_chain` (the hash-chained audit log), `credential` (Open Badges credentials
and their status list). Anything under `_internal` is private.
"""

from __future__ import annotations

from forge_verify._internal.checks import (
    INPUT_CAPS,
    ORIGIN_NOT_PROVEN,
    expect,
    load_trusted_keys,
    verify_artifacts,
    verify_paths,
)
from forge_verify._internal.cli import main, render
from forge_verify._internal.credential_checks import verify_credential, verify_credential_paths
from forge_verify._internal.report import render_text
from forge_verify._internal.verify_result import InputError, Reason, VerifyResult

__version__ = "0.2.0"

__all__ = [
    "INPUT_CAPS",
    "ORIGIN_NOT_PROVEN",
    "InputError",
    "Reason",
    "VerifyResult",
    "__version__",
    "expect",
    "load_trusted_keys",
    "main",
    "render",
    "render_text",
    "verify_artifacts",
    "verify_credential",
    "verify_credential_paths",
    "verify_paths",
]
