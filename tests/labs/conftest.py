"""One live Forge per test module for the shipped labs: nats-server, orchestrator (real Rego
engine, LocalRuntime) and scoreboard on one storage root, DB and NATS, loading the
repository's `templates/`. `Platform.play` drives a lab the way a learner does: spawn
event, learner commands through the runtime, operator completion, then the scoreboard's
signed verdict, verified with `scripts/verify_verdict.py`."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats as nats_client
import pytest

from forge.authoring.labtest import script_sections
from forge.bus import NatsServer, Publisher
from forge.config import Settings, load_settings
from forge.content import content_path
from forge.lifecycle.store import load
from forge.lifecycle.visibility import LEARNER_HOST
from forge.runtime.base import ExecResult
from forge.runtime.local import LocalRuntime
from forge.services.orchestrator.app import build_app as build_orchestrator
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.signing.keystore import SigningKeyring, keyring_dir
from forge.store.models import Scenario

from ..live_server import live_server
from ..orchestrator.conftest import spawn_event
from ..services.conftest import SECRETS, prod_environ
from ..support.prefixes import runtime_prefix

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = content_path("templates")
SOLUTIONS = content_path("solutions")
PYTHON = Path(sys.executable)
VERIFY = REPO / "scripts" / "verify_verdict.py"
OPERATOR = {"authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}
# The smallest plan whose tracks include each lab's track (plans.yaml).
PLAN_FOR = {"netplus": ("FREE", ["netplus"]), "ccna": ("PRO", ["netplus", "ccna"]),
            "cissp": ("TEAM", ["netplus", "ccna", "cissp"])}
# host -> TCP port (a variable name or a number) of each lab's services. A lab is "running"
# once its hosts exist; the tests wait for the services too, so no check races a start-up.
SERVICES = {"netplus": {"target": "port"},
            "ccna": {"pc-a": "8080", "pc-b": "8080", "learner": "9062", "r2": "9062"},
            "cissp": {}}


def solution(name: str) -> str:
    """The reference solution script for a lab."""
    return (SOLUTIONS / f"{name}.sh").read_text()


@dataclass
class Outcome:
    """What one graded lab produced."""

    scenario_id: str
    variables: dict[str, str]
    completed: dict[str, Any]
    score: dict[str, Any]
    results_dir: Path

    def passed(self) -> dict[str, bool]:
        """Criterion id -> passed, from the scoreboard's score.json."""
        return {c["id"]: bool(c["passed"]) for c in self.score["criteria"]}


class Lab:
    """A running lab: learner-side actions go through the runtime's exec."""

    def __init__(self, platform: Platform, scenario_id: str) -> None:
        self.platform = platform
        self.id = scenario_id
        self.variables: dict[str, str] = dict(platform.row(scenario_id).details["variables"])

    def sh(self, script: str, host: str = "learner", timeout: float = 60) -> ExecResult:
        """Run a bash script in a lab host, as typed in its terminal."""
        return self.platform.runtime.exec(self.id, host, shell="exec bash -s",
                                          stdin=script.encode(), timeout=timeout)

    def solve(self, name: str) -> ExecResult:
        """Apply the reference solution, each section typed in its host's terminal in order;
        every section must succeed. The last section's result."""
        sections = script_sections(solution(name), LEARNER_HOST)
        for host, script in sections:
            result = self.sh(script, host=host, timeout=120)
            assert result.exit_code == 0, f"{host}: {result.stdout_text}{result.stderr_text}"
        return result


