"""What a lab's own pages are called: the lab's name, and the lab page's title, which says
where the lab stands once it no longer runs."""

from __future__ import annotations

from forge.lifecycle.store import ScenarioRow
from forge.services.spawn.catalog_entry import CatalogEntry
from forge.services.spawn.web.result import ResultView


def lab_name(entry: CatalogEntry | None, row: ScenarioRow) -> str:
    """What the lab is called on its pages: its catalog title, else its track."""
    return entry.title if entry is not None else row.track


def lab_page_title(view: ResultView | None, lab_title: str, row: ScenarioRow) -> str:
    """The lab page's title, led by where the lab stands once it is no longer running: a
    page that came again by itself (grading started, the verdict came in) says so in the
    title a screen reader reads out and the browser's tab shows (a lab that failed to
    start, or ended before it was graded, read as if it were still starting)."""
    name = f"{lab_title} · lab {row.scenario_id}"
    if view is not None:
        return f"{view.outcome} · {name}"
    if row.state in ("failed", "expired", "deleted"):
        return f"Ended, no score · {name}"
    return f"Grading · {name}" if row.state == "grading" else name
