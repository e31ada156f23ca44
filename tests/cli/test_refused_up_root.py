"""A refused `forge up` and the storage root: it takes the root's lock before it writes
anything there, removes only what it wrote itself, and says a generated key exists only
once it is kept.

Before, `forge up` wrote dev secrets and a signing key before taking the lock (a start
racing another one wrote into the root that one held), removed the root it made even when
another command (`forge apikey create` during a minutes-long image build) had written
its rows into the database there, and printed "dev: generated verdict signing key" just
before "removed the storage root it had created". In process (CliRunner), no platform.
"""

from __future__ import annotations

import io
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from forge.cli.new_root import NewRoot
from forge.cli.up import prepare
from forge.config.settings import load_settings
from forge.identity.apikeys import verify_api_key
from forge.stack.lock import LOCK_NAME, UP, StorageLock
from forge.store import Database, upgrade

from ..live_server import distinct_ports
from .test_storage_option import forge

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # the root's own SQLite store


@pytest.fixture
def handlers() -> Iterator[None]:
    """`forge up` in process sets SIGINT/SIGTERM handlers; the test's are put back."""
    kept = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, kept[0])
        signal.signal(signal.SIGTERM, kept[1])


def up_args(storage: Path, ports: list[int]) -> list[str]:
    return ["--storage", str(storage), "up", "--spawn-port", str(ports[0]),
            "--orchestrator-port", str(ports[1]), "--scoreboard-port", str(ports[2]),
            "--nats-port", str(ports[3])]


def test_a_held_root_is_refused_before_anything_is_written_to_it(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    other = StorageLock.acquire(storage, UP)  # another forge up, just starting
    try:
        code, out, err = forge({"FORGE_DB_URL": None}, *up_args(storage, distinct_ports(4)))
    finally:
        other.release()
    assert code == 1, (out, err)
    assert "forge up: another forge up (pid " in out + err
    # No dev secrets, signing key or database written into the root another start holds.
    assert sorted(p.name for p in storage.iterdir()) == [LOCK_NAME]


@pytest.mark.usefixtures("handlers")
def test_a_refused_start_says_no_generated_key_it_removed(tmp_path: Path) -> None:
    storage, templates = tmp_path / "storage", tmp_path / "templates"
    templates.mkdir()  # no template, no image to build
    ports = distinct_ports(4)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[0]))
        squatter.listen()
        code, out, err = forge({"FORGE_DB_URL": None, "FORGE_TEMPLATE_DIR": str(templates)},
                               *up_args(storage, ports))
    assert code == 1, (out, err)
    assert f"spawn: cannot listen on 127.0.0.1:{ports[0]}: already in use" in out + err
    assert f"removed the storage root it had created: {storage}" in out + err
    assert not storage.exists()
    assert "generated verdict signing key" not in out + err  # it was removed with the root


def test_a_refused_start_keeps_a_root_another_command_wrote_to(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = tmp_path / "storage"
    monkeypatch.setenv("FORGE_ENV", "dev")
    monkeypatch.delenv("FORGE_DB_URL", raising=False)
    made = NewRoot()
    # forge up's own writes, as it makes them: dev secrets and key, then the database.
    prepare(None, storage, made=made, hold=True)
    made.writing()
    upgrade(f"sqlite:///{storage / 'forge.db'}")
    made.settle()
    # While it builds images, the operator creates an API key on this root.
    code, out, err = forge({"FORGE_DB_URL": None}, "--storage", str(storage), "apikey",
                           "create", "--tenant", "acme", "--subject", "alice")
    assert code == 0, err
    plaintext = dict(line.split(maxsplit=1) for line in out.splitlines())["api_key"]
    said = io.StringIO()
    made.remove(Console(file=said, width=400))  # the image build failed: refused
    assert made.lock is not None
    made.lock.release()
    key_line, kept_line = said.getvalue().splitlines()
    assert key_line.startswith("dev: generated verdict signing key ")  # kept: said now
    assert kept_line.startswith(f"forge up: not started; kept the storage root {storage} "
                                "as it is: another command wrote to what this start had "
                                "created (forge.db")
    db = Database(load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(storage)}).db_url)
    assert verify_api_key(db, plaintext) is not None  # the operator's key is still there
