"""Several worker processes behind one service port (`FORGE_SPAWN_WORKERS`).

One Python process runs one core at most (the GIL), so a busy spawn_service is held to
about one core however many the machine has. With workers, `forge serve spawn` binds its
port, then starts N copies of itself, each inheriting a listening socket
(`FORGE_LISTEN_FD`) to accept from: its own (SO_REUSEPORT, `listener.worker_listeners`:
the kernel spreads connections evenly over them), or, when a supervisor handed the
service its socket, that one shared socket. The parent keeps every socket open, so a
worker started again takes over the connections waiting on its socket. The workers
share only the store and the bus, which is all spawn_service ever shared between replicas:
idempotency by request id, quota slots and rate counts are transactions in the store, so
they hold across workers as across replicas.

The parent does nothing but wait: it sleeps in `wait()` (no polling, so it costs no CPU
while idle), forwards SIGTERM/SIGINT to every worker (each in its own process group, so
a terminal's Ctrl-C reaches it once, through the parent), restarts a worker that dies after it
was up, and gives up (every worker stopped, exit status "not started") when a worker fails
within its first seconds, which is a configuration error that a restart would only repeat.
`/healthz` of every worker answers the parent's pid, so a supervisor that started the
parent (`forge up`) recognises the answer as coming from its child. Each worker is started
through the parent-death guard, so none outlives a parent killed with `kill -9`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from forge.services.common.listener import ENV_FD

log = logging.getLogger("forge.runner")
ENV_WORKER = "FORGE_WORKER_INDEX"  # set in a worker: it serves itself, never fans out
ENV_SERVICE_PID = "FORGE_SERVICE_PID"  # the pid /healthz reports: the parent's
START_GRACE_S = 10.0  # a worker failing sooner than this failed to start
DEATHSIG_MODULE = "forge.stack.deathsig"  # run as a program (argv), not imported


def service_pid() -> int:
    """The pid that stands for this service: the parent's under workers, else our own."""
    raw = os.environ.get(ENV_SERVICE_PID, "")
    return int(raw) if raw.isascii() and raw.isdigit() else os.getpid()


def is_worker() -> bool:
    """True in a worker process started by `serve_workers`."""
    return bool(os.environ.get(ENV_WORKER))


def runs_housekeeping() -> bool:
    """True where periodic purges run: a service without workers, or its worker 1 (N
    workers purging the same rows would only contend for the store's write lock)."""
    return os.environ.get(ENV_WORKER, "") in ("", "1")


def _start(service: str, host: str, port: int, fd: int, index: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, ENV_FD: str(fd), ENV_WORKER: str(index),
           ENV_SERVICE_PID: str(os.getpid())}
    argv = [sys.executable, "-m", DEATHSIG_MODULE, str(os.getpid()), "--",
            sys.executable, "-m", "forge", "serve", service, "--host", host, "--port", str(port)]
    # Its own process group: a terminal's Ctrl-C reaches only the parent, which forwards it
    # once; two SIGINTs (the terminal's and the parent's) make uvicorn skip shutdown.
    return subprocess.Popen(argv, env=env, pass_fds=(fd,), stdin=subprocess.DEVNULL,
                            process_group=0)


def serve_workers(service: str, socks: list[socket.socket]) -> bool:
    """Run one worker per socket of `socks` (the same socket may be given for several)
    until signalled; False when one failed to start."""
    host, port = socks[0].getsockname()[:2]
    fds = [sock.fileno() for sock in socks]
    count = len(socks)
    workers: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
    stopping = False
    failed = False

    def stop(signum: int, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for proc, _ in workers.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    for index in range(count):
        workers[index] = (_start(service, host, port, fds[index], index + 1),
                          time.monotonic())
    log.info("%s: %d workers on %s:%s (pids %s)", service, count, host, port,
             ", ".join(str(p.pid) for p, _ in workers.values()))
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        found = [i for i, (p, _) in workers.items() if p.pid == pid]
        if not found:
            continue
        index = found[0]
        proc, started = workers.pop(index)
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        if stopping:
            continue
        if time.monotonic() - started < START_GRACE_S:
            log.error("%s worker %d exited with %s while starting; stopping every worker",
                      service, index + 1, code)
            failed = True
            stop(signal.SIGTERM)
            continue
        log.warning("%s worker %d exited with %s; starting it again", service, index + 1,
                    code)
        workers[index] = (_start(service, host, port, fds[index], index + 1),
                          time.monotonic())
    for sock in {id(s): s for s in socks}.values():
        sock.close()
    return not failed
