"""SQL replay store: the primary key on jti makes `consume` atomic across replicas.

The store reports what happened (first use or not); deciding that a second use is a replayed
token, and saying so, is the tokens layer's job (`forge.tokens.replay.consume_once`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Table, delete, insert
from sqlalchemy.exc import IntegrityError

from forge.store.db import Database
from forge.store.models import ReplayJti
from forge.store.prepared import Prepared

MAX_JTI_CHARS = 128
JTIS: Table = ReplayJti.__table__  # type: ignore[assignment]
# Through the driver (forge.store.prepared), not the ORM's unit of work: every lab's access
# link, SAT and sign-out consume one, and the ORM's add + flush cost more than the insert.
_CONSUME = Prepared(insert(JTIS), ["jti", "kind", "expires_at"])


class SqlReplayStore:
    """ReplayStore over the state database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def consume(self, jti: str, kind: str, expires_at: datetime) -> bool:
        """Insert the jti: True on its first use, False when it was already consumed (the
        duplicate key). ValueError for a jti no token carries (empty or too long)."""
        if not jti or len(jti) > MAX_JTI_CHARS:
            raise ValueError(f"jti: 1-{MAX_JTI_CHARS} characters")
        try:
            with self._db.session() as sess:
                _CONSUME.execute(sess.connection(),
                                 {"jti": jti, "kind": kind, "expires_at": expires_at})
        except IntegrityError:
            return False
        return True

    @staticmethod
    def consume_on(conn: Connection, jti: str, kind: str, expires_at: datetime) -> bool:
        """``consume`` inside the caller's transaction on ``conn``, committed with its other
        writes. False on a jti already consumed: that transaction is then unusable (on
        PostgreSQL the failed insert aborts it) and must be rolled back."""
        if not jti or len(jti) > MAX_JTI_CHARS:
            raise ValueError(f"jti: 1-{MAX_JTI_CHARS} characters")
        try:
            _CONSUME.execute(conn, {"jti": jti, "kind": kind, "expires_at": expires_at})
        except IntegrityError:
            return False
        return True

    def purge_expired(self, now: datetime) -> int:
        """Delete jtis past their expiry."""
        with self._db.session() as sess:
            result = sess.execute(delete(ReplayJti).where(ReplayJti.expires_at < now))
            return int(getattr(result, "rowcount", 0) or 0)
