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
    port = free_port()
    environ = {**os.environ, **prod_environ(tmp_path / "storage", **nats.client_env(),
                                            FORGE_DB_URL=db_url,
                                            FORGE_SPAWN_WORKERS=str(WORKERS), **env)}
    proc = subprocess.Popen([sys.executable, "-m", "forge", "serve", "spawn", "--port",
                             str(port)], env=environ, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        ready = False
        while not ready and time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                ready = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            time.sleep(0.1)
        assert ready, "spawn_service with workers did not become ready"
        yield url, proc.pid, db
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        db.dispose()


def post_spawn(url: str, headers: dict[str, str], body: Any) -> httpx.Response:
    """POST /v1/spawn on a new connection (so the requests spread over the workers)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.post("/v1/spawn", headers=headers, json=body)