@dataclass
class Platform:
    settings: Settings
    runtime: LocalRuntime
    nats: NatsServer
    orchestrator_url: str
    scoreboard_url: str
    db: Any

    def row(self, scenario_id: str) -> Scenario:
        return load(self.db, scenario_id)

    def wait_state(self, scenario_id: str, *wanted: str, timeout: float = 30) -> Scenario:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.row(scenario_id)
                if last.state in wanted:
                    return last
            except LookupError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{scenario_id} never reached {wanted}; last {last and last.state}"
                             f" {last and last.details}")

    def spawn(self, template: str) -> Lab:
        """Publish a spawn event for a shipped lab (smallest plan with its track)."""
        plan, tracks = PLAN_FOR[template]
        event = spawn_event(self.settings, template=template, track=template, plan=plan,
                            tracks=tracks, subject="learner-" + secrets.token_hex(3))

        async def go() -> None:
            async with Publisher(self.nats.admin_url) as pub:
                await pub.connection.wait_ready(5)
                await pub.publish("forge.spawn.requested", event, msg_id=secrets.token_hex(8))

        asyncio.run(go())
        self.wait_state(event["scenario_id"], "running")
        lab = Lab(self, event["scenario_id"])
        for host, port in SERVICES[template].items():
            port = lab.variables.get(port, port)
            up = lab.sh(f"until {{ : > /dev/tcp/127.0.0.1/{port}; }} 2>/dev/null; "
                        "do sleep 0.05; done", host=host, timeout=20)
            assert up.exit_code == 0, f"{template}: {host}:{port} never listened"
        return lab

    def finish(self, lab: Lab) -> Outcome:
        """Operator completion, then the completed event and the scoreboard's verdict."""
        with httpx.Client(base_url=self.orchestrator_url, timeout=120) as client:
            resp = client.post(f"/internal/scenarios/{lab.id}/complete", headers=OPERATOR)
            assert resp.status_code == 200 and resp.json()["state"] == "completed", resp.text
        completed = asyncio.run(completed_event(self.nats.admin_url, lab.id))
        results = self.settings.storage_root / "scenarios" / lab.id / "results"
        deadline = time.monotonic() + 30
        while not (results / "verdict.sig").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        score = json.loads((results / "score.json").read_text())
        verify = subprocess.run(
            [str(PYTHON), str(VERIFY), str(results / "score.json"),
             str(results / "evidence.tar.zst"), str(results / "verdict.sig"),
             str(results / "verdict.pub")],
            capture_output=True, text=True, timeout=60, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        return Outcome(lab.id, lab.variables, completed, score, results)

    def play(self, template: str, action: Callable[[Lab], object] | None = None) -> Outcome:
        """Spawn, let `action` act as the learner, complete, and return the verdict."""
        lab = self.spawn(template)
        if action is not None:
            action(lab)
        return self.finish(lab)


async def completed_event(url: str, scenario_id: str, timeout: float = 30) -> dict[str, Any]:
    """The forge.scenario.completed event of one scenario (read from the stream's start)."""
    nc = await nats_client.connect(url)
    try:
        sub = await nc.jetstream().subscribe("forge.scenario.completed", ordered_consumer=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
            body: dict[str, Any] = json.loads(msg.data)
            if body.get("scenario_id") == scenario_id:
                return body
    finally:
        await nc.close()
    raise AssertionError(f"no completed event for {scenario_id}")


# The labs check content (templates, checks, scoring), not the store: they run on SQLite only,
# and their ids say so; whole journeys on PostgreSQL are in tests/chaos and tests/drills.
@pytest.fixture(scope="module", params=[
    pytest.param("sqlite", id="sqlite_only", marks=pytest.mark.sqlite_only)])
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Orchestrator + scoreboard + nats-server + LocalRuntime, shared by one module."""
    tmp = tmp_path_factory.mktemp("labs")
    nats = NatsServer()
    nats.start()
    environ = prod_environ(tmp / "storage", **nats.client_env(),
                           FORGE_DB_URL=f"sqlite:///{tmp / 'forge.db'}",
                           FORGE_TEMPLATE_DIR=str(TEMPLATES))
    settings = load_settings(environ)
    SigningKeyring(keyring_dir(settings.storage_root, {})).ensure()
    runtime = LocalRuntime(str(tmp / "runtime"), runtime_prefix("l"))
    orchestrator = build_orchestrator(settings, runtime=runtime, reaper_interval_s=3600,
                                      consumer_options={"max_deliver": 4})
    scoreboard = build_scoreboard(settings, max_deliver=2, backoff=(0.2,), fetch_timeout=0.5)
    try:
        with live_server(orchestrator) as orch_url, live_server(scoreboard) as board_url:
            yield Platform(settings, runtime, nats, orch_url, board_url,
                           orchestrator.state.orchestrator.ctx.db)
    finally:
        for info in runtime.list():
            runtime.destroy(info.lab_id)
        runtime.close()
        nats.close()
