"""Terminal recordings in an evidence bundle: their names and their asciicast v2 shape.

A recording is a member `recordings/<host>.<sequence>.cast`: an asciicast v2 file (a JSON
header line with `version` 2, `width`, `height`; then `[seconds, kind, text]` event lines,
kind "o" output, "i" input, "r" resize, "m" marker). The manifest's sha256 covers each one
like every other member, so the signed verdict covers what was typed and shown. Recordings
are evidence only: no criterion is judged from them.
"""

from __future__ import annotations

import re

from forge_verify.canonical import CanonicalJSONError, loads

MEMBER_PREFIX = "recordings/"
RECORDING_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}\.\d{1,4}\.cast$"
"""`<host>.<sequence>.cast`: a recording's file name (the member's name after the prefix)."""
RECORDING_NAME_RE = re.compile(RECORDING_NAME_PATTERN)
EVENT_KINDS = frozenset({"o", "i", "r", "m"})
CAST_MEDIA_TYPE = "application/x-asciicast"  # how a recording is served for download


def recording_problem(name: str, data: bytes) -> str | None:
    """Why a bundle member under `recordings/` is not a well-formed recording, or None.

    Lines are read with the strict parser (forge_verify.canonical): NaN, overflowing numbers
    and deep nesting are reasons here, not exceptions."""
    base = name[len(MEMBER_PREFIX):] if name.startswith(MEMBER_PREFIX) else ""
    if not RECORDING_NAME_RE.fullmatch(base):
        return f"{name}: not a recording name (<host>.<n>.cast)"
    try:
        # Lines end at "\n" only: JSON leaves U+2028, U+2029 and U+0085 raw in a string,
        # which str.splitlines() would also break a line at (terminal output has them).
        text = data.decode("utf-8")
        lines = (text[:-1] if text.endswith("\n") else text).split("\n") if text else []
        header = loads(lines[0]) if lines else None
        if not isinstance(header, dict) or header.get("version") != 2 or not all(
                isinstance(header.get(k), int) and not isinstance(header.get(k), bool)
                for k in ("width", "height")):
            return f"{name}: the first line is not an asciicast v2 header"
        for number, line in enumerate(lines[1:], start=2):
            event = loads(line)
            if (not isinstance(event, list) or len(event) != 3
                    or not isinstance(event[0], int | float) or isinstance(event[0], bool)
                    or event[1] not in EVENT_KINDS or not isinstance(event[2], str)):
                return f"{name}: line {number} is not an asciicast v2 event"
    except (UnicodeDecodeError, CanonicalJSONError):
        return f"{name}: not asciicast v2 JSON lines"
    return None


__all__ = ["EVENT_KINDS", "MEMBER_PREFIX", "RECORDING_NAME_PATTERN", "RECORDING_NAME_RE",
           "recording_problem"]
