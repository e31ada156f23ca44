"""The dashboard as CSV: one line per learner and assignment, the same figures as the page.

Cells are safe to open in a spreadsheet: any cell starting with = + - @ (or a tab or
carriage return) gets a leading apostrophe, so a cohort name or criterion can never become
a formula (CSV injection).
"""

from __future__ import annotations

import csv
import io
from typing import Any

COLUMNS = ("cohort", "assignment_id", "lab", "learner", "status", "attempts_used",
           "attempts_allowed", "score", "criteria_passed", "criteria_total", "time_spent_min",
           "hints_used", "failed_criteria", "started_at", "submitted_at", "finished_at", "late",
           "due_at")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """The cell's text, with a leading apostrophe if a spreadsheet would read a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _minutes(seconds: object) -> str:
    return f"{seconds / 60:.1f}" if isinstance(seconds, int | float) else ""


def dashboard_csv(figures: dict[str, Any]) -> str:
    """The CSV text of `forge.classroom.dashboard.figures`' answer."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for a in figures["assignments"]:
        for r in a["rows"]:
            writer.writerow([safe_cell(v) for v in (
                figures["name"], a["assignment_id"], a["template_id"], r["subject"],
                r["status"], r["attempts_used"], a["attempts_allowed"], r["score"],
                r["passed"], r["total"], _minutes(r["time_spent_s"]), r["hints_used"],
                ";".join(r["failed_criteria"]), r["started_at"], r["submitted_at"],
                r["finished_at"], {True: "yes", False: "no"}.get(r["late"], ""), r["due_at"])])
    return out.getvalue()
