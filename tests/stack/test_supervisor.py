"""The supervisor's own logic: back-off that resets after a stable run, readiness that checks
the pid it started, the storage lock, the parent-death guard (real processes, fake clock)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI

from forge.config.storage_root import UnsafeStorage
from forge.stack.deathsig import exec_prefix
from forge.stack.lock import StorageLock, StorageLocked
from forge.stack.supervisor import (
    HUNG_S,
    READY_RECHECK_S,
    STABLE_S,
    Child,
    StartRefused,
    Supervisor,
)

from ..live_server import distinct_ports, live_server
from ..support.proc import alive
from .test_up import wait_for


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SleepSupervisor(Supervisor):
    """The real poll loop over real `sleep` processes; ready while alive (no HTTP)."""

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(["sleep", "600"], start_new_session=True)

    def _ready(self, child: Child) -> bool:
        return child.proc is not None and child.proc.poll() is None


def crash(child: Child) -> None:
    assert child.proc is not None
    child.proc.kill()
    child.proc.wait()


def test_backoff_grows_and_resets_after_a_stable_run(tmp_path: Path) -> None:
    clock = Clock()
    reports: list[str] = []
    sup = SleepSupervisor({}, tmp_path, report=reports.append, clock=clock)
    child = sup.children["svc"] = Child("svc", 0, tmp_path / "svc.log")
    try:
        assert sup.poll() == {"svc": True}

        def crash_and_restart() -> str:
            crash(child)
            sup.poll()
            assert child.proc is None  # waiting out the back-off
            delay = child.next_start - clock.now
            clock.now = child.next_start
            assert sup.poll() == {"svc": True}
            return f"{delay:.0f}"

        assert [crash_and_restart() for _ in range(3)] == ["1", "2", "4"]
        clock.now += STABLE_S - 1  # not yet stable: the back-off keeps growing
        assert crash_and_restart() == "8"
        clock.now += STABLE_S  # ready for a full stable period: earlier failures forgotten
        sup.poll()
        assert crash_and_restart() == "1"
        assert child.restarts == 5  # the count shown to the operator is kept
        assert "restarting in 8s (restart #4)" in reports[3]
        assert "restarting in 1s (restart #5)" in reports[4]
    finally:
        sup.stop()


def test_readiness_is_not_taken_from_another_process(tmp_path: Path) -> None:
    """Something else answering 200 on the service's port is not our service being ready."""
    impostor = FastAPI()

    @impostor.get("/healthz")
    def healthz() -> dict[str, object]:
        return {"status": "ok", "service": "spawn", "pid": os.getpid()}

    @impostor.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    with live_server(impostor) as url:
        port = int(url.rsplit(":", 1)[1])
        sup = Supervisor({}, tmp_path, ports={"spawn": port})
        child = Child("spawn", port, tmp_path / "spawn.log",
                      proc=subprocess.Popen(["sleep", "600"]))
        try:
            assert not sup._ready(child)
        finally:
            crash(child)


def test_the_process_answering_is_proved_once_per_process(tmp_path: Path) -> None:
    """/healthz's pid is asked once per started process (forge up made the listening
    socket and gave it to that process alone); /readyz on every recheck. A restarted
    process is proved again: an answer from the one before does not count for it."""
    hits: list[str] = []
    answering: list[int] = []
    service = FastAPI()

    @service.get("/healthz")
    def healthz() -> dict[str, object]:
        hits.append("healthz")
        return {"status": "ok", "service": "spawn", "pid": answering[0]}

    @service.get("/readyz")
    def readyz() -> dict[str, str]:
        hits.append("readyz")
        return {"status": "ready"}

    with live_server(service) as url:
        port = int(url.rsplit(":", 1)[1])
        sup = Supervisor({}, tmp_path, ports={"spawn": port})
        first = subprocess.Popen(["sleep", "600"])
        answering.append(first.pid)
        child = Child("spawn", port, tmp_path / "spawn.log", proc=first)
        try:
            assert sup._ready(child) and sup._ready(child)
            assert hits == ["healthz", "readyz", "readyz"]
            crash(child)
            child.proc = subprocess.Popen(["sleep", "600"])  # restarted; the old pid answers
            assert not sup._ready(child)
            assert hits[3:] == ["healthz"]
        finally:
            crash(child)
            first.wait(5)


