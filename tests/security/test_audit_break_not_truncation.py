"""Attack: rewrite or remove a line in the middle of the bundled audit log (a verdict set
signed again, so every digest and signature holds and only the audit checks can fail it).

The verifier's reasons must be true. Before, a rewritten second line was reported twice:
"line 2: hash does not match its content (rewritten)" and "truncated, 1 entries where
score.json seals 6", though no line was missing: the chain check stops at the broken line,
and its count of intact entries was read as the length of the log. Now the break alone is
reported; a log whose end was cut is still `audit_truncated`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .verdict_sets import codes, sample, signed, verify

AUDIT = "audit/scenario.jsonl"


def _with_log(tmp_path: Path, edit: Callable[[list[bytes]], list[bytes]]) -> list[str]:
    score, members = sample(tmp_path)
    lines = members[AUDIT].splitlines(keepends=True)
    members[AUDIT] = b"".join(edit(lines))
    res = verify(signed(score, members))
    assert res.status == "FAIL"
    return [f"{r.code}: {r.message}" for r in res.reasons]


def test_a_rewritten_middle_line_is_a_broken_chain_not_a_truncation(tmp_path: Path) -> None:
    def rewrite(lines: list[bytes]) -> list[bytes]:
        return [lines[0], lines[1].replace(b'"policy":"allow"', b'"policy":"deny"'),
                *lines[2:]]

    assert _with_log(tmp_path, rewrite) == [
        "audit_chain_broken: audit log: line 2: hash does not match its content (rewritten)"]


def test_a_removed_middle_line_is_a_broken_chain_not_a_truncation(tmp_path: Path) -> None:
    reasons = _with_log(tmp_path, lambda lines: lines[:2] + lines[3:])
    assert [r.split(":")[0] for r in reasons] == ["audit_chain_broken"]
    assert "lines removed or reordered" in reasons[0]


def test_a_log_cut_at_its_end_is_still_truncated(tmp_path: Path) -> None:
    score, members = sample(tmp_path)
    lines = members[AUDIT].splitlines(keepends=True)
    members[AUDIT] = b"".join(lines[:-1])
    assert codes(verify(signed(score, members))) == ["audit_truncated"]
    members[AUDIT] = b"".join(lines[:-1]) + lines[-1][:20]  # cut inside the last line
    assert "audit_truncated" in codes(verify(signed(score, members)))
