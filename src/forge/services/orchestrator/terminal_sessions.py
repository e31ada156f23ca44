"""Terminal sessions on the lab node: one shell per (lab, host) that outlives its WebSockets.

A session owns the host's `TtySession` (made by the `Opener` given to `get_or_open`) and
keeps running when its sockets go: a reconnect after a drop, a reload or a second tab
attaches to the SAME shell and first gets a replay of its recent output. Every attachment
sees the output, input from any of them reaches the shell, the latest resize wins.

Bounds (the buffers are `terminal_output`'s). Scrollback is the last `SCROLLBACK_BYTES` of
output per session, so memory is that times the sessions of the node (at most the plan's
`max_terminals` per lab, the node's lab capacity in labs). Output waiting for one attachment
is at most `OUTBOX_BYTES`: while an attached client is that far behind, the session stops
reading its shell (the printing program waits, as before). A detached session reads at most
`DETACHED_READ_BYTES` more into its scrollback, then stops reading until a socket attaches
(checking every `SHELL_POLL_S` that its shell still runs): the kernel's PTY buffer fills and
the program printing inside the lab blocks there, under the lab's own CPU quota, instead of
the node spending CPU copying output nobody sees (`yes` in a closed tab). A session holds a
`TerminalSlot` of its lab for its lifetime, so the plan's cap counts shells (hosts with a
live session), never sockets; a session takes at most `MAX_ATTACHMENTS` sockets at once.

A session ends when its shell exits (the next attach starts a new one), when nobody typed
for the plan's `terminal_idle_seconds` (attached or not), when its lab is sealed for grading,
or when its learner signs out; attached sockets are told why. Everything here runs on the
orchestrator's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from forge.runtime.base import TtySession
from forge.services.common.relay import until_first_ends
from forge.services.orchestrator.terminal_io import CHUNK_BYTES, Activity, Keystrokes
from forge.services.orchestrator.terminal_output import (
    SCROLLBACK_BYTES,
    Attachment,
    Scrollback,
)
from forge.services.orchestrator.terminal_slots import (
    LIMIT_CODE,
    Closing,
    SlotRefused,
    TerminalSlot,
    TerminalSlots,
    idle_timeout,
)

log = logging.getLogger("forge.orchestrator.terminal")
DETACHED_READ_BYTES = SCROLLBACK_BYTES
MAX_ATTACHMENTS = 4
DRAIN_READS = 64  # reads of an ended shell's leftover output at most (a pty holds far less)
SHELL_POLL_S = 1.0  # how often a paused session checks that its shell still runs
SHELL_ENDED_CODE = 4412
Blocking = Callable[..., Awaitable[Any]]


# Makes a session's terminal stream (blocking): `runtime.tty`, or a wrapper of it such as
# `forge.runtime.recording.recorded_tty` (the orchestrator records every session).
Opener = Callable[[str, str, int, int], TtySession]


def attach_limit() -> Closing:
    """Refusal when a session already has `MAX_ATTACHMENTS` sockets."""
    return Closing(LIMIT_CODE, "terminal_attach_limit",
                   f"This terminal is already open in {MAX_ATTACHMENTS} tabs or devices. "
                   "Close one of them and try again.")


def shell_ended() -> Closing:
    """The session ended as this socket arrived (its shell exited): open a new one."""
    return Closing(SHELL_ENDED_CODE, "terminal_ended",
                   "The terminal's shell has just ended. Reconnect to open a new one.")


MAX_WRITERS = 64  # the writers (pages' terminals) a session keeps input counts for


class TerminalSession:
    """A live shell on one host of one lab, with its scrollback and attached sockets."""

    def __init__(self, scenario_id: str, host: str, slot: TerminalSlot) -> None:
        self.scenario_id, self.host, self.slot = scenario_id, host, slot
        self.session_id = "tty-" + secrets.token_hex(8)
        self.tty: TtySession | None = None
        self.opened = asyncio.Event()
        self.ended = False
        self.scrollback = Scrollback()
        self.attached: list[Attachment] = []
        self.keys = Keystrokes()
        self.size: tuple[int, int] | None = None  # (rows, cols) the shell has
        self.activity: Activity | None = None
        self.output_bytes = 0  # read from the shell so far
        self.unseen_bytes = 0  # read since the last socket went (reset when one attaches)
        self._watched = asyncio.Event()  # set while at least one socket is attached
        # Input bytes taken from each writer (a page's terminal, across its sockets), and
        # the socket each writer types through now (see `claim`).
        self.received: dict[str, int] = {}
        self._writer_socket: dict[str, Attachment] = {}
        self._forgot_writers = False  # some were forgotten (MAX_WRITERS): see `claim`

    @property
    def paused(self) -> bool:
        """True while the shell's output waits in the lab for a socket (nobody attached and
        `DETACHED_READ_BYTES` already read since the last one went)."""
        return not self._watched.is_set() and self.unseen_bytes >= DETACHED_READ_BYTES

    def attach(self) -> tuple[Attachment, bytes]:
        """Add a socket (or raise SlotRefused) and return it with the replay: both taken in
        one step, so no output is lost or repeated between the replay and what follows."""
        if self.ended or self.slot.stop.is_set():
            raise SlotRefused(self.slot.closing or shell_ended())
        if len(self.attached) >= MAX_ATTACHMENTS:
            raise SlotRefused(attach_limit())
        att = Attachment()
        self.attached.append(att)
        self.unseen_bytes = 0
        self._watched.set()
        return att, self.scrollback.replay()

    def detach(self, att: Attachment) -> None:
        """Remove a socket; the shell keeps running. Its untaken output goes with it: the
        attachment itself may outlive it as a writer's last socket (`claim`)."""
        att.end(att.closing)
        att.discard()
        if att in self.attached:
            self.attached.remove(att)
        if not self.attached:
            self._watched.clear()

    def claim(self, writer: str, att: Attachment) -> int | None:
        """`att` is now the socket `writer` types through; the input bytes taken from that
        writer so far. A page whose link hung sends again, on its new socket, what the
        shell had not received; input arriving late on its old socket is then not typed
        twice (`type_from`).

        None for a writer the session does not know once it has forgotten some: it may be
        one of them, whose count of 0 would have had its page send again what the shell
        had already taken (typed twice); without a count the page says what may not have
        reached the shell instead."""
        unsure = writer not in self.received and self._forgot_writers
        self._writer_socket[writer] = att
        self.received.setdefault(writer, 0)
        if len(self.received) > MAX_WRITERS:  # the oldest writers no socket serves: forgotten
            gone = [w for w, a in self._writer_socket.items() if a not in self.attached]
            for old in gone[:len(self.received) - MAX_WRITERS]:
                del self.received[old], self._writer_socket[old]
                self._forgot_writers = True
        return None if unsure else self.received[writer]

    def type_from(self, writer: str | None, att: Attachment, data: bytes) -> None:
        """Input from `att`, counted for its `writer`; dropped when that writer has since
        moved to another socket (sent again there, as `claim` told it)."""
        if writer is None or writer not in self._writer_socket:  # unnamed, or forgotten:
            self.type(data)  # typed as it comes, and neither counted nor claimed (`claim`)
            return
        if self._writer_socket[writer] is not att:
            return
        self.received[writer] = self.received.get(writer, 0) + len(data)
        self.type(data)

    def type(self, data: bytes) -> None:
        """Input from any attachment: counts as activity and goes to the shell."""
        if self.activity is not None:
            self.activity.touch()
        self.keys.add(data)

    def resize(self, rows: int, cols: int) -> None:
        """The latest resize from any attachment wins; the size the shell already has is
        not applied again (a page re-sends its size on focus and before typing: it would
        add a recorded resize event each time)."""
        if self.tty is not None and not self.ended and (rows, cols) != self.size:
            self.tty.resize(rows, cols)
            self.size = (rows, cols)

    async def _until_watched(self, tty: TtySession) -> bool:
        """While paused: wait for a socket to attach (True), checking every
        `SHELL_POLL_S` whether the shell ended meanwhile (False), since a session that does
        not read would otherwise keep its slot until the idle timeout."""
        while not self._watched.is_set():
            if tty.closed:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watched.wait(), SHELL_POLL_S)
        return True

    async def _drain(self, tty: TtySession) -> None:
        """Read what an ended shell left in the terminal's buffer (a hang-up is reported
        before the buffered output is read); bounded like that buffer."""
        for _ in range(DRAIN_READS):
            data = await tty.read(CHUNK_BYTES)
            if not data:
                return
            self.output_bytes += len(data)
            self.unseen_bytes += len(data)
            self.scrollback.add(data)

    async def pump(self) -> None:
        """Shell output → scrollback and every attachment; waits for a full attachment, and
        while nobody is attached stops reading after `DETACHED_READ_BYTES` (flow control)."""
        assert self.tty is not None
        while True:
            if self.paused and not await self._until_watched(self.tty):
                await self._drain(self.tty)  # its last words: scrollback and recording
                return  # the shell ended while nobody watched: free its slot now
            data = await self.tty.read(CHUNK_BYTES)
            if not data:
                return
            self.output_bytes += len(data)
            if not self.attached:
                self.unseen_bytes += len(data)
            self.scrollback.add(data)
            for att in list(self.attached):
                att.push(data)
            for att in list(self.attached):
                await att.room.wait()


