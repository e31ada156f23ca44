#!/usr/bin/env python3
"""Verify a FrostGate Forge verdict offline (the operator runbook's command).

    python scripts/verify_verdict.py score.json <evidence_bundle> verdict.sig verdict.pub \
        [--trusted-key PATH] [--json]

Needs only Python 3.11+, `cryptography` and `zstandard`: no Forge services, configuration
or environment. Exit code 0 PASS, 1 FAIL (every reason printed), 2 usage or unreadable input.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from forge.evidence.verify_cmd import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
