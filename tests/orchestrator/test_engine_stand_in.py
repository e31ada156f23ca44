"""The runtime engine is whatever the factory returns: a test stand-in engine, registered
the way a real one is (one entry in the engine registry, imported lazily), runs labs for the
real orchestrator app and for `forge runtime …`, terminal included.

`StandInRuntime` is a TEST STAND-IN, not an engine: it keeps labs in memory and its
terminal answers each input with ``STAND-IN:`` and the input upper-cased, so the test can
tell its bytes from a shell's. Real orchestrator (uvicorn), nats-server and SQLite.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner
from websockets.sync.client import connect

from forge.bus import NatsServer
from forge.cli.runtime import app as runtime_cli
from forge.config import ConfigError, Settings, load_settings
from forge.config.runtime_engines import ENGINES
from forge.runtime.base import (
    ExecResult,
    LabInfo,
    LabNotFound,
    LabSpec,
    Runtime,
    TerminalClosed,
    TtySession,
)
from forge.runtime.factory import make_runtime
from forge.services.orchestrator.app import build_app
from forge.tokens import TERMINAL, mint_token

from ..live_server import live_server
from ..services.conftest import prod_environ
from .conftest import FAST, Orch, spawn_event

NAME = "test-stand-in"
LABS: dict[str, LabInfo] = {}  # the stand-in's "backend", shared by every instance
CREATED: list[LabSpec] = []


class StandInTerminal(TtySession):
    """TEST STAND-IN terminal: an in-memory async byte stream that echoes input upper-cased."""

    def __init__(self) -> None:
        self._out: asyncio.Queue[bytes] = asyncio.Queue()
        self._closed = False

    async def read(self, max_bytes: int = 65536) -> bytes:
        return b"" if self._closed else (await self._out.get())[:max_bytes]

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise TerminalClosed("stand-in terminal is closed")
        self._out.put_nowait(b"STAND-IN:" + data.upper())

    def resize(self, rows: int, cols: int) -> None:
        return None

    def close(self) -> None:
        self._closed = True
        self._out.put_nowait(b"")

    @property
    def closed(self) -> bool:
        return self._closed


class StandInRuntime(Runtime):
    """TEST STAND-IN engine: labs are entries in `LABS`; exec and checks succeed empty."""

    def check(self) -> builtins.list[str]:
        return []

    def create(self, spec: LabSpec) -> LabInfo:
        CREATED.append(spec)
        LABS[spec.lab_id] = LabInfo(spec.lab_id, {h.name: {} for h in spec.hosts}, "running")
        return LABS[spec.lab_id]

    def destroy(self, lab_id: str) -> None:
        LABS.pop(lab_id, None)

    def list(self) -> builtins.list[LabInfo]:
        return builtins.list(LABS.values())

    def exec(self, lab_id: str, host: str, argv: builtins.list[str] | None = None,
             shell: str | None = None, *, timeout: float = 30.0, stdin: bytes | None = None,
             max_output: int = 1 << 20) -> ExecResult:
        empty = hashlib.sha256(b"").hexdigest()
        return ExecResult(0, b"", b"", empty, empty, 0, 0, False, 0.0, False)

    def tty(self, lab_id: str, host: str, rows: int = 24, cols: int = 80) -> TtySession:
        if host not in LABS.get(lab_id, LabInfo(lab_id, {}, "running")).hosts:
            raise LabNotFound(f"no host {host} in stand-in lab {lab_id}")
        return StandInTerminal()

    def seal(self, lab_id: str) -> int:
        return 0

    def run_check(self, lab_id: str, host: str, argv: builtins.list[str], *,
                  stdin: bytes | None = None, timeout: float = 30.0,
                  max_output: int = 1 << 20) -> ExecResult:
        return self.exec(lab_id, host, argv)


def build_stand_in(settings: Settings) -> StandInRuntime:
    """The registry entry's builder, called by `make_runtime` like a real engine's."""
    return StandInRuntime()


@pytest.fixture
def stand_in_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    LABS.clear()
    CREATED.clear()
    monkeypatch.setitem(ENGINES, NAME, f"{__name__}:build_stand_in")
    yield
    LABS.clear()


def test_an_engine_missing_from_the_registry_is_refused_naming_the_choices(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(prod_environ(tmp_path, FORGE_RUNTIME_ENGINE=NAME))
    assert "FORGE_RUNTIME_ENGINE must be one of: local" in refused.value.problems


@pytest.mark.usefixtures("sqlite_only_store")
def test_the_orchestrator_runs_labs_and_terminals_on_the_engine_the_factory_returns(
        tmp_path: Path, nats: NatsServer, stand_in_registered: None) -> None:
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_RUNTIME_ENGINE=NAME))
    assert isinstance(make_runtime(settings), StandInRuntime)
    app = build_app(settings, reaper_interval_s=0.5, consumer_options=FAST)  # no runtime=
    state = app.state.orchestrator
    assert isinstance(state.runtime, StandInRuntime)
    with live_server(app) as url:
        orch = Orch(url, settings, state, nats, state.runtime)
        event = spawn_event(settings)
        sid = event["scenario_id"]
        orch.publish("forge.spawn.requested", event)
        orch.wait_state(sid, "running")
        assert [spec.lab_id for spec in CREATED] == [sid]
        assert "learner" in LABS[sid].hosts

        token = mint_token(settings.sat, TERMINAL, {"scenario_id": sid, "sub": "alice",
                                                    "tenant_id": "acme", "host": "learner"})
        ws_url = url.replace("http://", "ws://") + f"/internal/scenarios/{sid}/tty"
        with connect(ws_url, additional_headers={"x-forge-terminal": token},
                     open_timeout=30) as ws:
            attached = json.loads(ws.recv(timeout=30))  # a fresh terminal session
            assert (attached["type"], attached["new"]) == ("attached", True)
            ws.send(b"hello engine\n")
            assert ws.recv(timeout=30) == b"STAND-IN:HELLO ENGINE\n"

    runner = CliRunner()
    env = {**prod_environ(tmp_path / "storage", **nats.client_env()),
           "FORGE_RUNTIME_ENGINE": NAME}
    listed = runner.invoke(runtime_cli, ["list"], env=env)
    assert listed.exit_code == 0 and f"{sid}  running" in listed.output
    as_json = runner.invoke(runtime_cli, ["list", "--json"], env=env)
    assert [(lab["lab_id"], lab["state"]) for lab in json.loads(as_json.stdout)["labs"]] == [
        (sid, "running")]
    cleanup = runner.invoke(runtime_cli, ["cleanup"], env=env)
    assert cleanup.exit_code == 2
    assert "orphan cleanup is not supported by the StandInRuntime engine" in cleanup.output
    destroyed = runner.invoke(runtime_cli, ["destroy", sid], env=env)
    assert destroyed.exit_code == 0 and sid not in LABS
