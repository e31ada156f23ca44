"""A roster CSV: one learner per line (`subject`, optional header), checked whole before
anything is enrolled so a bad line costs nothing."""

from __future__ import annotations

import csv
import io
import re

from forge.errors import ForgeError

MAX_BYTES = 256 * 1024
MAX_ROWS = 2000
# The subject format of forge.identity.names (an account id, an e-mail, an IdP `sub`).
SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}\Z")
HEADERS = ("subject", "email", "learner")


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
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        while cells and cells[-1] == "":
            cells.pop()
        if not cells:
            continue
        if len(cells) > 1:
            raise _bad(number, "expected one column (the learner's account id)")
        value = cells[0]
        if number == 1 and value.lower() in HEADERS:
            continue
        if not SUBJECT_RE.match(value):
            raise _bad(number, "not an account id (letters, digits and . _ @ : -, at most "
                               "128 characters)")
        subjects.append(value)
        if len(subjects) > MAX_ROWS:
            raise _bad(number, f"more than {MAX_ROWS} learners in one file")
    if not subjects:
        raise _bad(1, "no learner in the file")
    return list(dict.fromkeys(subjects))
