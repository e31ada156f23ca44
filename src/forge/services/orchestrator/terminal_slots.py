"""Who holds a terminal in which lab: the per-lab cap, sealing at grading, the reasons to close.

Every live (or opening) terminal session of a lab (terminal_sessions: one shell per host,
whatever number of sockets are attached to it) holds a slot here. A slot is taken synchronously,
before the PTY is created and without an ``await`` between the count and the take, so
concurrent opens cannot race past the cap; it is released when the session's terminal is
closed, however the session ends. Sealing a lab (grading started) refuses
every later slot and tells every holder to close. The registry lives in one orchestrator
process, which is the one that owns the lab's runtime and therefore all of its PTYs.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from forge.services.common.relay import SIGNED_OUT_CODE

# Close codes in the private range (4000-4999), one per reason, paired with an error name.
LIMIT_CODE, IDLE_CODE, SEALED_CODE, NOT_RUNNING_CODE = 4429, 4408, 4410, 4409
_REASON_BYTES = 123  # the WebSocket protocol's cap on a close reason


@dataclass(frozen=True)
class Closing:
    """Why a terminal is refused or closed: close code, error name and a message for people."""

    code: int
    error: str
    message: str

    def body(self) -> dict[str, str]:
        """The control frame sent before the close: the usual error body plus its type."""
        return {"type": "closed", "error": self.error, "message": self.message}

    def reason(self) -> str:
        """The message cut to what a WebSocket close frame can carry."""
        raw = self.message.encode("utf-8")[:_REASON_BYTES]
        return raw.decode("utf-8", "ignore")


def limit_reached(limit: int) -> Closing:
    """Refusal when the lab already has `limit` terminals open."""
    return Closing(LIMIT_CODE, "terminal_limit",
                   f"This lab already has {limit} open terminals, the most your plan allows. "
                   "Close one and try again.")


def idle_timeout(seconds: int) -> Closing:
    """Closing a terminal that had no input for `seconds`."""
    minutes = f"{seconds // 60} minutes" if seconds >= 120 else f"{seconds} seconds"
    return Closing(IDLE_CODE, "terminal_idle",
                   f"Terminal closed after {minutes} without input. Reconnect to open a "
                   "new one (the lab and your files are as you left them).")


def sealed(reason: str) -> Closing:
    """Closing every terminal of a lab whose grading started (`reason`: why, e.g. submitted)."""
    why = " ".join(reason.split())[:40] or "grading"
    return Closing(SEALED_CODE, "lab_sealed",
                   f"The lab is being graded ({why}); its terminals are closed.")


def not_running(state: str) -> Closing:
    """Refusal for a lab that is not (or no longer) running."""
    return Closing(NOT_RUNNING_CODE, "lab_not_running",
                   f"The lab is {state}, not running; terminals are available only while "
                   "it runs.")


def time_up() -> Closing:
    """Refusal, or closing, of the terminals of a lab whose end time has passed: it is
    graded as it stands at the reaper's next round, so nothing more is typed into it."""
    return Closing(NOT_RUNNING_CODE, "lab_not_running",
                   "The lab has reached its end time; terminals are available only while "
                   "it runs.")


def signed_out() -> Closing:
    """Closing every terminal of a learner who signed out."""
    return Closing(SIGNED_OUT_CODE, "signed_out",
                   "You signed out, so this terminal was closed. Sign in again to open it.")


class SlotRefused(Exception):
    """No slot: the lab is at its cap or sealed. ``closing`` says which, for the client."""

    def __init__(self, closing: Closing) -> None:
        super().__init__(closing.message)
        self.closing = closing


@dataclass(eq=False)
class TerminalSlot:
    """One terminal's hold on its lab. ``stop`` is set (with ``closing``) to ask it to close;
    ``done`` is set by the holder once its PTY is closed and the slot released."""

    scenario_id: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    closing: Closing | None = None

    def ask_to_close(self, closing: Closing) -> None:
        """Record why (first reason wins) and wake the holder."""
        if self.closing is None:
            self.closing = closing
        self.stop.set()


class TerminalSlots:
    """Slots per lab and the set of sealed labs (bounded: a sealed lab never runs again, so
    forgetting the oldest seals is safe once its state has left ``running`` in the store)."""

    def __init__(self, remember_sealed: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, list[TerminalSlot]] = {}
        self._sealed: OrderedDict[str, Closing] = OrderedDict()
        self._remember = remember_sealed

    def acquire(self, scenario_id: str, limit: int) -> TerminalSlot:
        """Take a slot, or raise SlotRefused (sealed lab, or `limit` slots already held)."""
        with self._lock:
            closing = self._sealed.get(scenario_id)
            if closing is not None:
                raise SlotRefused(closing)
            held = self._open.setdefault(scenario_id, [])
            if len(held) >= limit:
                raise SlotRefused(limit_reached(limit))
            slot = TerminalSlot(scenario_id)
            held.append(slot)
            return slot

    def release(self, slot: TerminalSlot) -> None:
        """Give the slot back (idempotent) and mark it done."""
        with self._lock:
            held = self._open.get(slot.scenario_id, [])
            if slot in held:
                held.remove(slot)
            if not held:
                self._open.pop(slot.scenario_id, None)
        slot.done.set()

    def held(self, scenario_id: str) -> int:
        """How many terminals of the lab are open or opening."""
        with self._lock:
            return len(self._open.get(scenario_id, ()))

    def seal(self, scenario_id: str, closing: Closing) -> list[TerminalSlot]:
        """Refuse new slots for the lab from now on; ask every holder to close; return them."""
        with self._lock:
            self._sealed[scenario_id] = closing
            self._sealed.move_to_end(scenario_id)
            while len(self._sealed) > self._remember:
                self._sealed.popitem(last=False)
            holders = list(self._open.get(scenario_id, ()))
        for slot in holders:
            slot.ask_to_close(closing)
        return holders

    def is_sealed(self, scenario_id: str) -> bool:
        """True once the lab was sealed (and not yet forgotten)."""
        with self._lock:
            return scenario_id in self._sealed
