"""`python -m forge_verify`: the same command as `forge-verify`."""

from __future__ import annotations

import sys

from forge_verify import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m forge_verify"))