def test_storage_lock_names_its_holder_and_frees_on_release(tmp_path: Path) -> None:
    held = StorageLock.acquire(tmp_path)
    with pytest.raises(StorageLocked) as refused:
        StorageLock.acquire(tmp_path)
    assert refused.value.pid == os.getpid()
    assert str(refused.value) == f"another forge up (pid {os.getpid()}) holds {tmp_path}"
    held.release()
    StorageLock.acquire(tmp_path).release()


def test_a_lock_forge_up_holds_outlives_a_refused_start_and_a_stop(tmp_path: Path) -> None:
    """`forge up` holds the root's lock from before its first write: a start refused (a
    port taken) or a stop released it, before `forge up` removed what the start wrote or
    destroyed the labs (`--teardown-labs`), and another start could take the root then."""
    held = StorageLock.acquire(tmp_path)  # as `forge up` holds it
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    spawn, orchestrator, scoreboard = distinct_ports(3, port)
    bus = {"NATS_URL": "nats://127.0.0.1:1"}
    sup = SleepSupervisor(dict(bus), tmp_path, lock=held, ports={
        "spawn": port, "orchestrator": orchestrator, "scoreboard": scoreboard})
    try:
        with pytest.raises(StartRefused):
            sup.start()
        assert held.held
        with pytest.raises(StorageLocked):
            StorageLock.acquire(tmp_path)
        assert all(c.proc is None for c in sup.children.values())  # nothing left running
    finally:
        taken.close()
        held.release()
    # `forge demo`'s takes the lock itself, and keeps it until its labs are destroyed
    own = SleepSupervisor(dict(bus), tmp_path, ports={
        "spawn": spawn, "orchestrator": orchestrator, "scoreboard": scoreboard})
    own.start()
    own.stop(keep_lock=True)
    with pytest.raises(StorageLocked):
        StorageLock.acquire(tmp_path)
    own.release_lock()
    StorageLock.acquire(tmp_path).release()


def test_a_cleanup_holding_the_root_is_named_as_such(tmp_path: Path) -> None:
    """An operator told "another forge up holds it" looks for a forge up that is not
    there when the holder is a `forge runtime cleanup`."""
    held = StorageLock.acquire(tmp_path, "forge runtime cleanup")
    with pytest.raises(StorageLocked) as refused:
        StorageLock.acquire(tmp_path)
    assert str(refused.value) == f"forge runtime cleanup (pid {os.getpid()}) holds {tmp_path}"
    assert refused.value.advice == "wait for it to end (seconds to minutes), then start again"
    # A file an earlier release wrote (the pid alone) or any other name reads as forge up:
    # the message never repeats what the file says beyond the names it knows, and the pid
    # is the one the kernel says holds the lock, not one the file claims.
    for content in (f"{os.getpid()}\n".encode(), b"4242\nrm -rf /\n"):
        (tmp_path / "forge-up.lock").write_bytes(content)  # same inode: the flock stays
        with pytest.raises(StorageLocked) as refused:
            StorageLock.acquire(tmp_path)
        assert str(refused.value).startswith(f"another forge up (pid {os.getpid()})")
    held.release()
    with pytest.raises(ValueError):
        StorageLock.acquire(tmp_path, "anything")


