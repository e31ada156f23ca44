"""Resolving one image reads only its own definition, and again only once it changed."""

from __future__ import annotations

import os
from pathlib import Path

from forge.images.lookup import load_named


def test_one_definition_is_read_and_reread_when_edited(tmp_path: Path) -> None:
    path = tmp_path / "tool.yaml"
    path.write_text("name: tool\npackages: [bash]\n")
    first = load_named("tool", tmp_path)
    assert first is not None and first.packages == ("bash",)
    assert load_named("tool", tmp_path) is first  # unchanged: not parsed again
    path.write_text("name: tool\npackages: [bash, curl]\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    edited = load_named("tool", tmp_path)
    assert edited is not None and edited.packages == ("bash", "curl")
    assert load_named("absent", tmp_path) is None
