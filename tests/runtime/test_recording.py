"""The terminal recorder on its own: asciicast v2 lines, UTF-8 split across reads, resizes,
the size cap's marker, private files. The wrapped session is a scripted byte stream (the
recorder only sees `TtySession`'s API); the real lab terminal is in
tests/security/test_terminal_recording.py."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from forge.runtime import recording
from forge.runtime.base import RuntimeFault, TtySession
from forge.runtime.recording import (
    RecordingTty,
    discard_recordings,
    read_recordings,
    recorded_tty,
    recordings_dir,
)
from forge_verify.recordings import recording_problem


class Scripted(TtySession):
    """Output handed out in the given chunks; input and sizes kept."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.typed, self.sizes, self._closed = list(chunks), b"", [], False

    async def read(self, max_bytes: int = 65536) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    async def write(self, data: bytes) -> None:
        self.typed += data

    def resize(self, rows: int, cols: int) -> None:
        self.sizes.append((rows, cols))

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed


class Engine:
    """A runtime whose `tty` hands out the next scripted session."""

    def __init__(self, *sessions: Scripted) -> None:
        self.sessions = list(sessions)

    def tty(self, lab_id: str, host: str, rows: int = 24, cols: int = 80) -> TtySession:
        return self.sessions.pop(0)


def _lines(data: bytes) -> list[object]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_events_keep_a_character_split_across_reads_and_record_resizes(tmp_path: Path) -> None:
    """'é' (0xC3 0xA9) arrives in two reads; it is recorded once, whole; input and a resize
    are events too, and the file is a valid asciicast v2 recording only its service reads."""
    inner = Scripted([b"caf\xc3", b"\xa9\r\n$ "])
    session = recorded_tty(Engine(inner), tmp_path)("scn-0000000000000001", "learner", 24, 80)

    async def use() -> None:
        assert await session.read() == b"caf\xc3"
        assert await session.read() == b"\xa9\r\n$ "
        await session.write("ls ü\r".encode())
        session.resize(40, 120)

    asyncio.run(use())
    session.close()
    assert inner.typed == "ls ü\r".encode() and inner.sizes == [(40, 120)] and inner.closed
    casts = read_recordings(tmp_path, "scn-0000000000000001")
    assert list(casts) == ["learner.1.cast"]
    header, *events = _lines(casts["learner.1.cast"])
    assert isinstance(header, dict)
    assert (header["version"], header["width"], header["height"]) == (2, 80, 24)
    assert [e[1:] for e in events] == [  # type: ignore[index]
        ["o", "caf"], ["o", "é\r\n$ "], ["i", "ls ü\r"], ["r", "120x40"]]
    assert recording_problem("recordings/learner.1.cast", casts["learner.1.cast"]) is None
    folder = recordings_dir(tmp_path, "scn-0000000000000001")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "learner.1.cast").stat().st_mode) == 0o600


def test_the_cap_writes_one_marker_and_the_terminal_keeps_working(tmp_path: Path) -> None:
    """Past the cap the recording ends with a truncation marker; reads still return output."""
    big = [b"x" * 600] * 5
    engine = Engine(Scripted(big))
    raw = recorded_tty(engine, tmp_path)("scn-0000000000000002", "pc", 24, 80)
    assert isinstance(raw, RecordingTty)
    raw._cap = 1500  # a small cap for the test; the default is RECORDING_CAP_BYTES

    async def use() -> list[bytes]:
        return [await raw.read() for _ in range(5)]

    assert asyncio.run(use()) == big
    raw.close()
    events = _lines(read_recordings(tmp_path, "scn-0000000000000002")["pc.1.cast"])[1:]
    kinds = [e[1] for e in events]  # type: ignore[index]
    assert kinds == ["o", "m"]
    assert "truncated" in events[-1][2]  # type: ignore[index]


def test_sessions_get_their_own_files_and_a_symlinked_folder_is_refused(tmp_path: Path
                                                                        ) -> None:
    """Two sessions on one host are two files; lab end removes them; a recordings directory
    swapped for a symlink gets no terminal (fail closed) and nothing is written through it."""
    engine = Engine(Scripted([]), Scripted([]))
    for _ in range(2):
        recorded_tty(engine, tmp_path)("scn-0000000000000003", "learner", 24, 80).close()
    assert sorted(read_recordings(tmp_path, "scn-0000000000000003")) == [
        "learner.1.cast", "learner.2.cast"]
    discard_recordings(tmp_path, "scn-0000000000000003")
    assert read_recordings(tmp_path, "scn-0000000000000003") == {}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    recordings_dir(tmp_path, "scn-0000000000000004").parent.mkdir(parents=True)
    os.symlink(elsewhere, recordings_dir(tmp_path, "scn-0000000000000004"))
    with pytest.raises(RuntimeFault, match="recording"):
        recorded_tty(Engine(Scripted([])), tmp_path)("scn-0000000000000004", "learner", 24, 80)
    assert list(elsewhere.iterdir()) == []


