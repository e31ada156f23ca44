"""The terminal socket answers a ping with a pong (the lab page's heartbeat and its pacing of
a long paste): at once, in order with the keystrokes around it, with the room left in the
session's input queue, even while the shell reads nothing."""

from __future__ import annotations

import asyncio
import json

from forge.services.orchestrator.terminal import _pump_in
from forge.services.orchestrator.terminal_io import Keystrokes


class Session:
    def __init__(self) -> None:
        self.keys = Keystrokes(limit=100)

    def type(self, data: bytes) -> None:
        self.keys.add(data)  # nothing drains it: a program that does not read

    def resize(self, rows: int, cols: int) -> None:
        pass


class Socket:
    def __init__(self, frames: list[dict[str, object]]) -> None:
        self.frames = frames
        self.sent: list[str] = []

    async def receive(self) -> dict[str, object]:
        return self.frames.pop(0)

    async def send_text(self, text: str) -> None:
        self.sent.append(text)


def test_a_ping_is_answered_with_its_id_and_the_input_room_left() -> None:
    async def main() -> list[dict[str, object]]:
        socket = Socket([
            {"type": "websocket.receive", "text": '{"type": "ping", "id": 1}'},
            {"type": "websocket.receive", "bytes": b"x" * 60},
            {"type": "websocket.receive", "text": '{"type": "ping", "id": 2}'},
            {"type": "websocket.receive", "bytes": b"y" * 60},
            {"type": "websocket.receive", "text": '{"type": "ping", "id": "evil"}'},
            {"type": "websocket.disconnect"}])
        await _pump_in(socket, Session())  # type: ignore[arg-type]
        return [json.loads(text) for text in socket.sent]

    assert asyncio.run(main()) == [
        {"type": "pong", "id": 1, "room": 100},
        {"type": "pong", "id": 2, "room": 40},
        {"type": "pong", "id": None, "room": 0}]  # full: the rest of the paste would be lost


def test_a_size_the_shell_already_has_is_not_applied_again() -> None:
    """Pages re-send their size on focus and before typing (the latest size wins between a
    desktop and a phone): only a change reaches the terminal and its recording."""
    from forge.services.orchestrator.terminal_sessions import TerminalSession

    class Tty:
        def __init__(self) -> None:
            self.sizes: list[tuple[int, int]] = []

        def resize(self, rows: int, cols: int) -> None:
            self.sizes.append((rows, cols))

    session = TerminalSession("scn-0000000000000000", "learner", object())  # type: ignore[arg-type]
    tty = Tty()
    session.tty, session.size = tty, (24, 80)  # type: ignore[assignment]
    for size in ((24, 80), (30, 100), (30, 100), (20, 40), (30, 100)):
        session.resize(*size)
    assert tty.sizes == [(30, 100), (20, 40), (30, 100)]


def test_input_late_on_a_pages_old_socket_is_not_typed_twice() -> None:
    """A page whose link hung sends again, on its new socket, what the session had not
    received (the attached frame's and each pong's "received", counted per page terminal
    over its sockets); what then still arrives on the old socket is dropped: typed once."""
    from forge.services.orchestrator.terminal import Writer
    from forge.services.orchestrator.terminal_output import Attachment
    from forge.services.orchestrator.terminal_sessions import TerminalSession

    session = TerminalSession("scn-0000000000000000", "learner", object())  # type: ignore[arg-type]
    page = "page-terminal-1"

    async def main() -> list[dict[str, object]]:
        old, new = Attachment(), Attachment()
        assert session.claim(page, old) == 0
        first = Socket([{"type": "websocket.receive", "bytes": b"ls\r"},
                        {"type": "websocket.receive", "text": '{"type": "ping", "id": 1}'},
                        {"type": "websocket.disconnect"}])
        await _pump_in(first, session, writer=Writer(old, page, 0))  # type: ignore[arg-type]
        assert session.claim(page, new) == 3  # the new socket's attached frame says 3
        late = Socket([{"type": "websocket.receive", "bytes": b"pwd\r"},
                       {"type": "websocket.disconnect"}])
        await _pump_in(late, session, writer=Writer(old, page, 0))  # type: ignore[arg-type]
        again = Socket([{"type": "websocket.receive", "bytes": b"pwd\r"},
                        {"type": "websocket.receive", "text": '{"type": "ping", "id": 2}'},
                        {"type": "websocket.disconnect"}])
        await _pump_in(again, session, writer=Writer(new, page, 3))  # type: ignore[arg-type]
        return [json.loads(text) for text in first.sent + again.sent]

    pongs = asyncio.run(main())
    assert [p["received"] for p in pongs] == [3, 7]
    assert bytes(session.keys.pending) == b"ls\rpwd\r"
    # Many pages come and go (reloads): those no socket serves are forgotten, never the
    # writer of a socket still attached.
    session.attached.append(session._writer_socket[page])
    for n in range(70):
        session.claim(f"page-gone-{n:04d}", Attachment())
    assert len(session.received) <= 65 and session.received[page] == 7


def test_a_writer_the_session_may_have_forgotten_is_given_no_count() -> None:
    """A session keeps the counts of MAX_WRITERS writers. A page away for a while (its
    laptop asleep) whose writer was forgotten meanwhile, other pages of the learner coming
    and going, was told on its return that the shell had received 0 of its bytes: it sent
    again what the shell had already run ("echo once" typed twice). Once the session has
    forgotten a writer, one it does not know gets no count (its page says what may not
    have reached the shell); a new writer before that still gets 0."""
    from forge.services.orchestrator.terminal_sessions import MAX_WRITERS, TerminalSession
    from forge.services.orchestrator.terminal_slots import TerminalSlot

    async def main() -> tuple[int | None, int | None, bytes]:
        sid = "scn-0000000000000000"
        session = TerminalSession(sid, "learner", TerminalSlot(sid))
        away, _ = session.attach()
        first = session.claim("page-away-1", away)
        session.type_from("page-away-1", away, b"echo once\r")  # ran; no pong came back
        session.detach(away)
        for n in range(MAX_WRITERS):  # the learner's other pages, loaded and left
            other, _ = session.attach()
            session.claim(f"page-other-{n:04d}", other)
            session.detach(other)
        back, _ = session.attach()
        return first, session.claim("page-away-1", back), bytes(session.keys.pending)

    assert asyncio.run(main()) == (0, None, b"echo once\r")  # was (0, 0, …): sent again
