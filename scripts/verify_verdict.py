#!/usr/bin/env python3
"""Verify a FrostGate Forge verdict offline (the operator runbook's command).

    python scripts/verify_verdict.py score.json <evidence_bundle> verdict.sig verdict.pub \
        [--trusted-key PATH] [--json]

Runs `forge_verify.main`, the same code as `forge-verify` and `forge verify`: the installed
`forge_verify` when there is one, else the copy in this checkout (verifier/src). Needs only
Python 3.11+, `cryptography` and `zstandard`: no Forge services, configuration or
environment. Exit code 0 PASS, 1 FAIL (every reason printed), 2 usage or unreadable input.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from forge_verify import main
except ModuleNotFoundError as exc:
    if exc.name != "forge_verify":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verifier" / "src"))
    from forge_verify import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
