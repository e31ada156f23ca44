"""Terminals per lab are capped, idle ones close, and grading closes them all (issue 12, item 5).

Attack: one learner opened 40 PTYs in one lab (each a login shell and its processes), kept
them forever, and kept typing in them while the lab was being graded. Now a lab has at most
its plan's `max_terminals` live shells (terminal sessions, one per host, across every tab and
device; sockets reattach to them and never count twice), a session takes at most 4 sockets,
a session without input for the plan's `terminal_idle_seconds` is closed, and
`close_terminals` (called when grading starts) closes every session of the lab, kills what
they started, and refuses new ones. Refusals and closes say why: a JSON
`{"type": "closed", "error", "message"}` frame, then a 44xx close code.

Real spawn_service + orchestrator (uvicorn), nats-server, SQLite and the local lab runtime.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from forge.bus import NatsServer
from forge.config import load_settings
from forge.content import content_path
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.runtime.local import LocalRuntime
from forge.services.orchestrator.app import build_app as build_orchestrator
from forge.services.orchestrator.state import OrchestratorState
from forge.services.orchestrator.terminal import close_terminals
from forge.services.spawn.app import build_app as build_spawn
from forge.tokens import TERMINAL, mint_token

from ..live_server import live_server
from ..orchestrator.conftest import FAST
from ..services.conftest import SECRETS, prod_environ
from ..support.prefixes import runtime_prefix

REPO = Path(__file__).resolve().parents[2]
CAP = 1  # PRO in this test's plans file: live shells per lab
ATTACH_CAP = 4  # sockets per shell (terminal_sessions.MAX_ATTACHMENTS)
# Idle times (TEAM, ENTERPRISE in this test's plans file) long enough that a detached shell
# outlives a socket's open, a shell's start and a few round trips on a loaded machine.
IDLE_S = 8
BUSY_IDLE_S = 10

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]


@dataclass
class Lab:
    """The live platform: URLs, the orchestrator's state and event loop, the lab runtime."""

    spawn_url: str
    orch_url: str
    orch: OrchestratorState
    loop: asyncio.AbstractEventLoop
    runtime: LocalRuntime
    environ: dict[str, str]  # spawn_service's environment, for the operator's CLI

    def learner(self, subject: str, plan: str = "PRO") -> dict[str, str]:
        """A fresh API key (a new 'device') for `subject` of tenant acme on `plan`."""
        db = self.orch.ctx.db
        grant(db, "acme", plan, subject)
        return {"x-api-key": create_api_key(db, "acme", subject).plaintext}

    def spawn_running(self, headers: dict[str, str], track: str = "netplus") -> str:
        with httpx.Client(base_url=self.spawn_url, timeout=60) as client:
            resp = client.post("/v1/spawn", json={"track": track}, headers=headers)
            assert resp.status_code == 201, resp.text
            sid = str(resp.json()["scenario_id"])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if client.get(f"/v1/scenarios/{sid}", headers=headers).json()["state"] == \
                        "running":
                    return sid
                time.sleep(0.1)
        raise AssertionError("lab never ran")

    def open(self, sid: str, headers: dict[str, str], host: str | None = None,
             max_queue: int | None = None) -> ClientConnection:
        """A terminal socket. Sockets of one shell all get its output and a test socket
        need not read all of it, so by default its client buffers without a bound (a
        bounded queue that fills stalls its close); `max_queue` bounds it (backpressure)."""
        url = self.spawn_url.replace("http://", "ws://") + f"/v1/scenarios/{sid}/terminal"
        url += f"?host={host}" if host else ""
        return connect(url, additional_headers=headers, open_timeout=30, max_queue=max_queue)

    def attached(self, sid: str) -> int:
        """Sockets attached to the lab's sessions now."""
        return sum(len(s.attached) for s in self.orch.terminal_sessions.of_lab(sid))

    def wait_attached(self, sid: str, count: int) -> None:
        """Wait (polling, no time assertion) until `count` sockets are attached."""
        deadline = time.monotonic() + 30
        while self.attached(sid) != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.attached(sid)} attached, expected {count}")
            time.sleep(0.05)

    def held(self, sid: str) -> int:
        return self.orch.terminals.held(sid)

    def wait_held(self, sid: str, count: int) -> None:
        """Wait (polling, no time assertion) until the orchestrator holds `count` slots."""
        deadline = time.monotonic() + 30
        while self.held(sid) != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.held(sid)} terminals held, expected {count}")
            time.sleep(0.05)

    def in_loop(self, fn: Callable[[], Any]) -> Any:
        """Run a coroutine factory on the orchestrator's own event loop; return its result."""
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout=60)


