"""Blocking store reads called from async code: inline on SQLite in WAL mode, on a thread
elsewhere (PostgreSQL, a SQLite file that refused WAL: `Database.reads_inline`).

Request handlers of both services and the orchestrator's bus consumers, reaper, resumes and
terminal checks use it; on the orchestrator's loop a stalled read would also hold up its
heartbeats and terminal relays, which is why only snapshot reads that never wait qualify.

A point read of SQLite in WAL mode takes a snapshot without waiting for any writer, and
costs less CPU than the thread hop around it (two thread switches, the GIL handed over
twice). Measured back to back on the spawn API (2 workers, 32 clients): 8.4-9.0 -> 7.4-7.7
ms of server CPU per spawn, 169-180 -> 216-221 spawns/s, p99 at 200/s 3.8-4.4 s -> 0.8-1.1 s
for the spawn's own reads alone. A PostgreSQL read waits for the network, so it keeps its
worker thread. The function must only read: `Database.session()` refuses inside an inline
read (a write may wait for the lock, which would stall every request of the loop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from forge.store.db import Database

T = TypeVar("T")


async def read_call(db: Database, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, a read of `db` only: on the calling thread for SQLite, else a worker."""
    if not db.reads_inline:
        return await run_in_threadpool(fn, *args)
    with db.inline_read():
        return fn(*args)
