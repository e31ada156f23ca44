"""Classes: tenant roles, cohorts with their staff, enrolments and invites, and their
assignments with extensions, extra attempts and attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    ForeignKey,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from forge.store.models.table_base import Base


class TenantRole(Base):
    """A person's role in a tenant (learner, instructor or operator) as their identity
    provider last said at sign-in, with the groups it named (for cohort enrolment later)."""

    __tablename__ = "tenant_roles"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]


class Cohort(Base):
    """A class of learners in one tenant (issue 18 item 2), managed by its instructors; a
    learner signing in with its IdP group (`idp_group`) is enrolled."""

    __tablename__ = "cohorts"
    cohort_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(120))
    created_by: Mapped[str] = mapped_column(String(128))
    idp_group: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]


class CohortStaff(Base):
    """An instructor of a cohort: its creator, or one added by a cohort's instructor."""

    __tablename__ = "cohort_staff"
    cohort_id: Mapped[str] = mapped_column(
        ForeignKey("cohorts.cohort_id", ondelete="CASCADE"), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)


class Enrolment(Base):
    """A learner in a cohort, and how they came in: invite, csv or group."""

    __tablename__ = "enrolments"
    cohort_id: Mapped[str] = mapped_column(
        ForeignKey("cohorts.cohort_id", ondelete="CASCADE"), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    via: Mapped[str] = mapped_column(String(16))
    enrolled_at: Mapped[datetime]


class CohortInvite(Base):
    """An invite link to a cohort: only its sha256 is kept; usable by many learners until it
    expires or is revoked."""

    __tablename__ = "cohort_invites"
    invite_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    cohort_id: Mapped[str] = mapped_column(
        ForeignKey("cohorts.cohort_id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Assignment(Base):
    """A lab assigned to a cohort: its window, the attempts allowed and whether hints may be
    revealed."""

    __tablename__ = "assignments"
    assignment_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    cohort_id: Mapped[str] = mapped_column(
        ForeignKey("cohorts.cohort_id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    template_id: Mapped[str] = mapped_column(String(64))
    opens_at: Mapped[datetime]
    closes_at: Mapped[datetime]
    attempts_allowed: Mapped[int] = mapped_column(Integer)
    hints_allowed: Mapped[bool]
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class AssignmentExtension(Base):
    """One learner's extension of an assignment, given by an instructor: that learner's
    due time is the later of this `closes_at` and the assignment's."""

    __tablename__ = "assignment_extensions"
    assignment_id: Mapped[str] = mapped_column(
        ForeignKey("assignments.assignment_id", ondelete="CASCADE"), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    closes_at: Mapped[datetime]
    granted_by: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[datetime]


class AssignmentAttemptGrant(Base):
    """Extra attempts of an assignment an instructor gave one learner (with the reason):
    that learner may use the assignment's `attempts_allowed` plus `extra`."""

    __tablename__ = "assignment_attempt_grants"
    assignment_id: Mapped[str] = mapped_column(
        ForeignKey("assignments.assignment_id", ondelete="CASCADE"), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    extra: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))
    granted_by: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[datetime]


class AssignmentAttempt(Base):
    """One attempt of a learner at an assignment; the primary key (assignment, subject,
    attempt number) makes two concurrent spawns unable to take the same attempt."""

    __tablename__ = "assignment_attempts"
    assignment_id: Mapped[str] = mapped_column(
        ForeignKey("assignments.assignment_id", ondelete="CASCADE"), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    scenario_id: Mapped[str | None] = mapped_column(String(32), index=True)
    at: Mapped[datetime]