def _plans_file(path: Path) -> Path:
    raw = yaml.safe_load((content_path("plans.yaml")).read_text(encoding="utf-8"))
    raw["plans"]["PRO"]["max_terminals"] = CAP
    raw["plans"]["TEAM"]["terminal_idle_seconds"] = IDLE_S
    raw["plans"]["ENTERPRISE"]["terminal_idle_seconds"] = BUSY_IDLE_S
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("termcap")
    nats = NatsServer()
    nats.start()
    runtime = LocalRuntime(str(tmp / "runtime"), runtime_prefix("t"))
    base = {**nats.client_env(), "FORGE_PLANS_FILE": str(_plans_file(tmp / "plans.yaml"))}
    loops: list[asyncio.AbstractEventLoop] = []
    try:
        orch_app = build_orchestrator(load_settings(prod_environ(tmp / "storage", **base)),
                                      runtime=runtime, reaper_interval_s=3600,
                                      consumer_options=FAST)
        state: OrchestratorState = orch_app.state.orchestrator

        async def remember_loop() -> None:
            loops.append(asyncio.get_running_loop())

        state.ctx.startup.append(remember_loop)
        with live_server(orch_app) as orch_url:
            environ = prod_environ(tmp / "storage", ORCHESTRATOR_URL=orch_url, **base)
            spawn_app = build_spawn(load_settings(environ))
            with live_server(spawn_app) as spawn_url:
                yield Lab(spawn_url, orch_url, state, loops[0], runtime, dict(environ))
    finally:
        for info in runtime.list():
            runtime.destroy(info.lab_id)
        runtime.close()
        nats.close()


def round_trip(ws: ClientConnection, word: str) -> None:
    """Prove the terminal is a live shell: type an echo, see its result."""
    ws.send(f"echo {word}-$((6*7))\n".encode())
    seen = b""
    deadline = time.monotonic() + 30
    while f"{word}-42".encode() not in seen:
        data = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        seen += data if isinstance(data, bytes) else data.encode()


def closed_with(ws: ClientConnection) -> tuple[dict[str, Any], int, str]:
    """Read until the server closes: its control frame, close code and reason."""
    control: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            data = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(data, str):
                control = json.loads(data)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return control, closed.value.rcvd.code, closed.value.rcvd.reason


def attached_frame(ws: ClientConnection) -> dict[str, Any]:
    """The session's first frame: which shell this is (a refusal's control frame instead)."""
    first = ws.recv(timeout=30)
    assert isinstance(first, str), first
    body: dict[str, Any] = json.loads(first)
    return body


def test_a_shell_past_the_cap_is_refused_but_sockets_reattach(lab: Lab) -> None:
    """Before: every open got a PTY (40 from one learner). After: the cap counts shells: a
    second host's shell past the cap is refused with `terminal_limit` / 4429, while any
    number of reopens (reloads, devices) reattach to the one live shell, never refused."""
    phone, laptop = lab.learner("alice"), lab.learner("alice")
    sid = lab.spawn_running(laptop, track="ccna")
    with lab.open(sid, laptop, "learner") as first:
        assert attached_frame(first)["new"] is True
        round_trip(first, "tab0")
        for n in range(6):  # reloads from two devices: the same shell each time
            with lab.open(sid, phone if n % 2 else laptop, "learner") as again:
                assert attached_frame(again)["new"] is False
                round_trip(again, f"reload{n}")
        assert lab.held(sid) == CAP

        with lab.open(sid, phone, "router") as extra:
            control, code, reason = closed_with(extra)
        assert control["error"] == "terminal_limit" and code == 4429
        assert f"already has {CAP} open terminals" in control["message"]
        assert reason == control["message"]
        assert lab.held(sid) == CAP