@pytest.mark.root  # makes a root another user's
def test_a_storage_root_of_another_user_is_never_locked(tmp_path: Path) -> None:
    """A root another user owns could hold their secrets and keys: a cleanup or forge up
    run as root refuses it (once it was used, and the lock file handed to that user),
    with no lock file made."""
    os.chown(tmp_path, 65534, 65534)
    with pytest.raises(UnsafeStorage, match="owned by uid 65534"):
        StorageLock.acquire(tmp_path, "forge runtime cleanup")
    assert not (tmp_path / "forge-up.lock").exists()


def test_lock_of_a_killed_holder_does_not_block(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from forge.stack.lock import StorageLock;"
            " StorageLock.acquire(Path(sys.argv[1])); print('held', flush=True);"
            " sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with pytest.raises(StorageLocked, match=f"pid {holder.pid}"):
        StorageLock.acquire(tmp_path)
    holder.kill()
    holder.wait()
    StorageLock.acquire(tmp_path).release()  # the file stays; the kernel dropped the flock


def test_deathsig_guard_starts_nothing_when_the_parent_is_already_gone(
        tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    gone = exec_prefix(parent_pid=1)  # not our parent: as if the supervisor had died
    proc = subprocess.run([*gone, "touch", str(marker)], capture_output=True)
    assert proc.returncode == 1 and not marker.exists()
    proc = subprocess.run([*exec_prefix(), "touch", str(marker)], capture_output=True)
    assert proc.returncode == 0 and marker.exists()


def test_deathsig_child_dies_with_its_parent_even_on_kill_9() -> None:
    code = ("import subprocess, sys; from forge.stack.deathsig import exec_prefix;"
            " p = subprocess.Popen([*exec_prefix(), 'sleep', '600']);"
            " print(p.pid, flush=True); sys.stdin.read()")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    wait_for(lambda: not alive(child), 5, "the child killed with its parent")


SERVICE = """
import http.server, json, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        healthz = self.path == "/healthz"
        ok = healthz or os.environ["STATE"] == "ready"
        body = json.dumps({"pid": os.getpid()} if healthz else {"status": "x"}).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


class ScriptSupervisor(Supervisor):
    """The real poll loop and HTTP probes over a small real HTTP service per child."""

    state = "ready"

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen([sys.executable, "-c", SERVICE, str(child.port)],
                                      env={**os.environ, "STATE": self.state},
                                      start_new_session=True)


def answering_supervisor(tmp_path: Path, state: str, clock: Clock, reports: list[str],
                         probe_timeout_s: float) -> tuple[ScriptSupervisor, Child]:
    (port,) = distinct_ports(1)
    sup = ScriptSupervisor({}, tmp_path, report=reports.append, clock=clock,
                           probe_timeout_s=probe_timeout_s)
    sup.state = state
    child = sup.children["spawn"] = Child("spawn", port, tmp_path / "spawn.log")
    sup.poll()
    wait_for(lambda: sup.poll() and child.answering is child.proc, 30, "the service answers")
    return sup, child


def test_a_service_that_stops_answering_is_killed_and_restarted(tmp_path: Path) -> None:
    """A hung service (here: stopped) holds its port and answers nothing; `forge up` kills
    it after HUNG_S of silence and starts a new one, and says so."""
    clock, reports = Clock(), []
    sup, child = answering_supervisor(tmp_path, "ready", clock, reports, 0.5)  # it is stopped
    try:
        hung = child.proc
        assert hung is not None and child.ready
        os.kill(hung.pid, signal.SIGSTOP)
        clock.now += READY_RECHECK_S  # the next readiness recheck gets no answer
        assert sup.poll() == {"spawn": False} and child.proc is hung
        clock.now += sup.hung_after_s - 1
        sup.poll()
        assert child.proc is hung and not reports  # silent, but not yet for HUNG_S
        clock.now += 1
        sup.poll()
        assert child.proc is None and hung.poll() is not None
        assert f"spawn (pid {hung.pid}) answered nothing for {HUNG_S:.0f}s (hung); killed it; " \
               "restarting in 1s (restart #1)" in reports[0]
        clock.now = child.next_start
        wait_for(lambda: sup.poll() == {"spawn": True}, 30, "the restarted service")
        assert child.proc is not None and child.proc.pid != hung.pid
    finally:
        sup.stop()


def test_a_service_that_answers_not_ready_is_not_killed(tmp_path: Path) -> None:
    """Not ready (a dependency down) is an answer: the service is left running however long."""
    clock, reports = Clock(), []
    # A slow answer on a loaded machine must not pass for silence here: a long time-out.
    sup, child = answering_supervisor(tmp_path, "waiting", clock, reports, 10.0)
    try:
        first = child.proc
        clock.now += 10 * HUNG_S
        assert sup.poll() == {"spawn": False}
        assert child.proc is first and child.silent_since is None and not reports
    finally:
        sup.stop()


class DyingSupervisor(SleepSupervisor):
    """Each start writes `said` to the child's log (as a service's traceback would) and
    exits 3 at once, as a service whose store cannot be reached does."""

    said = b""

    def _spawn(self, child: Child) -> None:
        with open(child.log_path, "ab") as log:
            child.log_from = log.tell()
            child.proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.argv[1]"
                 ".encode()); sys.exit(3)", self.said.decode()], stdout=log,
                start_new_session=True)
        child.proc.wait()


def test_a_service_that_dies_is_reported_with_its_last_words(tmp_path: Path) -> None:
    """forge up said only "spawn exited with code 3; restarting …": the reason (the store
    down, a port taken) was in the service's log alone. The report now ends with the last
    line the process wrote, and never repeats an earlier run's."""
    clock, reports = Clock(), []
    sup = DyingSupervisor({}, tmp_path, report=reports.append, clock=clock)
    log_path = tmp_path / "svc.log"
    log_path.write_bytes(b"INFO an earlier run's last line\n")
    child = sup.children["svc"] = Child("svc", 0, log_path)
    try:
        sup.said = (b"Traceback (most recent call last):\n  ...\nforge.store.busy.StoreBusy: "
                    b"the state store cannot be reached\x1b[0m\n\n")
        sup.poll()
        sup.poll()
        assert reports[-1].startswith("svc exited with code 3 (forge.store.busy.StoreBusy: "
                                      "the state store cannot be reached[0m); restarting in")
        assert "\x1b" not in reports[-1]
        sup.said = b""  # this run says nothing: nothing of the last one is shown as its
        clock.now = child.next_start
        sup.poll()
        sup.poll()
        assert reports[-1].startswith("svc exited with code 3; restarting in")
    finally:
        sup.stop()


def test_a_service_s_json_log_is_reported_by_its_message(tmp_path: Path) -> None:
    """A service logs JSON records: the report cut the last one at 300 characters, so an
    operator read `orchestrator exited with code -9 ({"ts": … "logge…)`, nothing of what it
    said. Now its level and message (and error type) are shown, even from a record longer
    than a screenful (a long traceback inside it)."""
    clock, reports = Clock(), []
    sup = DyingSupervisor({}, tmp_path, report=reports.append, clock=clock)
    log_path = tmp_path / "svc.log"
    sup.children["svc"] = Child("svc", 0, log_path)
    record = {"ts": "2026-12-07T08:00:00.000Z", "level": "error", "service": "orchestrator",
              "logger": "forge.services.orchestrator.app", "msg": "the state store \"forge\""
              " cannot be reached", "request_id": "r" * 40, "error_type": "StoreBusy",
              "traceback": "Traceback (most recent call last):\n" + "  frame\n" * 10000}
    try:
        sup.said = json.dumps(record).encode() + b"\n"
        sup.poll()
        sup.poll()
        assert reports[-1].startswith('svc exited with code 3 (error: the state store "forge" '
                                      "cannot be reached [StoreBusy]); restarting in"), \
            reports[-1]
    finally:
        sup.stop()