async def _watch(slot: TerminalSlot, activity: Activity, idle_s: int) -> None:
    """Return when the slot is asked to close, or after `idle_s` without input (asking it)."""
    loop = asyncio.get_running_loop()
    while not slot.stop.is_set():
        remaining = activity.last + idle_s - loop.time()
        if remaining <= 0:
            slot.ask_to_close(idle_timeout(idle_s))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(slot.stop.wait(), remaining)


class TerminalSessions:
    """The node's live sessions by (lab, host); their slots are taken from `slots`."""

    def __init__(self, slots: TerminalSlots) -> None:
        self.slots = slots
        self._live: dict[tuple[str, str], TerminalSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def of_lab(self, scenario_id: str) -> list[TerminalSession]:
        """The lab's live (or opening) sessions."""
        return [s for (sid, _), s in self._live.items() if sid == scenario_id]

    async def get_or_open(self, opener: Opener, blocking: Blocking, scenario_id: str,
                          host: str, limit: int, idle_s: int, size: tuple[int, int],
                          ) -> tuple[TerminalSession, bool]:
        """The host's live session, or a new one (True) holding a slot of the lab.

        Raises SlotRefused (lab sealed, or `limit` shells already live) and the engine's
        RuntimeFault when the terminal cannot be made.
        """
        key = (scenario_id, host)
        current = self._live.get(key)
        if current is not None:
            await current.opened.wait()
            if current.tty is not None and not current.ended:
                return current, False
            current = self._live.get(key)
            if current is not None:  # another attach is opening a new one meanwhile
                return await self.get_or_open(opener, blocking, scenario_id, host, limit,
                                              idle_s, size)
        slot = self.slots.acquire(scenario_id, limit)  # sync: no await between check and take
        session = TerminalSession(scenario_id, host, slot)
        self._live[key] = session
        try:
            session.tty = await blocking(opener, scenario_id, host, *size)
            session.size = size
        except BaseException:
            self._forget(session)
            self.slots.release(slot)
            session.opened.set()
            raise
        session.activity = Activity()
        task = asyncio.create_task(self._run(session, blocking, idle_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        session.opened.set()
        return session, True

    def _forget(self, session: TerminalSession) -> None:
        key = (session.scenario_id, session.host)
        if self._live.get(key) is session:
            del self._live[key]

    async def _run(self, session: TerminalSession, blocking: Blocking, idle_s: int) -> None:
        """Keep the session until its shell ends or its slot is asked to close, then close
        it: every attachment is told why, the terminal's processes end, the slot is freed."""
        assert session.tty is not None and session.activity is not None
        tty = session.tty
        try:
            await until_first_ends(session.pump(), session.keys.drain(tty),
                                   _watch(session.slot, session.activity, idle_s))
        finally:
            session.ended = True
            self._forget(session)
            for att in list(session.attached):
                att.end(session.slot.closing)
            try:
                await blocking(tty.close)
            except RuntimeError:  # the executor is gone (shutting down): close right here
                tty.close()
            finally:
                if session.keys.dropped:
                    log.info("terminal of %s: %d bytes of input dropped (not read by the lab)",
                             session.scenario_id, session.keys.dropped)
                self.slots.release(session.slot)

    def close_lab(self, scenario_id: str, closing: Closing) -> list[TerminalSlot]:
        """Ask every session of the lab to end with `closing`; return their slots (their
        ``done`` is set once each terminal is closed)."""
        slots = [s.slot for s in self.of_lab(scenario_id)]
        for slot in slots:
            slot.ask_to_close(closing)
        return slots

    async def close_all(self, wait_s: float = 5.0) -> None:
        """Close every session (the service stops): sockets get a plain close."""
        slots = [s.slot for s in self._live.values()]
        for slot in slots:
            slot.stop.set()
        if slots:
            await asyncio.wait([asyncio.ensure_future(s.done.wait()) for s in slots],
                               timeout=wait_s)
