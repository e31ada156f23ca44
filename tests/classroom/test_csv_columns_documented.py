"""The grade export's header as docs/classrooms.md gives it is the one the export writes.

Probe DF: the documented header stopped at `late`, while the export has carried a
`due_at` column since per-learner extensions (the same page says so elsewhere): a
spreadsheet or script an instructor built from the docs read one column too few.
"""

from __future__ import annotations

import re
from pathlib import Path

from forge.classroom.dashboard_csv import COLUMNS

DOC = Path(__file__).resolve().parents[2] / "docs" / "classrooms.md"


def test_the_documented_csv_header_is_the_exports() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"\*\*CSV export\.\*\*.*?```\n(.*?)\n```", text, re.S)
    assert block is not None
    assert block.group(1).strip() == ",".join(COLUMNS)
