"""Labs and the platform around them: scenarios and their transitions, hints and checks,
idempotency, replay, rate and quota counters, entitlements, API keys, failed events,
audit records and issued credentials."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from forge.store.models.table_base import Base


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
