"""Operator grants in the entitlement store (DB table), optionally extended by a JSON file."""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Table, bindparam, or_, select
from sqlalchemy.orm import Session

from forge.config.trusted_file import chosen_by_others
from forge.identity.names import valid_id
from forge.store.db import Database
from forge.store.models import Entitlement as GrantRow
from forge.store.prepared import Prepared
from forge.store.row_locks import lock_name
from forge.store.timestamps import aware
from forge_verify.files import InputRefused, read_bounded_text

TENANT_WIDE = "*"
NO_PLAN = "-"  # the plan of a row that only records a revoke (the owner never had a grant)
_GRANTS: Table = GrantRow.__table__  # type: ignore[assignment]
# Two plain parameters, not an expanding IN (re-rendered on every execution): every spawn
# and every authenticated page asks this, through the driver (forge.store.prepared).
_LOOKUP = Prepared(select(_GRANTS.c.subject, _GRANTS.c.plan).where(
    _GRANTS.c.tenant_id == bindparam("tenant"),
    or_(_GRANTS.c.subject == bindparam("subject"), _GRANTS.c.subject == TENANT_WIDE),
    _GRANTS.c.revoked_at.is_(None),
    or_(_GRANTS.c.expires_at.is_(None), _GRANTS.c.expires_at > bindparam("now")),
))
# One row at most, by the same (tenant, subject) key: asked once per request with a receipt.
_RECEIPTS_REVOKED = Prepared(select(_GRANTS.c.subject).where(
    _GRANTS.c.tenant_id == bindparam("tenant"),
    or_(_GRANTS.c.subject == bindparam("subject"), _GRANTS.c.subject == TENANT_WIDE),
    _GRANTS.c.receipts_revoked_at >= bindparam("since"),
).limit(1))


@dataclass(frozen=True)
class Revocation:
    """What `revoke` did: the plan of the live grant it ended (None: there was none) and
    the moment from which receipts issued until then grant no plan."""

    plan: str | None
    at: datetime


def _check_owner(tenant_id: str, subject: str) -> None:
    if not valid_id(tenant_id):
        raise ValueError("tenant_id: 1-128 chars of letters, digits and . _ @ : -")
    if subject != TENANT_WIDE and not valid_id(subject):
        raise ValueError("subject: 1-128 chars of letters, digits and . _ @ : -, or *")


def _owner_row(sess: Session, tenant_id: str, subject: str) -> GrantRow | None:
    """The owner's row, if any, its name locked for the rest of ``sess``: two writes for
    one owner at once (two checkouts, a grant and a revoke) take turns, the second
    updating the first's row instead of failing on the unique key (PostgreSQL)."""
    lock_name(sess.connection(), f"grant/{tenant_id}/{subject}")
    return sess.scalars(
        select(GrantRow).where(GrantRow.tenant_id == tenant_id, GrantRow.subject == subject)
    ).first()


def grant(
    db: Database, tenant_id: str, plan: str, subject: str = TENANT_WIDE,
    expires_at: datetime | None = None,
) -> None:
    """Grant `plan` to one subject, or to every learner of the tenant (subject "*")."""
    _check_owner(tenant_id, subject)
    now = datetime.now(UTC)
    with db.session() as sess:
        row = _owner_row(sess, tenant_id, subject)
        if row is None:
            sess.add(GrantRow(tenant_id=tenant_id, subject=subject, plan=plan, created_at=now,
                              expires_at=expires_at, revoked_at=None))
        else:
            row.plan, row.expires_at, row.revoked_at, row.created_at = plan, expires_at, None, now


def is_live(row: GrantRow, now: datetime) -> bool:
    """Whether a grant row grants its plan at `now` (the condition _LOOKUP asks the store)."""
    return row.revoked_at is None and (row.expires_at is None or aware(row.expires_at) > now)


def revoke(db: Database, tenant_id: str, subject: str = TENANT_WIDE) -> Revocation:
    """End the owner's live grant, if any, and every receipt of theirs issued until now
    (of one learner; subject "*": of every learner of the tenant). An owner with no row
    (a receipt-only learner) gets a revoked row of plan NO_PLAN recording it."""
    _check_owner(tenant_id, subject)
    now = datetime.now(UTC)
    with db.session() as sess:
        row = _owner_row(sess, tenant_id, subject)
        if row is None:
            sess.add(GrantRow(tenant_id=tenant_id, subject=subject, plan=NO_PLAN, created_at=now,
                              expires_at=None, revoked_at=now, receipts_revoked_at=now))
            return Revocation(None, now)
        revoked = Revocation(row.plan if is_live(row, now) else None, now)
        if row.revoked_at is None:
            row.revoked_at = now
        row.receipts_revoked_at = now
        return revoked


def receipt_revoked(db: Database, tenant_id: str, subject: str, issued_at: int) -> bool:
    """True when a revoke of this learner, or of their whole tenant, was recorded in the
    second `issued_at` (a receipt's `iat`, whole seconds) or later: that receipt may have
    been issued before the revoke, so it grants no plan. One indexed read."""
    since = datetime.fromtimestamp(issued_at, UTC)
    with db.read() as sess:
        found = _RECEIPTS_REVOKED.execute(
            sess.connection(), {"tenant": tenant_id, "subject": subject, "since": since}
        ).first()
    return found is not None


