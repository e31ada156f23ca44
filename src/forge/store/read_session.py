"""A SQLite read session that is a Core connection until the ORM is asked for.

Every request reads the store in one session (`Database.read`), and most of those reads
are Core statements on ``sess.connection()`` (`forge.store.prepared`): the caller, the
scenario row of a status poll, a revoked session. An ORM session began a transaction of
its own around that connection and ended it again (bookkeeping, state-change wrappers,
the identity map emptied at close): measured on a status poll's read, 72 -> 41 us of CPU
(minimum of 12 interleaved runs; medians 93 -> 68 us), on every request of every service.

Here the connection is opened (and its snapshot begun) by the store, handed out as is by
``connection()``, and an ORM call (`get`, `scalars`, `execute`...) joins the same
transaction, so a read that mixes both still sees one snapshot. Ending the read closes
the connection, which rolls its transaction back as the pool takes it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session


class ReadSession(Session):
    """An ORM session bound to an open read connection (see the module)."""

    def __init__(self, conn: Connection) -> None:
        # "rollback_only": the session never commits the store's transaction, it only
        # joins it; the store ends it by closing the connection.
        super().__init__(bind=conn, expire_on_commit=False,
                         join_transaction_mode="rollback_only")
        self._read_conn = conn

    def connection(self, bind_arguments: Any = None,
                   execution_options: Any = None) -> Connection:
        """The read's connection, without an ORM transaction when none was begun."""
        if self.in_transaction() or bind_arguments is not None or \
                execution_options is not None:
            return super().connection(bind_arguments, execution_options)
        return self._read_conn
