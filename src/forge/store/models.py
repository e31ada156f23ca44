"""SQLAlchemy 2 models of Forge state; portable types so SQLite and PostgreSQL share them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (Alembic needs them on PostgreSQL)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Scenario(Base):
    """One lab from spawn request to its terminal state."""

    __tablename__ = "scenarios"
    scenario_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(128), index=True)
    track: Mapped[str] = mapped_column(String(32))
    template_id: Mapped[str] = mapped_column(String(64))
    template_sha256: Mapped[str | None] = mapped_column(String(64))
    plan: Mapped[str] = mapped_column(String(32))
    retention_days: Mapped[int] = mapped_column(Integer, default=30)
    state: Mapped[str] = mapped_column(String(16), index=True)
    state_reason: Mapped[str | None] = mapped_column(Text)
    sat_jti: Mapped[str | None] = mapped_column(String(64))
    et_jti: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The lab node holding the lab (set with the move to launching, under the row lock) and
    # the URL it registered itself at; None until a node takes the spawn.
    node_id: Mapped[str | None] = mapped_column(String(32), index=True)
    node_url: Mapped[str | None] = mapped_column(String(255))


class ScenarioTransition(Base):
    """Every state change of a scenario, with time and reason."""

    __tablename__ = "scenario_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scenario_id: Mapped[str] = mapped_column(
        ForeignKey("scenarios.scenario_id", ondelete="CASCADE"), index=True
    )
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class IdempotencyRecord(Base):
    """The stored answer to a spawn request id, for 24 h replays."""

    __tablename__ = "idempotency_records"
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ReplayJti(Base):
    """A consumed token id; kept until the token would have expired anyway."""

    __tablename__ = "replay_jtis"
    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class RateCounter(Base):
    """Fixed-window request counter per scope (tenant or subject)."""

    __tablename__ = "rate_counters"
    scope: Mapped[str] = mapped_column(String(160), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class QuotaSlot(Base):
    """A concurrency slot held by a live scenario; released when the scenario ends."""

    __tablename__ = "quota_slots"
    # Live slots only: a spawn's limit check (inside the write transaction) read every slot
    # the tenant released in the last hour through the tenant index. Covering (released_at
    # so that SQLite sees it so): the check never reads the table. Migration 0010.
    __table_args__ = (
        Index("ix_quota_slots_live", "tenant_id", "subject", "expires_at", "released_at",
              sqlite_where=text("released_at IS NULL"),
              postgresql_where=text("released_at IS NULL")),
    )
    scenario_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(128), index=True)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    released_at: Mapped[datetime | None] = mapped_column(index=True)


class Entitlement(Base):
    """An operator-granted plan for a tenant (subject "*") or one subject of it.

    `receipts_revoked_at` is the owner's latest revoke: receipts issued at or before it
    grant no plan. A new grant leaves it, so revoke + grant (a downgrade) also ends the old
    receipts; a row only revoking receipts (no grant ever) has plan "-"."""

    __tablename__ = "entitlements"
    __table_args__ = (UniqueConstraint("tenant_id", "subject", name="uq_entitlements_owner"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(128), default="*")
    plan: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    receipts_revoked_at: Mapped[datetime | None]


class ApiKey(Base):
    """An operator-issued learner credential; only its hash is stored."""

    __tablename__ = "api_keys"
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class FailedEvent(Base):
    """An event a consumer could not process after its retries; never dropped."""

    __tablename__ = "failed_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(128))
    msg_id: Mapped[str | None] = mapped_column(String(128))
    scenario_id: Mapped[str | None] = mapped_column(String(32), index=True)
    payload: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="failed", index=True)
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]
    reprocessed_at: Mapped[datetime | None]


class AuditRecord(Base):
    """One link of a hash-chained audit stream kept in the database (e.g. billing per tenant)."""

    __tablename__ = "audit_records"
    __table_args__ = (
        UniqueConstraint("stream", "seq", name="uq_audit_records_stream_seq"),
        Index("ix_audit_records_stream", "stream"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream: Mapped[str] = mapped_column(String(160))
    seq: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]


class HintReveal(Base):
    """A hint a learner revealed in a lab: recorded before its text is shown, never undone;
    the scoreboard reads these to charge each hint's cost (issue 17 item 3)."""

    __tablename__ = "hint_reveals"
    scenario_id: Mapped[str] = mapped_column(
        ForeignKey("scenarios.scenario_id", ondelete="CASCADE"), primary_key=True
    )
    hint_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    criterion: Mapped[str | None] = mapped_column(String(32))
    cost: Mapped[float] = mapped_column(Float)
    revealed_at: Mapped[datetime]


class TaskCheckRun(Base):
    """One "check this task" run on a live lab: which criterion, when, and its outcome
    (never a final verdict; counted for rate limits and recorded in the evidence)."""

    __tablename__ = "task_check_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scenario_id: Mapped[str] = mapped_column(
        ForeignKey("scenarios.scenario_id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    criterion: Mapped[str] = mapped_column(String(32))
    passed: Mapped[bool | None]
    at: Mapped[datetime]


class IssuedCredential(Base):
    """An Open Badges credential issued from a passing verdict (issue 18 item 5): one per
    scenario, its place in the revocation status list, the signed JWT as issued (the same
    bytes on every download) and, once revoked, when and why."""

    __tablename__ = "credentials"
    credential_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scenario_id: Mapped[str] = mapped_column(String(32), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(128))
    status_index: Mapped[int] = mapped_column(Integer, unique=True)
    key_id: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(200))


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


class FinalizedAudit(Base):
    """A scenario whose `score.finalized` entry is in an audit chain: the one marker every
    scoreboard replica shares (each keeps its own chain), so a completion redelivered to
    another replica after one finalized it is not audited a second time."""

    __tablename__ = "finalized_audits"
    scenario_id: Mapped[str] = mapped_column(
        ForeignKey("scenarios.scenario_id", ondelete="CASCADE"), primary_key=True
    )
    score_sha256: Mapped[str] = mapped_column(String(64))
    audited_at: Mapped[datetime]