def list_grants(db: Database, tenant_id: str | None = None) -> list[GrantRow]:
    """Every grant (live and revoked), optionally of one tenant."""
    with db.read() as sess:
        query = select(GrantRow).order_by(GrantRow.tenant_id, GrantRow.subject)
        if tenant_id:
            query = query.where(GrantRow.tenant_id == tenant_id)
        rows = list(sess.scalars(query))
        sess.expunge_all()
        return rows


def lookup_grant(db: Database, tenant_id: str, subject: str, now: datetime) -> str | None:
    """The plan granted to this subject, else to the whole tenant, else None."""
    with db.read() as sess:
        rows = _LOOKUP.execute(
            sess.connection(), {"tenant": tenant_id, "subject": subject, "now": now}
        ).all()
        by_subject = {r.subject: r.plan for r in rows}
    return by_subject.get(subject) or by_subject.get(TENANT_WIDE)


MAX_GRANTS_FILE_BYTES = 16 * 1024 * 1024


class EntitlementsFileError(Exception):
    """ENTITLEMENTS_FILE cannot be used (unreadable, not JSON, not the expected shape): the
    message names the file and the fault, never its content."""


# The last file read and its grants, keyed by what stat says of it: every spawn without a
# grant in the store and every readiness check asks the file, which may be megabytes. A
# rewrite (new inode, size or mtime) is read afresh, so a revoke takes effect at once. A file
# changed in the last two seconds is not kept: two writes of the same size within one tick of
# the file system's clock would leave the same stat behind.
_SETTLED_NS = 2_000_000_000
_last_read: tuple[tuple[str, int, int, int, int, int], list[dict[str, object]]] | None = None


def read_file_grants(path: Path) -> list[dict[str, object]]:
    """The grants of the optional JSON source, checked: {"grants": [{"tenant_id",
    "subject"?, "plan"}]}; EntitlementsFileError naming what is wrong otherwise, also for a
    file another local user owns or may write (its grants would be theirs to choose: any
    plan for any tenant). The file judged is the one read, through one descriptor."""
    global _last_read
    fd = _open_grants(path)
    try:
        st = os.fstat(fd)
        why = chosen_by_others(path, st)
        if why is not None:
            raise EntitlementsFileError(f"entitlements file {path} {why}")
        # ctime too: a tool that keeps mtimes (rsync -a) may put a same-size file on a
        # reused inode; a rename or write sets ctime, which no one can set back.
        key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        last = _last_read
        if last is not None and last[0] == key:
            return last[1]
        grants = _parse_file_grants(path, fd)
    finally:
        os.close(fd)
    if time.time_ns() - st.st_mtime_ns > _SETTLED_NS:
        _last_read = (key, grants)
    return grants


def _open_grants(path: Path) -> int:
    """A descriptor of the regular file at ``path`` (links followed; a FIFO or device is
    refused before it is opened, as ``read_bounded_text`` refuses it)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            read_bounded_text(path, MAX_GRANTS_FILE_BYTES, what="entitlements file")
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise EntitlementsFileError(f"entitlements file {path} is missing") from None
    except InputRefused as exc:
        raise EntitlementsFileError(str(exc)) from None
    except OSError as exc:
        raise EntitlementsFileError(
            f"entitlements file {path} cannot be read ({exc.strerror})") from None


def _parse_file_grants(path: Path, fd: int) -> list[dict[str, object]]:
    try:
        data = json.loads(read_bounded_text(f"/proc/self/fd/{fd}", MAX_GRANTS_FILE_BYTES,
                                            what="entitlements file"))
    except InputRefused as exc:  # too big, unreadable, not UTF-8
        raise EntitlementsFileError(f"entitlements file {path}: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise EntitlementsFileError(
            f"entitlements file {path} is not valid JSON (line {exc.lineno}, column "
            f"{exc.colno}: {exc.msg})") from None
    grants = data.get("grants", []) if isinstance(data, dict) else None
    if not isinstance(grants, list) or not all(
            isinstance(g, dict) and isinstance(g.get("tenant_id"), str)
            and isinstance(g.get("plan"), str) for g in grants):
        raise EntitlementsFileError(
            f"entitlements file {path} is not {{\"grants\": [{{\"tenant_id\", "
            f"\"subject\"?, \"plan\"}}, ...]}}")
    return grants


def lookup_file_grant(path: Path, tenant_id: str, subject: str) -> str | None:
    """The optional JSON source: {"grants": [{"tenant_id", "subject"?, "plan"}]}."""
    found: dict[str, str] = {}
    for item in read_file_grants(path):
        if item.get("tenant_id") == tenant_id:
            found[str(item.get("subject", TENANT_WIDE))] = str(item["plan"])
    return found.get(subject) or found.get(TENANT_WIDE)
