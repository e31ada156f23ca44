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
# Header names of the learners' column, as spreadsheets and LMS exports spell them (case,
# spaces, dashes and underscores aside), most telling first: with several in one header the
# earliest wins ("Username,Email" is read by Email); two of one rank are ambiguous.
HEADER_RANKS = ({"subject", "learner"}, {"email", "emailaddress", "mail"},
                {"username", "user", "userid", "login", "account", "accountid"},
                {"id", "student", "studentid"})
SHOWN = 40  # characters of a bad cell quoted in the answer
HIDDEN = ("Zl", "Zp")  # line and paragraph separators; every C* category is hidden too


class _BadLine(Exception):
    """One line of the file that cannot be read as a learner."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def header_rank(cell: str) -> int | None:
    """The rank in HEADER_RANKS of a header cell naming the learners' column, if it does."""
    key = "".join(ch for ch in cell.lower() if ch.isalnum())
    return next((rank for rank, names in enumerate(HEADER_RANKS) if key in names), None)


def _header(cells: list[str]) -> tuple[int, int] | None:
    """(the column of the learners, how many columns) when ``cells`` (the first line) is a
    header naming it (`HEADER_RANKS`, the best rank once): an LMS or spreadsheet export
    with a name column beside it is then read by that column alone."""
    ranked = [(rank, i) for i, c in enumerate(cells) if (rank := header_rank(c)) is not None]
    best = min((rank for rank, _ in ranked), default=None)
    named = [i for rank, i in ranked if rank == best]
    width = len(cells)
    while width and not cells[width - 1].strip():
        width -= 1
    return (named[0], width) if len(named) == 1 else None


def _take(number: int, row: list[str], header: tuple[int, int] | None,
          subjects: list[tuple[int, str]]) -> None:
    """Add line `number`'s learner to `subjects` (a blank line or the header adds none):
    the one cell of the line, or the cell of the header's column. A line of more filled
    cells than the header has columns (an unquoted comma in a name shifts the learner's
    cell) or with the learner's cell empty beside others is bad, never guessed at."""
    cells = [c.strip() for c in row]
    if header is not None:
        column, width = header
        filled = [i for i, c in enumerate(cells) if c]
        if not filled:
            return
        if filled[-1] >= width:
            raise _BadLine(number, f"more cells than the header's {width} column"
                                   f"{'s' if width != 1 else ''}, in "
                                   f"{_shown(','.join(cells))} (quote a cell with a comma)")
        if column >= len(cells) or not cells[column]:
            raise _BadLine(number, f"no account id in column {column + 1}, the header's "
                                   "learner column")
        cells = [cells[column]]
    while cells and cells[-1] == "":
        cells.pop()
    if not cells:
        return
    if len(cells) > 1:
        raise _BadLine(number, "expected one column (the learner's account id), got "
                               f"{_shown(','.join(cells))}")
    value = cells[0]
    if number == 1 and header_rank(value) is not None:
        return  # a one-column file's header (`Username`, `E-mail`…), not a learner
    if not SUBJECT_RE.match(value):
        raise _BadLine(number, f"{_shown(value)} is not an account id (letters, digits and "
                               ". _ @ : -, at most 128 characters)")
    subjects.append((number, value))


