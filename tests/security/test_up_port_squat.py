"""Attack: a local process squats a service port before `forge up` starts (to phish the API
keys learners type into the UI), answering every `/readyz` with 200.

Before: `forge up` counted the squatter's `/readyz` as its spawn_service, printed "Forge is
up" and sent learners to it, while its real spawn_service crash-looped on "address already
in use". Now `forge up` binds every port itself before starting anything: it refuses, names
the port, and leaves nothing running.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from ..live_server import live_server
from ..stack.test_up import Up, make_env_file, some_ports, wait_for


def test_up_refuses_a_squatted_port_instead_of_trusting_its_readyz(tmp_path: Path) -> None:
    squatter = FastAPI()

    @squatter.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready", "service": "spawn"}

    @squatter.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "spawn"}

    with live_server(squatter) as url:
        ports = some_ports()
        ports["spawn"] = int(url.rsplit(":", 1)[1])
        up = Up(tmp_path / "storage", make_env_file(tmp_path), ports)
        try:
            wait_for(lambda: up.proc.poll() is not None or "Forge is up" in up.err, 120,
                     "forge up to refuse or claim to be up")
        finally:
            up.stop()
        assert "Forge is up" not in up.err
        assert up.proc.returncode == 1
        assert f"spawn: cannot listen on 127.0.0.1:{ports['spawn']}: already in use" in up.err
        assert up.service_pids() == [] and up.nats_pids() == []
