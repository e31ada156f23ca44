"""Attack: a learner prints U+2028, U+2029 or U+0085 in a lab terminal, and their genuine,
platform-signed verdict no longer verifies offline.

The recorder writes each event as JSON with the characters as they are (JSON escapes only
those below U+0020), one event per "\\n"-ended line. The verifier cut the recording with
`str.splitlines()`, which also breaks a line at U+2028, U+2029, U+0085 (and \\x1c-\\x1e,
which JSON does escape), so one event became two halves that are not JSON: `forge verify`
said FAIL [recording_invalid] on a verdict nobody had touched, and the scoreboard refused
the learner's credential (`verdict_not_verified`). Reproduced on a netplus lab with
`printf 'a\\xe2\\x80\\xa8b\\xc2\\x85c\\n'` typed in the terminal. Now lines end at "\\n" only.

A real lab shell (the local runtime), the real recorder and the real verifier.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from forge.runtime.recording import read_recordings, recorded_tty
from forge_verify.recordings import recording_problem

from ..runtime.helpers import simple_lab
from ..support.one_lab import one_lab
from .verdict_sets import codes, sample, signed, verify

pytestmark = pytest.mark.root
SHOWN = "a\u2028b\u0085c\u2029d-done".encode()


def _record(tmp_path: Path) -> bytes:
    """The recording of a real lab shell that printed SHOWN."""
    sid = "scn-" + secrets.token_hex(8)
    storage = tmp_path / "storage"
    with one_lab(tmp_path / "rt", simple_lab(sid)) as runtime:
        session = recorded_tty(runtime, storage)(sid, "box", 24, 80)

        async def use() -> None:
            # Typed as octal escapes: only the shell's output holds the raw characters.
            await session.write(b"printf 'a\\342\\200\\250b\\302\\205c\\342\\200\\251d-%s\\n'"
                                b" done\r")
            seen = b""
            while SHOWN not in seen:
                chunk = await asyncio.wait_for(session.read(), 60)
                assert chunk, f"the shell ended before printing: {seen[-300:]!r}"
                seen += chunk

        try:
            asyncio.run(use())
        finally:
            session.close()
    return read_recordings(storage, sid)["box.1.cast"]


def test_a_genuine_verdict_whose_terminal_printed_line_separators_verifies(
        tmp_path: Path) -> None:
    cast = _record(tmp_path)
    assert "\u2028" in cast.decode("utf-8")  # kept as it is, not escaped
    assert recording_problem("recordings/box.1.cast", cast) is None
    score_json, members = sample(tmp_path)
    members["recordings/box.1.cast"] = cast
    res = verify(signed(score_json, members))
    assert res.ok, codes(res)
    assert any("terminal recording(s) are well-formed" in c for c in res.checked)


def test_an_event_really_cut_in_two_is_still_refused(tmp_path: Path) -> None:
    """The "\\n" that ends a line still ends it: half an event is not an event."""
    cast = (b'{"version":2,"width":80,"height":24}\n'
            b'[0.1,"o","a\n"]\n')
    score_json, members = sample(tmp_path)
    members["recordings/box.1.cast"] = cast
    res = verify(signed(score_json, members))
    assert codes(res) == ["recording_invalid"]