def _delimiter(text: str) -> str:
    """`,`, or `;` or a tab when the first line holds that and no comma (a spreadsheet
    export in a locale whose decimal mark is the comma)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if "," not in first:
        for other in (";", "\t"):
            if other in first:
                return other
    return ","


def _hidden(category: str) -> bool:
    return category[0] == "C" or category in HIDDEN


def _shown(text: str) -> str:
    """The bad cell as the answer quotes it, so a teacher with 200 lines sees which: at
    most SHOWN characters; control, format (bidi overrides, zero-width), unassigned and
    line or paragraph separator characters as `?`, so the quote cannot reorder, split or
    hide the message around it."""
    kept = "".join("?" if _hidden(unicodedata.category(ch)) else ch for ch in text[:SHOWN])
    return f'"{kept}…"' if len(text) > SHOWN else f'"{kept}"'


MAX_LINES_SHOWN = 20  # bad lines named in one answer (the first in its message)


def _bad(line: int, problem: str) -> ForgeError:
    return _all_bad([_BadLine(line, problem)], 1)


def _all_bad(bad: list[_BadLine], count: int) -> ForgeError:
    """The answer naming the first of `count` bad lines, and up to MAX_LINES_SHOWN of them
    in its details: ten typos are fixed in one go, not in ten uploads (review CD)."""
    first = bad[0]
    more = ""
    if count > 1:
        lines = ", ".join(str(b.line) for b in bad[1:])
        more = f"; {count - 1} more bad line{'s' if count > 2 else ''} ({lines}" + (
            ", …)" if count > len(bad) else ")")
    return ForgeError("csv_invalid", 422,
                      f"csv: line {first.line}: {first.problem}{more}; nobody was enrolled",
                      [{"field": "file", "line": b.line, "problem": b.problem} for b in bad])


def parse_roster(data: bytes) -> list[str]:
    """The subjects of a roster file, in order, without duplicates. 413 above MAX_BYTES;
    422 `csv_invalid` naming every bad line, up to MAX_LINES_SHOWN (not UTF-8, more than
    one column without a header naming the learners', a subject that is not an account
    id, more than MAX_ROWS learners, or no learner at all). Commas, semicolons or tabs
    separate the columns (the first line decides)."""
    if len(data) > MAX_BYTES:
        raise ForgeError("csv_too_large", 413,
                         f"csv: the file is larger than {MAX_BYTES // 1024} KiB",
                         [{"field": "file", "limit_bytes": MAX_BYTES}])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # The line of the first byte that is not UTF-8 (it said line 1 wherever it was: an
        # instructor looked for an accent on the header line of a 500-line export).
        line = data.count(b"\n", 0, exc.start) + 1
        raise _bad(line, f"not UTF-8 text (byte {exc.start}); save the file as "
                         "UTF-8") from None
    subjects: list[tuple[int, str]] = []  # (line, subject)
    bad: list[_BadLine] = []  # the first MAX_LINES_SHOWN of `count` bad lines
    count = 0

    def note(line: _BadLine) -> None:
        nonlocal count
        count += 1
        if len(bad) < MAX_LINES_SHOWN:
            bad.append(line)

    header: tuple[int, int] | None = None
    # newline="": the csv module then reads CR, LF and CRLF line ends alike (an old Mac
    # export ends lines with CR alone).
    # strict: an unclosed quote is an error, not a learner named after the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text),
                        strict=True)
    try:
        for row in reader:
            if reader.line_num == 1 and len(row) > 1:
                header = _header(row)
            try:
                _take(reader.line_num, row, header, subjects)
            except _BadLine as line:
                note(line)
            if len(subjects) > MAX_ROWS:
                raise _bad(reader.line_num, f"more than {MAX_ROWS} learners in one file")
    except csv.Error:  # an unclosed quote, a NUL, a field over the module's size limit
        note(_BadLine(reader.line_num, "not a CSV line (an unclosed quote, a NUL character "
                               "or a field far longer than an account id)"))
    first_of: dict[str, tuple[int, str]] = {}
    for number, subject in subjects:
        seen = first_of.setdefault(subject.casefold(), (number, subject))
        if seen[1] != subject:
            note(_BadLine(number, f"{_shown(subject)} is line {seen[0]}'s {_shown(seen[1])} "
                                  "in other letter case: account ids are case-sensitive, "
                                  "keep the one spelled like the learner's account"))
    if bad:
        raise _all_bad(sorted(bad, key=lambda b: b.line), count)
    if not subjects:
        raise _bad(1, "no learner in the file")
    return list(dict.fromkeys(subject for _, subject in subjects))
