"""A copy of the shipped policies with one rule changed, for tests of what a different
bundle decides (an operator's FORGE_POLICY_DIR, a stricter rewrite)."""

from __future__ import annotations

import shutil
from pathlib import Path

from forge.content import content_path


def patched_policies(tmp_path: Path, file: str, anchor: str, added: str) -> Path:
    """The shipped policies copied under ``tmp_path/policies``, with ``added`` inserted
    after the first ``anchor`` line of ``file`` (which must hold it); returns the copy."""
    policies = tmp_path / "policies"
    shutil.copytree(content_path("policies"), policies)
    rules = policies / file
    text = rules.read_text()
    assert anchor in text, f"{file} no longer has {anchor!r}"
    rules.write_text(text.replace(anchor, anchor + added, 1))
    return policies