def test_a_shell_takes_at_most_four_sockets(lab: Lab) -> None:
    """The fifth socket on one shell is refused with `terminal_attach_limit` / 4429; once
    one goes, another attaches."""
    headers = lab.learner("ava")
    sid = lab.spawn_running(headers)
    with ExitStack() as stack:
        opened = [stack.enter_context(lab.open(sid, headers)) for _ in range(ATTACH_CAP)]
        for n, ws in enumerate(opened):
            attached_frame(ws)
            round_trip(ws, f"sock{n}")
        with lab.open(sid, headers) as extra:
            control, code, _ = closed_with(extra)
        assert (control["error"], code) == ("terminal_attach_limit", 4429)
        assert f"already open in {ATTACH_CAP} tabs or devices" in control["message"]
        opened[0].close()
        lab.wait_attached(sid, ATTACH_CAP - 1)
        with lab.open(sid, headers) as again:
            assert attached_frame(again)["new"] is False
            round_trip(again, "fifth")
    assert lab.held(sid) == 1


def test_concurrent_opens_never_race_past_the_caps(lab: Lab) -> None:
    """Of ATTACH_CAP+2 opens at the same moment, all on one host: one shell is made, exactly
    ATTACH_CAP sockets get it, the others are refused."""
    headers = lab.learner("casey")
    sid = lab.spawn_running(headers)
    start = threading.Barrier(ATTACH_CAP + 2)
    all_done = threading.Barrier(ATTACH_CAP)

    def attempt(n: int) -> str:
        start.wait(timeout=60)
        with lab.open(sid, headers) as ws:
            first = attached_frame(ws)
            if first["type"] == "closed":
                return str(first["error"])
            round_trip(ws, f"race{n}")
            all_done.wait(timeout=60)  # hold the socket until every attempt has its answer
            return str(first["session"])

    with ThreadPoolExecutor(ATTACH_CAP + 2) as pool:
        outcomes = list(pool.map(attempt, range(ATTACH_CAP + 2)))
    shells = {o for o in outcomes if o.startswith("tty-")}
    assert len(shells) == 1, outcomes
    assert sorted(o for o in outcomes if not o.startswith("tty-")) == \
        ["terminal_attach_limit"] * 2, outcomes
    assert lab.held(sid) == 1


def test_a_socket_that_drops_abnormally_gives_its_place_back(lab: Lab) -> None:
    """A client that vanishes (TCP reset, no close frame) must not keep its place forever."""
    headers = lab.learner("dana")
    sid = lab.spawn_running(headers)
    with ExitStack() as stack:
        opened = [stack.enter_context(lab.open(sid, headers)) for _ in range(ATTACH_CAP)]
        for n, ws in enumerate(opened):
            round_trip(ws, f"d{n}")
        dropped = opened[0].socket
        dropped.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        dropped.close()  # RST, no close handshake
        lab.wait_attached(sid, ATTACH_CAP - 1)
        with lab.open(sid, headers) as again:
            round_trip(again, "after-drop")
    lab.wait_attached(sid, 0)
    assert lab.held(sid) == 1  # the shell itself lives on, detached


