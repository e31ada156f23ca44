"""Invite links of a cohort: made (the token shown once, only its hash kept), listed while
usable, revoked, and joined with."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from forge.classroom.cohorts import (
    Manager,
    enrol_learner,
    lock_cohort,
    managed_cohort,
    managed_ids,
    new_id,
)
from forge.errors import ForgeError
from forge.store.db import Database
from forge.store.models import Cohort, CohortInvite, CohortStaff
from forge.store.timestamps import aware

INVITE_PREFIX = "fgi_"
MAX_INVITE_DAYS = 90
MAX_LISTED_INVITES = 50  # usable invite links a cohort may have, all listed (API, /teach)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_invite(db: Database, who: Manager, cohort_id: str, days: int = 14
                ) -> tuple[CohortInvite, str]:
    """A new invite link token for the cohort (returned once; only its hash is stored).
    409 `cohort_invites_full` when the cohort has MAX_LISTED_INVITES usable links already:
    every usable link must stay listed, or one shared too widely could not be found and
    revoked."""
    if not isinstance(days, int) or not 1 <= days <= MAX_INVITE_DAYS:
        raise ForgeError("validation_error", 422, "invalid request: days",
                         [{"field": "days", "problem": f"1-{MAX_INVITE_DAYS}"}])
    token = INVITE_PREFIX + secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    with db.session() as sess:
        managed_cohort(sess, who, cohort_id)
        lock_cohort(sess, cohort_id)  # the count and the insert: one step
        live = sum(1 for at in sess.scalars(select(CohortInvite.expires_at).where(
            CohortInvite.cohort_id == cohort_id, CohortInvite.revoked_at.is_(None),
            CohortInvite.expires_at > now)) if aware(at) > now)
        if live >= MAX_LISTED_INVITES:
            raise ForgeError(
                "cohort_invites_full", 409,
                f"cohort_id: a cohort has at most {MAX_LISTED_INVITES} usable invite links "
                f"and this one has {live}: revoke one (GET /v1/cohorts/{cohort_id}/invites) "
                "to make another; no link was made",
                [{"field": "cohort_id",
                  "problem": f"at most {MAX_LISTED_INVITES} usable invite links"}])
        invite = CohortInvite(invite_id=new_id("inv"), cohort_id=cohort_id,
                              tenant_id=who.tenant_id, token_sha256=_digest(token),
                              created_by=who.subject, created_at=now,
                              expires_at=now + timedelta(days=days), revoked_at=None)
        sess.add(invite)
    return invite, token


def revoke_invite(db: Database, who: Manager, cohort_id: str, invite_id: str) -> None:
    """Revoke an invite link: nobody joins with it any more (those who joined stay)."""
    with db.session() as sess:
        managed_cohort(sess, who, cohort_id)
        invite = sess.get(CohortInvite, invite_id) if isinstance(invite_id, str) else None
        if invite is None or invite.cohort_id != cohort_id:
            raise ForgeError("invite_not_found", 404, "invite_id: no such invite link",
                             [{"field": "invite_id"}])
        if invite.revoked_at is None:
            invite.revoked_at = datetime.now(UTC)


def live_invites(db: Database, who: Manager, cohort_ids: Sequence[str],
                 per_cohort: int | None = MAX_LISTED_INVITES
                 ) -> dict[str, list[CohortInvite]]:
    """The invite links still usable (neither revoked nor expired) of each of `cohort_ids`
    that `who` manages, newest first, at most `per_cohort` a cohort (None: every one):
    what the instructor revokes when a learner taken out could join again with one (the
    link itself is shown only once, so its id is how they find it). A class made more
    than MAX_LISTED_INVITES before that cap existed: those past it are usable for up to
    MAX_INVITE_DAYS, so whoever lists a class's links asks for every one."""
    if not cohort_ids:
        return {}
    now = datetime.now(UTC)
    # One query for the page (at most 20 classes), each class's newest first and cut at
    # MAX_LISTED_INVITES by a window over the class, not a query per class.
    ranked = select(CohortInvite, func.row_number().over(
        partition_by=CohortInvite.cohort_id,
        order_by=(CohortInvite.created_at.desc(), CohortInvite.invite_id.desc()))
        .label("rank")).where(
        CohortInvite.cohort_id.in_(list(cohort_ids)),
        CohortInvite.cohort_id.in_(managed_ids(who)),
        CohortInvite.tenant_id == who.tenant_id, CohortInvite.revoked_at.is_(None),
        CohortInvite.expires_at > now).subquery()
    invite = aliased(CohortInvite, ranked)
    out: dict[str, list[CohortInvite]] = {cohort_id: [] for cohort_id in cohort_ids}
    with db.read() as sess:
        cut = () if per_cohort is None else (ranked.c.rank <= per_cohort,)
        for row in sess.scalars(select(invite).where(*cut)
                                .order_by(ranked.c.created_at.desc(),
                                          ranked.c.invite_id.desc())):
            if aware(row.expires_at) > now:
                out.setdefault(row.cohort_id, []).append(row)
        sess.expunge_all()
    return out


def _valid_invite(sess: Session, tenant_id: str, token: object) -> CohortInvite:
    """The usable invite of this token in this tenant. One answer (404 `invite_invalid`) for
    unknown, revoked, expired or another tenant's links."""
    invalid = ForgeError("invite_invalid", 404,
                         "invite: this invite link is not valid (unknown, expired or revoked)",
                         [{"field": "invite"}])
    if not isinstance(token, str) or not token.startswith(INVITE_PREFIX) or len(token) > 100:
        raise invalid
    digest = _digest(token)
    invite = sess.scalars(select(CohortInvite).where(
        CohortInvite.token_sha256 == digest)).first()
    if (invite is None  # found by its digest: the secret itself is never compared
            or invite.tenant_id != tenant_id or invite.revoked_at is not None
            or aware(invite.expires_at) <= datetime.now(UTC)):
        raise invalid
    return invite


def invited_cohort(db: Database, tenant_id: str, token: object) -> Cohort:
    """The cohort an invite link of this tenant leads to (to show before joining)."""
    with db.read() as sess:
        cohort = sess.get(Cohort, _valid_invite(sess, tenant_id, token).cohort_id)
        assert cohort is not None
        sess.expunge(cohort)
        return cohort


def join_by_invite(db: Database, tenant_id: str, subject: str, token: object) -> Cohort:
    """Enrol (tenant, subject) with an invite token of their own tenant (404
    `invite_invalid` otherwise); joining again changes nothing; 409 `cohort_full` when the
    cohort holds MAX_MEMBERS learners already, 409 `cohort_staff` for one of its
    instructors (opening the link they share would have made them a learner of their own
    class, counted on its dashboard), 409 `cohort_case_clash` when it has them in other
    letter case (`refuse_case_clash`)."""
    with db.session() as sess:
        invite = _valid_invite(sess, tenant_id, token)
        if not enrol_learner(sess, invite.cohort_id, tenant_id, subject, "invite",
                      datetime.now(UTC)) and sess.get(
                CohortStaff, (invite.cohort_id, subject)) is not None:
            raise ForgeError("cohort_staff", 409, "invite: you manage this cohort; its "
                             "invite link is for learners (see it from /teach)",
                             [{"field": "invite"}])
        cohort = sess.get(Cohort, invite.cohort_id)
        assert cohort is not None
        return cohort
