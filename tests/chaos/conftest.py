"""Chaos harness: the drill installation (tests/drills) plus crash-tolerant driving and the
checks that must hold after any crash: no lost or duplicate verdicts, no partial result
directories, no leaked namespaces, cgroups, processes or lab uids, every quota slot freed,
no idempotency record left pending."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from forge.runtime.local import LocalRuntime
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.local.netns import list_netns
from forge.runtime.local.uids import UidPool
from forge.store import normalize_url
from tests.drills.conftest import Drill, drill  # noqa: F401 - the fixture, shared

RESULT_FILES = {"score.json", "verdict.sig", "verdict.pub", "evidence.tar.zst"}
TERMINAL = {"completed", "failed", "expired", "deleted"}


_HEALING = threading.Lock()  # one healer at a time: a dead service is started once


def heal(d: Drill, env: dict[str, str]) -> list[str]:
    """Start again, with ``env``, every service whose process died; their names."""
    restarted = []
    with _HEALING:
        for name, svc in d.services.items():
            if svc.proc is not None and svc.proc.poll() is not None:
                svc.proc = None
                svc.restarts = getattr(svc, "restarts", 0) + 1  # type: ignore[attr-defined]
                svc.start(env)
                svc.wait_ready(90)
                restarted.append(name)
    return restarted


@contextlib.contextmanager
def supervised(d: Drill, env: dict[str, str]) -> Iterator[None]:
    """Restart a service as soon as its process dies, as a supervisor would.

    A request sent to a service that just died waits in its held listening socket's
    backlog; the next incarnation answers it. Without a supervisor nothing would start
    that incarnation until the client's 30 s read timeout ran out.
    """
    stop = threading.Event()
    errors: list[AssertionError] = []

    def watch() -> None:
        while not stop.wait(0.1):
            try:
                heal(d, env)
            except AssertionError as exc:  # a restart that never got ready fails the test
                errors.append(exc)
                return

    watcher = threading.Thread(target=watch, name="chaos-supervisor", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(120)
    if errors:
        raise errors[0]


def call(d: Drill, env: dict[str, str], method: str, url: str, *, ok: tuple[int, ...],
         timeout: float = 120, **kw: Any) -> httpx.Response:
    """One request, retried across crashes (healing the platform) until its status is in
    ``ok``; what a patient client does."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        heal(d, env)
        try:
            resp = httpx.request(method, url, timeout=30, **kw)
            if resp.status_code in ok:
                return resp
            last = f"{resp.status_code} {resp.text[:300]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise AssertionError(f"{method} {url}: no answer in {ok} after {timeout}s (last: {last})")


def scenario(d: Drill, env: dict[str, str], learner: dict[str, str],
             scenario_id: str) -> dict[str, Any]:
    resp = call(d, env, "GET", f"{d.url('spawn')}/v1/scenarios/{scenario_id}", ok=(200,),
                headers=learner)
    body: dict[str, Any] = resp.json()
    return body


def wait_until(d: Drill, env: dict[str, str], learner: dict[str, str], scenario_id: str,
               wanted: set[str], timeout: float = 180) -> dict[str, Any]:
    """Poll the scenario (healing crashes) until its state is in ``wanted``."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = scenario(d, env, learner, scenario_id)
        if body.get("state") in wanted:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{scenario_id} stayed {body.get('state')} ({body.get('reason')}); "
                         f"wanted {wanted}")


def new_request_id() -> str:
    return "chaos-" + uuid.uuid4().hex[:16]


def assert_clean(d: Drill, scenario_ids: list[str]) -> None:
    """The invariants after a crash: every listed scenario ended (verdict or stated
    failure), one verdict each at most, complete result dirs, nothing leaked or held."""
    engine = create_engine(normalize_url(d.db_url))  # SQLite file or PostgreSQL database
    try:
        with engine.connect() as db:
            states = {r[0]: r[1] for r in db.execute(
                text("SELECT scenario_id, state FROM scenarios"))}
            slots = [tuple(r) for r in db.execute(
                text("SELECT scenario_id FROM quota_slots WHERE released_at IS NULL"))]
            pending = [tuple(r) for r in db.execute(
                text("SELECT request_id FROM idempotency_records WHERE status_code = 0"))]
    finally:
        engine.dispose()
    for sid in scenario_ids:
        assert states.get(sid) in TERMINAL, (sid, states.get(sid))
    assert all(state in TERMINAL for state in states.values()), states
    assert slots == [], f"quota slots still held: {slots}"
    assert pending == [], f"idempotency records left pending: {pending}"
    for sdir in (d.storage / "scenarios").glob("scn-*"):
        results = sdir / "results"
        if results.exists():
            assert {p.name for p in results.iterdir()} == RESULT_FILES, sorted(results.iterdir())
            assert states.get(sdir.name) == "completed", (sdir.name, states.get(sdir.name))
        assert not list(sdir.rglob("*.tmp")), f"partial files in {sdir}"
    assert [n for n in list_netns() if n.startswith(d.prefix + ".")] == []
    assert [n for n in Cgroups.detect().list_top() if n.startswith(d.prefix + ".")] == []
    runtime = LocalRuntime(str(d.storage / "runtime"), d.prefix)
    try:
        assert runtime.list() == []
    finally:
        runtime.close()
    state_dir = str(d.storage / "runtime")
    held = [uid for uid, owner in UidPool().claimed().items() if owner.startswith(state_dir)]
    assert held == [], f"lab uids still claimed: {held}"


def verdicts_for(d: Drill, scenario_id: str) -> int:
    """How many finalized verdicts the scoreboard recorded (audit entries)."""
    log = d.storage / "scenarios" / scenario_id / "audit.jsonl"
    if not log.exists():
        return 0
    return sum('"score.finalized"' in line for line in log.read_text().splitlines())


def finalized_verdicts(d: Drill, scenario_id: str, timeout: float = 120) -> int:
    """``verdicts_for`` once the verdict has been finalized (bounded wait). The scoreboard
    writes the result files before it audits them, so a score can be served (and the
    scenario read ``completed``) a moment before its ``score.finalized`` entry exists."""
    deadline = time.monotonic() + timeout
    while verdicts_for(d, scenario_id) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    return verdicts_for(d, scenario_id)


def results_dir(d: Drill, scenario_id: str) -> Path:
    return d.results(scenario_id)
