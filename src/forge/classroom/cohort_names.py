"""What a cohort's name (and its identity-provider group) may hold, and how a name from
elsewhere (an LMS course's title) is made one."""

from __future__ import annotations

import unicodedata

MAX_NAME = 120
_UNWRITABLE = ("Cc", "Cs", "Zl", "Zp")
# Embeddings, overrides and isolates: they reorder the text around a class's name where
# learners and other instructors read it (review CE), from an LMS title or typed alike: a
# typed U+202E showed "Other \u202eclass" as "Other ssalc" on /teach, on the dashboard
# and in the CSV's cohort column. The marks LRM and RLM (U+200E, U+200F) reorder nothing
# outside the name and stay a name's.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def writable(text: str) -> bool:
    """No control character, line or paragraph separator, lone surrogate (a NUL is
    refused by PostgreSQL, a surrogate by its encoder) or bidi embedding, override or
    isolate; a no-break space or an emoji joined by ZWJ is a name's."""
    return not any(unicodedata.category(ch) in _UNWRITABLE or ch in _BIDI_CONTROLS
                   for ch in text)


def clean_name(text: str) -> str:
    """A name from elsewhere (an LMS course's title) made one ``create_cohort`` would take:
    each character ``writable`` refuses becomes a space, spaces run together, bidi
    controls go, at most MAX_NAME characters; "" when nothing is left. Review CD: a title
    with a NUL went into the store as it was (PostgreSQL refuses a NUL: every launch from
    that course failed)."""
    kept = "".join(" " if unicodedata.category(ch) in _UNWRITABLE else ch for ch in text
                   if ch not in _BIDI_CONTROLS)
    return " ".join(kept.split())[:MAX_NAME].strip()
