"""A real `forge serve spawn` with several worker processes, for the cross-worker attacks
(tests/security/test_spawn_workers.py, test_spawn_worker_caches.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from forge.bus import NatsServer
from forge.bus.ports import free_port
from forge.store.db import Database
from forge.store.migrate import upgrade

from ..services.conftest import prod_environ

WORKERS = 2


def children(pid: int) -> list[int]:
    """The child processes of `pid` (the service's workers)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


@contextlib.contextmanager
def spawn_workers(tmp_path: Path, nats: NatsServer, db_url: str,
                  **env: str) -> Iterator[tuple[str, int, Database]]:
    """(base URL, parent pid, the store) of a ready spawn_service with WORKERS workers,
    stopped (every worker with it) on exit; `env` adds settings."""
    upgrade(db_url)
    db = Database(db_url)
    environ = {**os.environ, **prod_environ(tmp_path / "storage", **nats.client_env(),
                                            FORGE_DB_URL=db_url,
                                            FORGE_SPAWN_WORKERS=str(WORKERS), **env)}
    try:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            with _started(tmp_path / f"spawn-{attempt}.log", environ) as (url, pid, lost):
                if not lost:
                    yield url, pid, db
                    return
    finally:
        db.dispose()
    raise AssertionError(f"spawn_service lost its port to another process {PORT_ATTEMPTS} "
                         "times in a row")


PORT_ATTEMPTS = 3  # `free_port` binds nothing: another test's server may take the port first


@contextlib.contextmanager
def _started(log: Path, environ: dict[str, str]) -> Iterator[tuple[str, int, bool]]:
    """(base URL, parent pid, whether the port was lost) of a `forge serve spawn` whose
    output goes to `log`, ready unless the port was lost; stopped on exit. A start that
    fails otherwise raises with the service's last readiness answer and its output."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "forge", "serve", "spawn", "--port",
                                 str(port)], env=environ, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120  # a few seconds, unless the machine is very busy
        answer = "no answer"
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.TransportError, ValueError):
                resp = httpx.get(f"{url}/readyz", timeout=5)
                if resp.status_code == 200:
                    # Ours, not another test's server on a port taken first (review CE):
                    # /healthz names the pid of the service's parent process.
                    if httpx.get(f"{url}/healthz", timeout=5).json().get("pid") == proc.pid:
                        break
                    answer = "another process's server answers on this port"
                else:
                    answer = f"{resp.status_code} {resp.text[:500]}"
            time.sleep(0.1)
        else:
            output = log.read_text(errors="replace")[-4000:]
            if proc.poll() is not None and "already in use" in output:
                yield url, proc.pid, True
                return
            raise AssertionError(f"spawn_service with workers did not become ready (exit "
                                 f"{proc.poll()}, last /readyz: {answer}); its output:\n"
                                 f"{output}")
        yield url, proc.pid, False
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def post_spawn(url: str, headers: dict[str, str], body: Any) -> httpx.Response:
    """POST /v1/spawn on a new connection (so the requests spread over the workers)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.post("/v1/spawn", headers=headers, json=body)