def test_an_id_that_is_not_a_scenario_id_reaches_no_folder(tmp_path: Path) -> None:
    """A lab id that climbs out of the scenarios folder gets no terminal, and nothing is
    made, read or removed outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "learner.1.cast").write_text("{}")
    climb = "../outside/.."
    with pytest.raises(RuntimeFault, match="not a scenario id"):
        recorded_tty(Engine(Scripted([])), tmp_path / "root")(climb, "learner", 24, 80)
    for call in (read_recordings, discard_recordings):
        with pytest.raises(ValueError):
            call(tmp_path / "root", climb)
    assert [p.name for p in outside.iterdir()] == ["learner.1.cast"]
    assert not (tmp_path / "root").exists()


def test_output_is_written_in_batches_and_close_writes_the_rest_under_the_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell printing in many small reads costs a write per batch, not per read: a few KB
    of events wait in memory (the file still holds only its header); at close every event is
    there, and past the cap the marker still ends the file within the cap."""
    monkeypatch.setattr(recording, "FLUSH_INTERVAL_S", 3600.0)  # batches by size only here
    chunks = [f"line {n:04d}\n".encode() for n in range(2000)]
    raw = recorded_tty(Engine(Scripted(chunks)), tmp_path)("scn-0000000000000004", "pc", 24, 80)
    assert isinstance(raw, RecordingTty)
    raw._cap = 60_000  # a small cap for the test; the default is RECORDING_CAP_BYTES

    async def use(count: int) -> None:
        for _ in range(count):
            await raw.read()

    path = recordings_dir(tmp_path, "scn-0000000000000004") / "pc.1.cast"
    header_only = path.stat().st_size
    asyncio.run(use(300))  # about 10 KB of events: under one batch, still buffered
    assert path.stat().st_size == header_only
    asyncio.run(use(len(chunks) - 300))
    raw.close()
    data = read_recordings(tmp_path, "scn-0000000000000004")["pc.1.cast"]
    assert header_only < len(data) <= 60_000
    events = _lines(data)[1:]
    outputs = [e[2] for e in events if e[1] == "o"]  # type: ignore[index]
    assert outputs == [c.decode() for c in chunks[:len(outputs)]] and len(outputs) > 1000
    assert events[-1][1] == "m"  # type: ignore[index]
    assert recording_problem("recordings/pc.1.cast", data) is None


def test_what_was_typed_is_on_disk_at_once_and_before_the_session_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batching must not keep the learner's last commands only in memory: a keystroke (with
    the output before it) and a resize are written at once, and close writes the rest before
    ending the session, since grading reads the file as soon as the session is seen ended."""
    monkeypatch.setattr(recording, "FLUSH_INTERVAL_S", 3600.0)
    path = recordings_dir(tmp_path, "scn-0000000000000005") / "pc.1.cast"

    class Ending(Scripted):
        def close(self) -> None:  # what grading would read the moment the session ends
            self.seen_at_close = path.read_bytes()
            super().close()

    inner = Ending([b"$ "])
    raw = recorded_tty(Engine(inner), tmp_path)("scn-0000000000000005", "pc", 24, 80)

    async def use() -> None:
        await raw.read()
        await raw.write(b"cat /etc/flag\r")
    asyncio.run(use())
    on_disk = [e[1:] for e in _lines(path.read_bytes())[1:]]  # type: ignore[index]
    assert on_disk == [["o", "$ "], ["i", "cat /etc/flag\r"]]
    raw.resize(40, 100)
    assert _lines(path.read_bytes())[-1][1:] == ["r", "100x40"]  # type: ignore[index]

    async def more() -> None:
        inner.chunks.append(b"FLAG\r\n")
        await raw.read()
    asyncio.run(more())
    raw.close()
    assert _lines(inner.seen_at_close)[-1][1:] == ["o", "FLAG\r\n"]  # type: ignore[index]
