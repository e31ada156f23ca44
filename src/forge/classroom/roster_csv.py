"""A roster CSV: one learner per line (`subject`, optional header), checked whole before
anything is enrolled so a bad line costs nothing."""

from __future__ import annotations

import csv
import io
import re
import unicodedata

from forge.errors import ForgeError

MAX_BYTES = 256 * 1024
MAX_ROWS = 2000
# The subject format of forge.identity.names (an account id, an e-mail, an IdP `sub`).
SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}\Z")
HEADERS = ("subject", "email", "learner")
SHOWN = 40  # characters of a bad cell quoted in the answer
HIDDEN = ("Zl", "Zp")  # line and paragraph separators; every C* category is hidden too


def _take(number: int, row: list[str], subjects: list[str]) -> None:
    """Add line `number`'s learner to `subjects` (a blank line or the header adds none)."""
    cells = [c.strip() for c in row]
    while cells and cells[-1] == "":
        cells.pop()
    if not cells:
        return
    if len(cells) > 1:
        raise _bad(number, "expected one column (the learner's account id), got "
                           f"{_shown(','.join(cells))}")
    value = cells[0]
    if number == 1 and value.lower() in HEADERS:
        return
    if not SUBJECT_RE.match(value):
        raise _bad(number, f"{_shown(value)} is not an account id (letters, digits and "
                           ". _ @ : -, at most 128 characters)")
    subjects.append(value)
    if len(subjects) > MAX_ROWS:
        raise _bad(number, f"more than {MAX_ROWS} learners in one file")


def _hidden(category: str) -> bool:
    return category[0] == "C" or category in HIDDEN


def _shown(text: str) -> str:
    """The bad cell as the answer quotes it, so a teacher with 200 lines sees which: at
    most SHOWN characters; control, format (bidi overrides, zero-width), unassigned and
    line or paragraph separator characters as `?`, so the quote cannot reorder, split or
    hide the message around it."""
    kept = "".join("?" if _hidden(unicodedata.category(ch)) else ch for ch in text[:SHOWN])
    return f'"{kept}…"' if len(text) > SHOWN else f'"{kept}"'


def _bad(line: int, problem: str) -> ForgeError:
    return ForgeError("csv_invalid", 422, f"csv: line {line}: {problem}; nobody was enrolled",
                      [{"field": "file", "line": line, "problem": problem}])


def parse_roster(data: bytes) -> list[str]:
    """The subjects of a roster file, in order, without duplicates. 413 above MAX_BYTES;
    422 `csv_invalid` naming the first bad line (not UTF-8, more than one column, a subject
    that is not an account id, more than MAX_ROWS learners, or no learner at all)."""
    if len(data) > MAX_BYTES:
        raise ForgeError("csv_too_large", 413,
                         f"csv: the file is larger than {MAX_BYTES // 1024} KiB",
                         [{"field": "file", "limit_bytes": MAX_BYTES}])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _bad(1, "the file is not UTF-8 text") from None
    subjects: list[str] = []
    # newline="": the csv module then reads CR, LF and CRLF line ends alike (an old Mac
    # export ends lines with CR alone).
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            _take(reader.line_num, row, subjects)
    except csv.Error:  # an unclosed quote, a NUL, a field over the module's size limit
        raise _bad(reader.line_num, "not a CSV line (an unclosed quote, a NUL character or "
                                    "a field far longer than an account id)") from None
    if not subjects:
        raise _bad(1, "no learner in the file")
    return list(dict.fromkeys(subjects))
