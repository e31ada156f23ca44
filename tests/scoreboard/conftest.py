"""A live scoreboard (real uvicorn, nats-server, SQLite or PostgreSQL, files) and completion events built
the way the orchestrator builds them: tokens minted with the shared keyrings, evidence files
and the scenario audit log written under the storage root."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from forge.audit.log import scenario_log
from forge.bus import NatsServer, Publisher
from forge.bus.contracts import ScenarioCompletedV1, parse, publish_event
from forge.bus.subjects import SCENARIO_COMPLETED, SCORE_FINALIZED, STREAM
from forge.config import Settings, load_settings
from forge.services.scoreboard.app import build_app
from forge.services.scoreboard.state import ScoreboardState
from forge.signing.keystore import SigningKeyring, keyring_dir
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Scenario
from forge.templates.registry import TemplateRegistry
from forge.templates.variables import values_digest
from forge.tokens import ET, SAT, mint_token

from ..conftest import TEMPLATE_FIXTURES
from ..live_server import live_server
from ..services.conftest import SECRETS, prod_environ

TEMPLATE = "lab-netplus"
SECRET = "QmFzZTY0c2VjcmV0dG9r"  # this lab's `secret` variable (20 token characters)
REPO = Path(__file__).resolve().parents[2]
PYTHON = Path(sys.executable)
VERIFY_SCRIPT = REPO / "scripts" / "verify_verdict.py"


def output(text: str) -> dict[str, Any]:
    raw = text.encode()
    return {"text": text, "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw),
            "truncated": False}


def new_scenario_id() -> str:
    return "scn-" + secrets.token_hex(8)


@dataclass
class Completion:
    """A completion event and what it was built from."""

    scenario_id: str
    body: dict[str, Any]
    full_stdout: bytes = b""

    @property
    def event(self) -> ScenarioCompletedV1:
        """The body as its contract (what the orchestrator publishes)."""
        return parse(ScenarioCompletedV1, self.body)

    def variant(self, **changes: Any) -> dict[str, Any]:
        body = copy.deepcopy(self.body)
        body.update(changes)
        return body


def build_completion(
    settings: Settings, *, tenant: str = "acme", subject: str = "alice", passed: bool = True,
    retention_days: int = 30, completed_at: datetime | None = None,
    write_audit: bool = True, big_output: int = 0, record_state: str | None = "grading",
    record_in: Settings | None = None,
) -> Completion:
    """An event for lab-netplus (criteria saved-page x1 weight 2, route-present x1 weight 1),
    tokens minted two hours ago (long expired, as after a long lab). The scenario's row is
    in the store (`record_state`, None: left out; of `record_in`, default `settings`), as
    spawn_service and the orchestrator leave it: the scoreboard scores nothing it has no
    record of."""
    root = settings.storage_root
    sid = new_scenario_id()
    loaded = TemplateRegistry.load(TEMPLATE_FIXTURES).get(TEMPLATE)
    minted = time.time() - 7200
    et_jti = secrets.token_hex(16)
    et = mint_token(settings.et, ET, {
        "jti": et_jti, "sub": subject, "tenant_id": tenant, "plan": "PRO",
        "tracks": ["netplus", "ccna"], "retention_days": retention_days, "source": "store",
    }, now=minted)
    sat = mint_token(settings.sat, SAT, {
        "scenario_id": sid, "track": "netplus", "template_id": TEMPLATE, "sub": subject,
        "tenant_id": tenant, "plan": "PRO", "et_jti": et_jti,
    }, now=minted)
    evidence_dir = root / "scenarios" / sid / "evidence"
    evidence_dir.mkdir(parents=True)
    page = f"token {SECRET}\n"
    full = (page + "x" * big_output).encode()
    saved_out = output(full.decode())
    if big_output:  # the event carries only a prefix, like the orchestrator's 16 KiB cap
        saved_out["text"] = full[:64].decode()
        saved_out["truncated"] = True
    route_out = output("" if not passed else "10.61.2.0/24 via 10.61.1.1 dev eth0\n")
    files = {"saved-page.0.stdout": full, "saved-page.0.stderr": b"",
             "route-present.0.stdout": route_out["text"].encode(),
             "route-present.0.stderr": b""}
    for name, data in files.items():
        (evidence_dir / name).write_bytes(data)
    completed = completed_at or datetime.now(UTC)
    started = completed - timedelta(minutes=20)
    body: dict[str, Any] = {
        "scenario_id": sid, "run_id": f"{sid}.1", "track": "netplus",
        "template": {"name": TEMPLATE, "sha256": loaded.sha256}, "tenant_id": tenant,
        "subject": subject, "plan": "PRO", "retention_days": retention_days,
        "completion_reason": "submitted", "started_at": started.isoformat(),
        "completed_at": completed.isoformat(), "sat": sat, "et": et,
        "variables": {"secret": SECRET, "port": "24000"},
        "policy": {"allow": True, "reasons": [], "policy_hash": "ab" * 32,
                   "input": {"track": "netplus", "cpu": 0.5}},
        "results": [
            {"criterion_id": "saved-page", "check_index": 0, "passed": True, "exit_code": 0,
             "stdout": saved_out, "stderr": output(""), "timed_out": False,
             "duration_ms": 12, "container": "learner",
             "command": ["/bin/cat", "/workspace/answer.txt"]},
            {"criterion_id": "route-present", "check_index": 0, "passed": passed,
             "exit_code": 0, "stdout": route_out, "stderr": output(""), "timed_out": False,
             "duration_ms": 8, "container": "learner",
             "command": ["/sbin/ip", "route", "show", "10.61.2.0/24"]},
        ],
        "evidence": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
    }
    log = scenario_log(root, sid)
    for state in ("pending", "launching", "running", "grading"):
        log.append(f"scenario.{state}", {"reason": "test"})
    if write_audit:
        write_completed_entry(settings, sid, body["evidence"], body["variables"])
    if record_state is not None:
        record_scenario(record_in or settings, sid, tenant=tenant, subject=subject,
                        state=record_state)
    return Completion(sid, body, full)


def store_of(settings: Settings) -> Database:
    """The (migrated) store of `settings`, as the scoreboard opens it."""
    upgrade(settings.db_url)
    return Database(settings.db_url)


def record_scenario(settings: Settings, scenario_id: str, *, tenant: str = "acme",
                    subject: str = "alice", state: str = "grading") -> None:
    """The scenario's row in the store of `settings` (migrated here if new)."""
    upgrade(settings.db_url)
    db = Database(settings.db_url)
    now = datetime.now(UTC)
    try:
        with db.session() as sess:
            sess.merge(Scenario(scenario_id=scenario_id, request_id="r-" + scenario_id,
                                tenant_id=tenant, subject=subject, track="netplus",
                                template_id=TEMPLATE, plan="PRO", state=state,
                                created_at=now, updated_at=now, details={}))
    finally:
        db.dispose()


