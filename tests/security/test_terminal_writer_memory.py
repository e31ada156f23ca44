"""Attack: filling the lab node's memory through the terminal's `?writer=`.

A page's terminal names itself (`?writer=`) so that the session can count the input it took
from it over its sockets; the session remembers each writer's latest socket (up to
`MAX_WRITERS`). That socket's attachment still held the output it never sent, up to
`OUTBOX_BYTES`, after the socket had gone: a learner opening socket after socket with a new
writer each, printing without end and reading nothing, left 64 x 256 KiB (16 MiB) per
session on the node until the shell ended, where a socket without `?writer=` freed it as it
went. A socket that goes now leaves none of its output behind.
"""

from __future__ import annotations

import asyncio

from forge.services.orchestrator.terminal_output import OUTBOX_BYTES
from forge.services.orchestrator.terminal_sessions import MAX_WRITERS, TerminalSession
from forge.services.orchestrator.terminal_slots import TerminalSlot


def test_sockets_gone_with_their_output_untaken_leave_no_output_behind() -> None:
    async def main() -> int:
        sid = "scn-0000000000000000"
        session = TerminalSession(sid, "learner", TerminalSlot(sid))
        for n in range(MAX_WRITERS + 8):
            att, _ = session.attach()
            session.claim(f"writer-{n:04d}", att)
            att.push(b"y" * OUTBOX_BYTES)  # the shell prints; this client never reads
            session.detach(att)
        # The sockets the session still remembers, as writers' last ones:
        return sum(a.pending for a in session._writer_socket.values())

    assert asyncio.run(main()) == 0  # was MAX_WRITERS * OUTBOX_BYTES (16 MiB)
