"""What a running `forge up` tells operator commands about its NATS through its storage
lock (`forge.stack.lock.note_bus` / `running_bus`): only while it holds the lock, only
loopback URLs, and never by taking the lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer

from forge.bus.tls import BusTls
from forge.cli.context import bus_settings
from forge.config import load_settings
from forge.stack.lock import CLEANUP, LOCK_NAME, StorageLock, StorageLocked, running_bus

URL = "nats://127.0.0.1:41999"


def _read_elsewhere(root: Path) -> str:
    """running_bus(root) as another process sees it (a command run beside `forge up`)."""
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from forge.stack.lock import running_bus
        print(running_bus(Path(sys.argv[1])).get("NATS_URL", "-"))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                         text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_a_live_holder_names_its_nats_and_a_dead_one_names_nothing(tmp_path: Path) -> None:
    lock = StorageLock.acquire(tmp_path)
    try:
        assert running_bus(tmp_path) == {}  # no NATS recorded yet
        lock.note_bus({"NATS_URL": URL, "FORGE_NATS_REPLICAS": "1", "OTHER": "x"})
        assert _read_elsewhere(tmp_path) == URL
        assert running_bus(tmp_path) == {"NATS_URL": URL, "FORGE_NATS_REPLICAS": "1"}
        # Reading took no lock: the holder's record (pid first) is as it wrote it.
        first = (tmp_path / LOCK_NAME).read_text().splitlines()[0]
        assert first.isdigit()
    finally:
        lock.release()
    # The file still names the URL, but no process holds the root: its port may be anyone's.
    assert URL in (tmp_path / LOCK_NAME).read_text()
    assert _read_elsewhere(tmp_path) == "-"
    StorageLock.acquire(tmp_path).release()  # and the next forge up starts as ever


def test_only_a_forge_up_and_only_loopback_urls_are_believed(tmp_path: Path) -> None:
    for holder, url, believed in [
            ("forge up", "nats://10.0.0.5:4222", False),
            ("forge up", "nats://user:pw@127.0.0.1:4222", False),
            ("forge up", "tls://127.0.0.1:4222", True),
            ("forge up", "tls://127.0.0.1:4222,nats://192.0.2.1:4223", False),
            ("forge up", "nats://127.0.0.1:4222,nats://127.0.0.1:4223", True),
            ("forge up", "nats://127.0.0.1:4222,nats://192.0.2.1:4223", False),
            (CLEANUP, URL, False)]:
        root = tmp_path / str(abs(hash((holder, url))))
        lock = StorageLock.acquire(root, holder)
        try:
            lock.note_bus({"NATS_URL": url})
            found = running_bus(root)
            assert (found.get("NATS_URL") == url) is believed, (holder, url)
            # A forge up whose NATS speaks TLS: its CA is the one under this root, always.
            assert found.get("FORGE_NATS_CA") == (
                str(root / "nats-tls" / "ca.pem") if believed and url.startswith("tls")
                else None), found
        finally:
            lock.release()


def test_a_missing_or_planted_lock_file_names_nothing(tmp_path: Path) -> None:
    assert running_bus(tmp_path / "none") == {}
    (tmp_path / LOCK_NAME).write_text(f"1\nforge up\nNATS_URL={URL}\n")  # pid 1 holds no flock
    assert running_bus(tmp_path) == {}


def test_a_command_never_falls_back_to_the_default_port_when_the_bus_cannot_be_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A `forge up` whose NATS speaks TLS, its CA unreadable: the command stops and says
    why. Taking the default nats://127.0.0.1:4222 instead sent the scoreboard's password,
    in clear, to whoever held that port."""
    monkeypatch.delenv("NATS_URL", raising=False)
    settings = load_settings({"STORAGE_ROOT": str(tmp_path)})
    lock = StorageLock.acquire(tmp_path)
    try:
        lock.note_bus({"NATS_URL": "tls://127.0.0.1:41999"})
        with pytest.raises(typer.Exit) as ended:
            bus_settings(settings)
        assert ended.value.exit_code == 1
        assert "FORGE_NATS_CA cannot be read" in capsys.readouterr().err
        # With its CA in place the command takes that bus and trusts that CA only.
        tls = BusTls.generate(tmp_path / "nats-tls")
        found = bus_settings(settings)
        assert found.nats_url == "tls://127.0.0.1:41999"
        assert found.nats_ca == tls.ca_file.read_text()
    finally:
        lock.release()


def test_a_record_a_restore_copied_over_is_written_again_and_the_holder_named(
        tmp_path: Path) -> None:
    lock = StorageLock.acquire(tmp_path)
    try:
        lock.note_bus({"NATS_URL": URL})
        # `cp -a backup/. root/` while forge up runs: same file, a dead holder's record
        (tmp_path / LOCK_NAME).write_text("999999\nforge up\nNATS_URL=tls://127.0.0.1:4222\n")
        with pytest.raises(StorageLocked) as refused:  # the kernel's holder, not the file's
            StorageLock.acquire(tmp_path)
        assert str(refused.value) == f"another forge up (pid {os.getpid()}) holds {tmp_path}"
        assert running_bus(tmp_path) == {}  # a dead pid's ports are never believed
        assert lock.keep_record()
        assert running_bus(tmp_path) == {"NATS_URL": URL}
        assert not lock.keep_record()  # nothing changed since: nothing written
    finally:
        lock.release()


def test_a_lock_file_a_restore_put_in_its_place_is_locked_again(tmp_path: Path) -> None:
    lock = StorageLock.acquire(tmp_path)
    try:
        lock.note_bus({"NATS_URL": URL})
        planted = tmp_path / "restored"  # `tar x` of a backup: a new file at the path
        planted.write_text("999999\nforge up\n")
        planted.replace(tmp_path / LOCK_NAME)
        assert lock.keep_record()
        with pytest.raises(StorageLocked):  # a second forge up is refused, as before
            StorageLock.acquire(tmp_path)
        assert running_bus(tmp_path) == {"NATS_URL": URL}
        (tmp_path / LOCK_NAME).unlink()  # deleted: made again, and locked
        assert lock.keep_record()
        with pytest.raises(StorageLocked):
            StorageLock.acquire(tmp_path)
        assert not lock.keep_record()
    finally:
        lock.release()
    StorageLock.acquire(tmp_path).release()