def write_completed_entry(settings: Settings, scenario_id: str,
                          evidence: dict[str, str] | None = None,
                          variables: dict[str, str] | None = None) -> None:
    """What the orchestrator writes before publishing (the 'fix' for a missing entry),
    with the evidence hashes and the digest of the values it recorded, when given."""
    entry: dict[str, Any] = {"reason": "submitted", "checks": 2}
    if evidence is not None:
        entry["evidence"] = evidence
    if variables is not None:
        entry["variables_sha256"] = values_digest(variables)
    scenario_log(settings.storage_root, scenario_id).append("scenario.completed", entry)


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0,
                   what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Board:
    """A running scoreboard and helpers to drive it."""

    url: str
    settings: Settings
    state: ScoreboardState
    nats: NatsServer
    environ: dict[str, str]
    publisher: Publisher
    operator: dict[str, str] = field(default_factory=dict)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=20, **kwargs)

    def results_dir(self, scenario_id: str) -> Path:
        return self.settings.storage_root / "scenarios" / scenario_id / "results"

    async def publish_event(self, event: ScenarioCompletedV1, msg_id: str | None = None) -> None:
        """Publish a well-formed completion through its contract."""
        await publish_event(self.publisher, event,
                            msg_id=msg_id or f"{event.scenario_id}-completed")

    async def publish(self, body: dict[str, Any], msg_id: str | None = None) -> None:
        """Publish a raw body as it stands (forged and malformed ones included)."""
        await self.publisher.publish(SCENARIO_COMPLETED, body,
                                     msg_id=msg_id or f"{body['scenario_id']}-completed")

    async def finalized_count(self) -> int:
        js = self.publisher.connection.jetstream()
        info = await js.stream_info(STREAM, subjects_filter=SCORE_FINALIZED)
        return int((info.state.subjects or {}).get(SCORE_FINALIZED, 0))

    async def wait_finalized(self, expected: int, timeout: float = 5.0) -> int:
        """The finalized-event count once it reaches `expected` (or at the timeout)."""
        deadline = time.monotonic() + timeout
        count = await self.finalized_count()
        while count < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            count = await self.finalized_count()
        return count

    def failed_events(self) -> list[Any]:
        from forge.services.scoreboard.reprocess import list_events
        return list_events(self.state.ctx.db, None)

    def keyring(self) -> SigningKeyring:
        return SigningKeyring(keyring_dir(self.settings.storage_root, {}))

    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_HMAC_SECRET")}
        env.update(self.environ)
        return env


MakeBoard = Callable[..., Awaitable[Board]]


@pytest.fixture
async def make_board(tmp_path: Path, nats: NatsServer, db_url: str) -> AsyncIterator[MakeBoard]:
    """Start scoreboards on one storage root; `with_key=False` leaves the keyring empty."""
    contexts: list[Any] = []
    publishers: list[Publisher] = []

    async def make(*, with_key: bool = True, env: dict[str, str] | None = None,
                   **options: Any) -> Board:
        environ = prod_environ(tmp_path / "storage", **nats.client_env(), FORGE_DB_URL=db_url,
                               **(env or {}))
        settings = load_settings(environ)
        if with_key:
            SigningKeyring(keyring_dir(settings.storage_root, {})).ensure()
        options.setdefault("max_deliver", 2)
        options.setdefault("backoff", (0.2,))
        options.setdefault("fetch_timeout", 0.5)
        app = build_app(settings, pause_retry_s=options.pop("pause_retry_s", 0.3), **options)
        ctx = live_server(app)
        url = await asyncio.to_thread(ctx.__enter__)
        contexts.append(ctx)
        publisher = Publisher(nats.url, name="test-orchestrator",
                              credentials=nats.credentials("orchestrator"))
        assert await publisher.start(wait=5.0)
        publishers.append(publisher)
        board = Board(url, settings, app.state.scoreboard, nats, environ, publisher,
                      {"Authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"})
        assert board.state.consumer is not None
        assert await asyncio.to_thread(lambda: _wait_connected(board))
        return board

    yield make
    for publisher in publishers:
        await publisher.close()
    for ctx in reversed(contexts):
        await asyncio.to_thread(ctx.__exit__, None, None, None)


def _wait_connected(board: Board, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    consumer = board.state.consumer
    while time.monotonic() < deadline:
        if consumer is not None and consumer.connected and board.state.publisher.connected:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def prod_env(tmp_path: Path, db_url: str) -> Iterator[Settings]:
    """Prod settings on a temp storage root, without any service running."""
    yield load_settings(prod_environ(tmp_path / "storage", FORGE_DB_URL=db_url))
