"""A /teach form the platform refused (422: a wrong roster line, a due time before the
opening), shown on /teach itself: the message at the top, in the words of the form's
labels, and the form filled in again as it was sent, open where it was.

Before, a refused form led to an error page whose "Go back" opened a fresh /teach: an
instructor who pasted 200 account ids with one wrong line lost all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from forge.classroom.cohorts import COHORT_ID_RE

# The labels the forms show, for the API field names a message starts with.
LABELS = {"closes_at": "Due", "opens_at": "Opens", "subject": "Learner's account id",
          "attempts_allowed": "Attempts", "csv": "Add learners", "template_id": "Lab",
          "name": "Name", "idp_group": "Sign-in group", "assignment_id": "Assignment",
          "roster": "Add learners", "extra_attempts": "Extra attempts", "reason": "Reason"}
_NAMES = re.compile(r"\b(?:" + "|".join(sorted(LABELS, key=len, reverse=True)) + r")\b")
FORMS = frozenset({"invite", "roster", "assignments", "changes", "due", "attempts",
                   "remove"})
IN_DETAILS = frozenset({"changes", "due", "attempts", "remove"})  # under "Change the running class"
# As a form sends it: typed (no seconds) or from the page's script (`toISOString`, with
# milliseconds and a Z); it goes back to the field to the second, without the zone.
_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:\.\d{1,9})?Z?")
KEPT_FIELDS = ("roster", "template_id", "opens_at", "closes_at", "attempts_allowed",
               "hints_allowed", "assignment_id", "subject", "name", "idp_group",
               "extra_attempts", "reason")


@dataclass(frozen=True)
class Refused:
    """The refused form: which class and form (None: the new-class form), what it held,
    and the message to show."""

    cohort: str | None
    form: str
    message: str
    values: dict[str, str] = field(default_factory=dict)
    # Each problem of a refusal that has several (a roster's bad lines, up to 20): the
    # message names the first and only the numbers of the others.
    problems: tuple[str, ...] = ()

    def value(self, cohort: str | None, form: str, name: str, default: str = "") -> str:
        """What field ``name`` of ``form`` of ``cohort`` held when refused, else
        ``default`` (the page's own value)."""
        if (cohort, form) != (self.cohort, self.form):
            return default
        return self.values.get(name, default)

    def here(self, cohort: str | None, form: str) -> bool:
        """Whether this is the refused form."""
        return (cohort, form) == (self.cohort, self.form)


def problems_of(details: object) -> tuple[str, ...]:
    """Each problem an error's details name (a roster's bad lines: "line 203: …"), when
    there are several; () otherwise (the message says the one)."""
    found = [f"line {d['line']}: {d['problem']}" if isinstance(d.get("line"), int)
             else str(d["problem"]) for d in (details if isinstance(details, list) else [])
             if isinstance(d, dict) and isinstance(d.get("problem"), str)]
    return tuple(found) if len(found) > 1 else ()


def refused_form(path: str, form: dict[str, str], message: str,
                 details: object = None) -> Refused | None:
    """The refused form of a /teach POST to ``path``; None for a path that is no /teach
    form. Date-time values go back as the page writes them (UTC, no zone: the page's
    script shows them in the browser's zone); others as sent. ``details``: the error's,
    whose problems are listed one by one (`problems_of`)."""
    parts = path.strip("/").split("/")
    if parts == ["teach", "cohorts"]:
        cohort, kind = None, "cohorts"
    elif (len(parts) == 4 and parts[:2] == ["teach", "cohorts"] and parts[3] in FORMS
          and COHORT_ID_RE.fullmatch(parts[2])):
        cohort, kind = parts[2], parts[3]
    else:
        return None
    values: dict[str, str] = {}
    for name in KEPT_FIELDS:
        if name not in form:
            continue
        value = form[name]
        if name in ("opens_at", "closes_at"):
            moment = _TIME.fullmatch(value)
            if moment is None:
                continue
            value = moment.group(1)
        values[name] = value
    return Refused(cohort, kind, in_form_words(message), values, problems_of(details))


def in_form_words(message: str) -> str:
    """``message`` with the API field names it uses given as the form's labels ("due
    before opens_at" reads "due before Opens")."""
    return _NAMES.sub(lambda m: LABELS[m.group(0)], message)
