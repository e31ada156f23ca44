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
