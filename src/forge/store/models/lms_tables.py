"""LMS links (LTI): courses mapped to cohorts, learners' platform ids, grade links and the
grade outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from forge.store.models.table_base import Base


class LtiContext(Base):
    """An LMS course (LTI context) of a registered platform and the cohort it maps to
    (issue 18 item 4); `memberships_url` is where its roster is read (NRPS)."""

    __tablename__ = "lti_contexts"
    platform: Mapped[str] = mapped_column(String(64), primary_key=True)
    context_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    cohort_id: Mapped[str] = mapped_column(
        ForeignKey("cohorts.cohort_id", ondelete="CASCADE"), index=True)
    memberships_url: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime]


class LtiGradeLink(Base):
    """Where a learner's score of an assignment goes back: the platform's line item and
    the learner's id there (from their last launch)."""

    __tablename__ = "lti_grade_links"
    assignment_id: Mapped[str] = mapped_column(
        ForeignKey("assignments.assignment_id", ondelete="CASCADE"), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))
    lti_user: Mapped[str] = mapped_column(String(255))
    lineitem: Mapped[str] = mapped_column(String(1024))
    updated_at: Mapped[datetime]


class LtiUser(Base):
    """A platform's user id of a Forge subject (the LTI `sub`), from their launches and
    from the roster syncs of the platform's courses: where an LMS grade of a learner who
    never launched (a roster sync enrolled them, they started from Forge) goes. Kept
    because `lti.map_subject` is not invertible (a long id becomes a digest)."""

    __tablename__ = "lti_users"
    platform: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    lti_user: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime]


class LtiGradePost(Base):
    """A score owed to a platform (the outbox): written when the verdict is signed, posted
    and retried until the platform takes it."""

    __tablename__ = "lti_grade_posts"
    # The learner's best grade owed so far is read at each verdict (migration 0013).
    __table_args__ = (Index("ix_lti_grade_posts_learner", "assignment_id", "platform",
                            "lti_user"),)
    scenario_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))
    lineitem: Mapped[str] = mapped_column(String(1024))
    lti_user: Mapped[str] = mapped_column(String(255))
    assignment_id: Mapped[str] = mapped_column(String(32))
    score_given: Mapped[float] = mapped_column(Float)
    score_maximum: Mapped[float] = mapped_column(Float)
    timestamp: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer)
    next_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(300))
    posted_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
