#!/usr/bin/env python3
"""Verify a FrostGate Forge verdict offline (the operator runbook's command).

    python scripts/verify_verdict.py score.json <evidence_bundle> verdict.sig verdict.pub \
        [--trusted-key PATH] [--json]

Runs `forge_verify.main`, the same code as `forge-verify` and `forge verify`: the installed
`forge_verify` when there is one, else the copy in this checkout (verifier/src). Needs only
Python 3.11+, `cryptography` and `zstandard`: no Forge services, configuration or
environment. An interpreter without those two runs the script again with this checkout's
`.venv/bin/python` (`make venv`) when there is one, else says what to install. Exit code 0
PASS, 1 FAIL (every reason printed), 2 usage, unreadable input or missing packages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
NEEDED = ("cryptography", "zstandard")
_REEXEC_FLAG = "FORGE_VERIFY_SCRIPT_REEXEC"  # set on the re-run: never loop


def _rerun_or_explain(problem: str, remedy: str) -> None:
    """Run again with the checkout's venv, or say what is wrong and how to mend it (exit 2:
    never the exit 1 of a FAIL)."""
    venv_python = CHECKOUT / ".venv" / "bin" / "python"
    in_venv = Path(sys.prefix).resolve() == (CHECKOUT / ".venv").resolve()
    if venv_python.is_file() and not in_venv and not os.environ.get(_REEXEC_FLAG):
        os.environ[_REEXEC_FLAG] = "1"
        script = str(Path(__file__).resolve())
        os.execv(venv_python, [str(venv_python), script, *sys.argv[1:]])  # noqa: S606
    print(f"ERROR this Python ({sys.executable}) {problem}. {remedy}", file=sys.stderr)
    sys.exit(2)


if sys.version_info < (3, 11):  # noqa: UP036 (run by any python3 on PATH, not only ours)
    _rerun_or_explain(
        f"is {sys.version.split()[0]}: the verifier needs Python 3.11 or later",
        "Run `make venv` in the checkout (the script then uses its .venv by itself), or run "
        "the script with a python3.11 (or later) that has cryptography and zstandard.")

try:
    try:
        from forge_verify import main
    except ModuleNotFoundError as exc:
        if exc.name != "forge_verify":
            raise
        sys.path.insert(0, str(CHECKOUT / "verifier" / "src"))
        from forge_verify import main
except ModuleNotFoundError as exc:
    if (exc.name or "").split(".")[0] == "forge_verify":  # a copy of the script alone
        print(f"ERROR the verifier (forge_verify) is neither installed nor next to this "
              f"script ({CHECKOUT / 'verifier' / 'src'} does not exist): run the script "
              "from a Forge checkout, or `pip install` the checkout's verifier/ (the "
              "frostgate-forge-verify package) and use `forge-verify`.", file=sys.stderr)
        sys.exit(2)
    if (exc.name or "").split(".")[0] not in NEEDED:
        raise
    _rerun_or_explain(
        f"lacks the package {exc.name!r}: the verifier needs {' and '.join(NEEDED)}",
        "Run `make venv` in the checkout (the script then uses its .venv by itself), or "
        "install them: on Debian `apt install python3-cryptography python3-zstandard`, in a "
        f"virtualenv `pip install {' '.join(NEEDED)}`.")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
