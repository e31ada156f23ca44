#!/usr/bin/env python3
"""Save the README screenshots: each page (signin, plans, tracks, lab, result, an error page,
/ops) at 1280 and 390 px wide, and the lab, result and operator pages, into docs/images/, by
running the mouse-driven learner journey with FORGE_DOCS_IMAGES set (that test drives a real
platform in Chromium; needs root, like `make test`). Not part of `make test`.
Usage: .venv/bin/python scripts/screenshots.py"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/web/test_browser.py::test_the_learners_journey_with_the_mouse"


def main() -> int:
    """Run the test with FORGE_DOCS_IMAGES=docs/images; its exit code is ours."""
    images = ROOT / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FORGE_DOCS_IMAGES": str(images)}
    pytest = [sys.executable, "-m", "pytest", TEST, "-q", "-x"]
    return subprocess.run(pytest, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
