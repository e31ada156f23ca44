"""Golden artifacts: the same inputs, key and times reproduce the committed files exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge_verify import verify_paths

from .sample import GOLDEN_DIR, build

NAMES = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_reproduces_byte_for_byte(tmp_path: Path, name: str) -> None:
    rebuilt = build(tmp_path).files()[name]
    assert rebuilt == (GOLDEN_DIR / name).read_bytes(), (
        f"{name} changed; if the format changed on purpose run `python -m tests.evidence.sample`"
    )


def test_rebuilding_twice_is_identical(tmp_path: Path) -> None:
    assert build(tmp_path / "a").files() == build(tmp_path / "b").files()


def test_committed_golden_set_verifies() -> None:
    res = verify_paths(*(GOLDEN_DIR / n for n in NAMES))
    assert res.ok, res.reasons
    assert (res.score, res.passed, res.total) == (0.75, 2, 3)
