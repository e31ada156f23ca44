"""The dashboard as CSV: one line per learner and assignment, the same figures as the page.

Cells are safe to open in a spreadsheet: any cell starting with = + - @ (or a tab or
carriage return) gets a leading apostrophe, so a cohort name or criterion can never become
a formula (CSV injection).

The download is written a page of learners at a time (`csv_chunks`): at the caps (2,000
learners, 200 assignments) the whole text is 40 MB and its rows as dicts several times
that, which the service once held at once for every export.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Any

from forge.classroom.dashboard import CohortLabs, labs_by_cell, learner_cell

COLUMNS = ("cohort", "assignment_id", "lab", "learner", "status", "attempts_used",
           "attempts_allowed", "score", "criteria_passed", "criteria_total", "time_spent_min",
           "hints_used", "failed_criteria", "started_at", "submitted_at", "finished_at", "late",
           "due_at")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"  # Excel reads a CSV without one in the machine's legacy code page
LEARNERS_PER_CHUNK = 200  # rows written per piece of the download (one assignment's)


def safe_cell(value: object) -> str:
    """The cell's text, with a leading apostrophe if a spreadsheet would read a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _minutes(seconds: object) -> str:
    return f"{seconds / 60:.1f}" if isinstance(seconds, int | float) else ""


def _line(writer: Any, name: str, a: Mapping[str, Any], r: Mapping[str, Any]) -> None:
    """One learner's row of one assignment (`a`: its id and lab; `r`: the learner's
    figures, with their own attempts allowed)."""
    writer.writerow([safe_cell(v) for v in (
        name, a["assignment_id"], a["template_id"], r["subject"],
        r["status"], r["attempts_used"], r["attempts_allowed"], r["score"],
        r["passed"], r["total"], _minutes(r["time_spent_s"]), r["hints_used"],
        ";".join(r["failed_criteria"]), r["started_at"], r["submitted_at"],
        r["finished_at"], {True: "yes", False: "no"}.get(r["late"], ""), r["due_at"])])


def dashboard_csv(figures: dict[str, Any]) -> str:
    """The CSV text of `forge.classroom.dashboard.figures`' answer."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for a in figures["assignments"]:
        for r in a["rows"]:
            _line(writer, figures["name"], a, r)
    return out.getvalue()


def csv_chunks(data: CohortLabs, scores: Mapping[str, Mapping[str, Any]], tenant_id: str,
               per_chunk: int = LEARNERS_PER_CHUNK) -> Iterator[str]:
    """The download, BOM first, in pieces of at most `per_chunk` learners of one
    assignment: the same text as `BOM + dashboard_csv(figures(data, ...))`, without ever
    holding more than a piece of it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield BOM + out.getvalue()
    by_cell = labs_by_cell(data)
    for a in data.assignments:
        own = by_cell.get(a.assignment_id, {})
        facts = {"assignment_id": a.assignment_id, "template_id": a.template_id}
        for start in range(0, len(data.learners), per_chunk):
            out.seek(0)
            out.truncate()
            for s in data.learners[start:start + per_chunk]:
                row = learner_cell(data, scores, tenant_id, a, s, own.get(s, []))
                _line(writer, data.name, facts, {"subject": s, **row})
            yield out.getvalue()
