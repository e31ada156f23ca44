"""Command-line front end of the verifier (argparse, standard library only).

The one `main` behind `forge-verify`, `python -m forge_verify`, `forge verify` and the
runbook's scripts/verify_verdict.py, so all print the same report and use the same exit
codes: 0 PASS, 1 FAIL (each reason printed), 2 usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from forge_verify._internal.checks import expect, verify_paths
from forge_verify._internal.report import printable, render_text
from forge_verify._internal.verify_result import VerifyResult


def _key_path(value: str) -> Path:
    """A --trusted-key value: an empty one is refused, not read as the current folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "empty path: give the PEM file or folder of the platform's public keys")
    return Path(value)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Positional files as in the runbook, plus --trusted-key, --expect-learner,
    --expect-lab and --json.

    `prog` names the command in usage messages; by default the program that was run.
    """
    p = argparse.ArgumentParser(
        prog=prog,
        description="Verify a FrostGate Forge verdict offline: score.json, the evidence "
                    "bundle, verdict.sig (DSSE) and verdict.pub.")
    p.add_argument("score", type=Path, help="score.json")
    p.add_argument("bundle", type=Path, help="evidence bundle (.tar.zst or .tar.gz)")
    p.add_argument("sig", type=Path, help="verdict.sig (DSSE envelope)")
    p.add_argument("pub", type=Path, help="verdict.pub (PEM public key)")
    p.add_argument("--trusted-key", type=_key_path, default=None, metavar="PATH",
                   help="PEM file or directory of PEM public keys that may sign verdicts")
    p.add_argument("--expect-learner", default=None, metavar="TENANT/SUBJECT",
                   help="fail unless the verdict is this learner's (a genuine verdict of "
                        "someone else verifies too)")
    p.add_argument("--expect-lab", default=None, metavar="TEMPLATE",
                   help="fail unless the verdict is on this lab (its template name)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def render(result: VerifyResult) -> str:
    """The text report; unreadable input (exit 2) is one line: `ERROR <file>: <why>`."""
    if result.error:
        return printable("ERROR " + "; ".join(r.message for r in result.reasons))
    return render_text(result)


def _utc_time(value: str) -> datetime:
    """An ISO 8601 time with a zone (`Z` or an offset), for --at."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--at: {value!r} is not an ISO time such as 2026-01-02T03:04:05Z") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("--at: give a time zone (Z or +HH:MM)")
    return moment.astimezone(UTC)


def credential_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """`forge-verify credential FILE --trusted-key KEYS [--verdict] [--status-list] [--at]
    [--expect-learner]`."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Verify an Open Badges 3.0 credential (credential.vc) issued by "
                    "FrostGate Forge, offline.")
    p.add_argument("credential", type=Path, help="credential.vc")
    p.add_argument("--trusted-key", type=_key_path, required=True, metavar="PATH",
                   help="PEM file or directory of the issuer's public keys, obtained from "
                        "the platform (its /v1/credentials/keys or `forge keys "
                        "export-public`), never from the person presenting the credential")
    p.add_argument("--verdict", type=Path, default=None, metavar="verdict.sig",
                   help="the verdict the credential was issued from: its digest is compared")
    p.add_argument("--status-list", type=Path, default=None, metavar="FILE",
                   help="the issuer's published status list: revocation is checked")
    p.add_argument("--at", type=_utc_time, default=None, metavar="ISO-TIME",
                   help="check the status list's validity at this time (e.g. "
                        "2026-01-02T03:04:05Z; default now)")
    p.add_argument("--expect-learner", default=None, metavar="TENANT/SUBJECT",
                   help="fail unless the credential was issued to this learner (it names "
                        "them by a salted hash): a genuine credential of someone else "
                        "verifies otherwise")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _emit(text: str) -> None:
    """Print the report. A reader that stopped reading (`… | head`) changes nothing: the
    exit code is still the verdict's (1 would read as FAIL), and no traceback is printed."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)  # the interpreter's last flush goes here
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def credential_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The `credential` subcommand: verify, print, return 0 PASS / 1 FAIL / 2 unreadable."""
    from forge_verify._internal.credential_checks import (
        render_credential,
        verify_credential_paths,
    )

    args = credential_parser(prog).parse_args(argv)
    result = verify_credential_paths(args.credential, trusted_key=args.trusted_key,
                                     verdict=args.verdict, status_list=args.status_list,
                                     at=args.at, learner=args.expect_learner)
    if args.json:
        _emit(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        _emit(render_credential(result))
    return result.exit_code


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse arguments, verify, print, and return the exit code (`credential …` first
    argument: verify a credential instead of a verdict)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["credential"]:
        return credential_main(args_in[1:], prog=prog if prog and " " in prog
                               else f"{prog or 'forge-verify'} credential")
    args = build_parser(prog).parse_args(args_in)
    result = verify_paths(args.score, args.bundle, args.sig, args.pub,
                          trusted_key=args.trusted_key)
    if not result.error:
        expect(result, learner=args.expect_learner, lab=args.expect_lab)
    if args.json:
        _emit(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        _emit(render(result))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
