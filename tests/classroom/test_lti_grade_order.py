"""Owed LMS grades posted out of order still leave the learner's best in the grade book.

Probe DF: a learner's first attempt (0.3) is owed while the LMS is down and backs off
(up to an hour between posts); their second attempt (0.9) is owed later, so its first
post comes sooner. When the LMS is back the poster posts the second (90) first and the
first (30) minutes later: each row carried only the best known when it was owed, so the
grade book, which keeps the latest score it is sent, read 30 while the dashboard said 0.9
(the outbox claimed "in whatever order, leave the best"). Now a newer grade owed brings
the learner's older grades still waiting up to it. Store on SQLite and PostgreSQL; the
poster's own choice of what is due (`due_grades`) decides the order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forge.classroom import lti_grade_posts
from forge.store.db import Database
from forge.store.migrate import upgrade

from ..support.lti_grades import graded_attempts


@pytest.fixture
def db(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def test_an_older_grade_posted_last_carries_the_best(db: Database) -> None:
    now = datetime.now(UTC)
    graded = graded_attempts(db)
    first = graded(1, 0.3)
    for _ in range(8):  # the LMS is down: its posts back off
        lti_grade_posts.grade_retry(db, first, "score post answered HTTP 503")
    second = graded(2, 0.9)

    book: list[float] = []  # what the LMS is sent, in order; it keeps the latest
    for moment in (now + timedelta(minutes=1), now + timedelta(hours=2)):
        for row in lti_grade_posts.due_grades(db, moment):
            book.append(row.score_given)
            lti_grade_posts.grade_posted(db, row.scenario_id)
    assert [g.state for s in (first, second)
            if (g := lti_grade_posts.grade_of(db, s)) is not None] == ["posted", "posted"]
    assert len(book) == 2 and book[-1] == 90.0, book


def test_a_failed_grade_posted_again_carries_the_best(db: Database) -> None:
    """The LMS refused the first attempt's grade outright (failed: a scope or line item
    misconfigured); once fixed, the second attempt's 90 is posted; then the operator posts
    the failed one again as the docs say (`forge lti retry`). It went as it was, 30, after
    the 90: the grade book, keeping the latest, read 30. It now carries the best. (Each
    poll is a second after the grades it finds were owed, however slow the machine.)"""
    graded = graded_attempts(db)
    first = graded(1, 0.3)
    lti_grade_posts.grade_retry(db, first, "score post answered HTTP 403", final=True)
    second = graded(2, 0.9)
    book: list[float] = []
    for row in lti_grade_posts.due_grades(db, datetime.now(UTC) + timedelta(seconds=1)):
        book.append(row.score_given)
        lti_grade_posts.grade_posted(db, row.scenario_id)
    assert lti_grade_posts.requeue_grade(db, first)
    for row in lti_grade_posts.due_grades(db, datetime.now(UTC) + timedelta(seconds=1)):
        book.append(row.score_given)
        lti_grade_posts.grade_posted(db, row.scenario_id)
    assert lti_grade_posts.grade_of(db, second).state == "posted"  # type: ignore[union-attr]
    assert book == [90.0, 90.0], book
