"""SQL replay store: the primary key on jti makes `consume` atomic across replicas."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from forge.store.db import Database
from forge.store.models import ReplayJti
from forge.tokens.errors import TokenReplayed


class SqlReplayStore:
    """ReplayStore over the state database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def consume(self, jti: str, kind: str, expires_at: datetime) -> None:
        """Insert the jti; a duplicate key means the token was already used."""
        if not jti or len(jti) > 128:
            raise TokenReplayed(f"{kind} token has no usable jti")
        try:
            with self._db.session() as sess:
                sess.add(ReplayJti(jti=jti, kind=kind, expires_at=expires_at))
        except IntegrityError as exc:
            raise TokenReplayed(f"{kind} token was already used") from exc

    def purge_expired(self, now: datetime) -> int:
        """Delete jtis past their expiry."""
        with self._db.session() as sess:
            result = sess.execute(delete(ReplayJti).where(ReplayJti.expires_at < now))
            return int(getattr(result, "rowcount", 0) or 0)
