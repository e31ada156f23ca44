"""Attack: get a credential into the logs past the redactor's quick skip.

Every log line redacts each of its fields; the redactor now tests for the letters each
pattern starts with ("bearer" in any case, "fg", "eyJ") before running that pattern, so a
line without them costs no regex. A credential spelled so that the regex matches but the
quick test misses (a case-folded letter, a token after a secret was cut out) would then
reach the logs: the skip must never change what is redacted.
"""

from __future__ import annotations

import re
import sys

from forge.services.common.logging import (
    _BEARER_PATTERN,
    _CREDENTIAL_PATTERN,
    _JWS_PATTERN,
    Redactor,
)

SECRET = "s3cret-value-1234"


def _every_pattern(text: str) -> str:
    """The redactor's answer with every pattern always run (what it answered before)."""
    text = text.replace(SECRET, "[redacted]")
    text = _BEARER_PATTERN.sub(r"\1[redacted]", text)
    text = _CREDENTIAL_PATTERN.sub("[credential]", text)
    return _JWS_PATTERN.sub("[token]", text)


def test_no_other_character_folds_to_a_letter_of_bearer() -> None:
    """The quick test lowers the text: a character that IGNORECASE matches to one of
    b, e, a, r but that lower() does not map to it would slip past it."""
    one = re.compile(r"(?i)[bear]")
    folding = [chr(c) for c in range(sys.maxunicode + 1)
               if one.fullmatch(chr(c)) and chr(c).lower() not in "bear"]
    assert folding == []


def test_the_quick_skip_redacts_what_every_pattern_redacts() -> None:
    redact = Redactor([SECRET.encode()])
    jws = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJsZWFybmVyIn0.c2lnbmF0dXJlLWJ5dGVz"
    lines = [
        "", "GET /v1/scenarios/scn-0123456789abcdef 200", "2026-12-07T14:14:09.755Z",
        "spawn_service", "forge.access", "info",
        "Authorization: Bearer abc.def", "authorization: BEARER abc", "bEaReR\tx",
        "bearer", "bearer ", "Bearer\n" + jws,
        "GET /join/fgi_0123456789abcdefgh 303", "x-api-key fgk_AbCdEfGh12345678 used",
        "fg fgk_short fgi_", f"token {jws} in a sentence", "eyJ.eyJ.eyJ",
        f"{SECRET} then {jws}", f"fgk_{SECRET}0123456789", f"ey{SECRET}J" + jws[3:],
        f"bear{SECRET}er 12345", "redacted: Bearer [redacted]",
    ]
    for line in lines:
        assert redact(line) == _every_pattern(line), line