def test_an_idle_terminal_is_closed_with_a_message(lab: Lab) -> None:
    """A shell nobody types in is closed after the plan's idle time, saying so to the socket
    attached to it; a shell no socket shows (detached) closes the same way, and the next
    attach starts a new shell."""
    headers = lab.learner("idris", plan="TEAM")
    sid = lab.spawn_running(headers, track="ccna")
    with lab.open(sid, headers, "router") as detached:
        round_trip(detached, "then-left")
    with lab.open(sid, headers) as ws:
        round_trip(ws, "then-nothing")
        assert lab.held(sid) == 2
        control, code, reason = closed_with(ws)
    assert control["error"] == "terminal_idle" and code == 4408
    assert f"after {IDLE_S} seconds without input" in control["message"]
    assert reason == control["message"]
    lab.wait_held(sid, 0)  # the detached shell too
    for host in ("learner", "router"):
        with lab.open(sid, headers, host) as again:
            assert attached_frame(again)["new"] is True


def test_a_terminal_in_use_is_not_idle(lab: Lab) -> None:
    """Typing keeps a terminal open well past the idle time (idle means without input)."""
    headers = lab.learner("ines", plan="ENTERPRISE")
    sid = lab.spawn_running(headers)
    with lab.open(sid, headers) as ws:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < 1.5 * BUSY_IDLE_S:
            round_trip(ws, f"busy{n}")
            n += 1
            time.sleep(0.2)
        assert lab.held(sid) == 1


def test_close_terminals_closes_all_kills_their_processes_and_refuses_new_ones(lab: Lab) -> None:
    """Grading starts: every terminal of the lab (attached or not) closes with `lab_sealed` /
    4410, what the learner started in them is dead when close_terminals returns, and no new
    one opens."""
    headers = lab.learner("gale", plan="ENTERPRISE")
    sid = lab.spawn_running(headers, track="ccna")
    hugo = lab.learner("hugo")
    other = lab.spawn_running(hugo)
    with ExitStack() as stack:
        bystander = stack.enter_context(lab.open(other, hugo))
        round_trip(bystander, "bystander")
        with lab.open(sid, headers, "router") as detached:  # a shell nobody is attached to
            round_trip(detached, "router")
        first = stack.enter_context(lab.open(sid, headers))
        second = stack.enter_context(lab.open(sid, headers))
        first.send(b"sleep 600 & echo $! > /workspace/racer\n")
        round_trip(first, "started")
        round_trip(second, "second")
        assert lab.held(sid) == 2

        closed = lab.in_loop(lambda: close_terminals(lab.orch, sid, "submitted"))
        assert closed == 2
        assert lab.held(sid) == 0
        alive = lab.runtime.exec(sid, "learner", ["sh", "-c", "kill -0 $(cat /workspace/racer)"])
        assert alive.exit_code != 0, "a process started in a closed terminal is still running"
        for ws in (first, second):
            control, code, _ = closed_with(ws)
            assert control["error"] == "lab_sealed" and code == 4410
            assert "being graded (submitted)" in control["message"]

        with lab.open(sid, headers) as late:  # the store still says running: sealed wins
            control, code, _ = closed_with(late)
        assert control["error"] == "lab_sealed" and code == 4410
        assert lab.held(sid) == 0
        round_trip(bystander, "still-here")  # another lab's terminal is untouched


def test_a_lab_that_is_not_running_gets_no_terminal_even_with_a_tty_token(lab: Lab) -> None:
    """The orchestrator checks the lab's state itself (spawn_service's check may be stale):
    a valid TTY token for a deleted lab gets `lab_not_running` / 4409, not a shell."""
    headers = lab.learner("kim")
    sid = lab.spawn_running(headers)
    token = mint_token(lab.orch.settings.sat, TERMINAL, {
        "scenario_id": sid, "sub": "kim", "tenant_id": "acme", "host": "learner"})
    resp = httpx.delete(f"{lab.orch_url}/v1/scenarios/{sid}", timeout=60,
                        headers={"authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"})
    assert resp.status_code == 200, resp.text
    url = lab.orch_url.replace("http://", "ws://") + f"/internal/scenarios/{sid}/tty"
    with connect(url, additional_headers={"x-forge-terminal": token}) as ws:
        control, code, _ = closed_with(ws)
    assert control["error"] == "lab_not_running" and code == 4409
    assert "The lab is deleted" in control["message"]
    assert lab.held(sid) == 0
