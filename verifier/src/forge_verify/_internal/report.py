"""The verifier's text report: one head line a reader who looks no further can trust, then
what the learner achieved, every failed check, what was checked, and notes; text taken
from score.json escaped so it cannot add lines or reorder what the terminal shows."""

from __future__ import annotations

import unicodedata

from forge_verify._internal.verify_result import VerifyResult


def render_text(res: VerifyResult) -> str:
    """Human report: verdict line, reasons, what was checked, notes."""
    head = f"{res.status}"
    if res.scenario_id:
        head += f" {res.scenario_id} score={res.score} passed={res.passed}/{res.total}"
    if res.key_id:
        head += f" key={res.key_id}"
    if res.ok and res.origin == "not_checked":
        head += " (integrity only: origin not proven, no --trusted-key)"
    lines = [head]
    if res.ok and res.total:
        lines.append(f"  result {_lab_result(res.passed or 0, res.total)}")
    if res.learner or res.lab:
        lines.append(f"  for  {res.learner or '(no learner named)'} on lab "
                     f"{res.lab or '(none named)'}"
                     + (f" (track {res.track})" if res.track else ""))
    lines += [f"  FAIL [{r.code}] {r.message}" for r in res.reasons]
    lines += [f"  ok   {c}" for c in res.checked]
    lines += [f"  note {n}" for n in res.notes]
    return "\n".join(printable(line) for line in lines)


def _lab_result(passed: int, total: int) -> str:
    """What the learner achieved, in words: PASS above says only that the verdict is
    genuine, and a reader who took it for the lab's result read a 0/3 as passed."""
    if passed >= total:
        return f"every criterion met ({passed} of {total})"
    return (f"{passed} of {total} criteria met: the lab was not fully passed (PASS means "
            "this verdict is genuine, not that the learner passed)")


def printable(text: str) -> str:
    """`text` with control, format and line/paragraph separator characters escaped (a
    newline becomes \\u000a): names taken from score.json (tenant, subject, lab) must not
    add report lines or reorder what the terminal shows."""
    return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in _UNPRINTED else ch
                   for ch in text)


_UNPRINTED = frozenset({"Cc", "Cf", "Zl", "Zp"})
