"""A launch that fails between the move to `launching` and the build (issue 19: the lab is
now built while the move's audit entry is written and announced).

The disk filling up under the audit log, NATS going away at the moment of the announce, or a
renderer failing on a template, is injected where it would surface (the audit write, the
announce, the renderer): none can be made to happen at that moment on demand with the real
parts here (the NATS drill stops the real server, but cannot choose the moment).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta
from typing import Any

import nats as nats_client
import pytest

from forge.audit.log import scenario_log
from forge.bus.errors import BusUnavailable
from forge.lifecycle import states
from forge.lifecycle.store import Transition
from forge.runtime import BuildsStopped
from forge.runtime.local import LocalRuntime
from forge.services.orchestrator import launch_build, launcher, reaper
from forge.services.orchestrator.launch_resume import MAX_LAUNCH_ATTEMPTS
from forge.store.models import Scenario
from forge.templates.problems import Problem, TemplateError

from ..support.polling import until
from .conftest import OPERATOR, MakeOrch, Orch, spawn_event

SPAWN = "forge.spawn.requested"


def _announce_down_once(orch: Orch, monkeypatch: pytest.MonkeyPatch,
                        failed: list[str]) -> None:
    """The first launching announce meets a NATS outage (noted in `failed`)."""
    real_announce = orch.state.announce

    async def announce(transition: Transition, **kw: Any) -> None:
        if transition.to_state == states.LAUNCHING and not failed:
            failed.append(transition.scenario_id)
            raise BusUnavailable("NATS not connected")
        await real_announce(transition, **kw)

    monkeypatch.setattr(orch.state, "announce", announce)


def _launch(orch: Orch) -> tuple[str, Scenario]:
    """Publish a spawn and wait for its scenario to run (it must not fail)."""
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish(SPAWN, event)
    row = orch.wait_state(sid, states.RUNNING, states.FAILED)
    assert row.state == states.RUNNING, row.state_reason
    return sid, row


@pytest.mark.parametrize("fault", ["audit", "announce"])
def test_a_launch_that_fails_after_launching_is_resumed_by_its_redelivery(
        orch: Orch, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """The move to `launching` is stored, then its audit write (disk full) or its announce
    (NATS went down at that moment) fails: the lab built meanwhile is destroyed, not left
    running unaccounted, and the spawn event, redelivered, resumes the launch at once;
    before, the scenario sat in `launching` until the reaper's STUCK_LAUNCHING (2 min)
    and the learner waited that long after the outage was over."""
    real_audit, real_create, real_destroy = (launch_build.audit_move, orch.runtime.create,
                                             orch.runtime.destroy)
    failed: list[str] = []
    built: list[str] = []
    destroyed: list[str] = []

    def audit(root: Any, transition: Transition) -> None:
        if transition.to_state == states.LAUNCHING and not failed:  # full for a moment
            failed.append(transition.scenario_id)
            raise OSError(28, "No space left on device")
        real_audit(root, transition)

    def create(spec: Any) -> Any:
        info = real_create(spec)
        built.append(spec.lab_id)
        return info

    def destroy(lab_id: str) -> None:
        real_destroy(lab_id)
        destroyed.append(lab_id)

    if fault == "audit":
        monkeypatch.setattr(launch_build, "audit_move", audit)
    else:
        _announce_down_once(orch, monkeypatch, failed)
    monkeypatch.setattr(orch.runtime, "create", create)
    monkeypatch.setattr(orch.runtime, "destroy", destroy)
    sid, row = _launch(orch)
    assert failed == [sid]
    assert built == [sid, sid] and destroyed == [sid]  # the first build went, one lab runs
    assert [i.lab_id for i in orch.runtime.list()] == [sid]
    assert row.details["launch_attempts"] == 2
    # every move is in the scenario's audit log, the one whose write failed too (late)
    moves = [entry["data"]["to"] for entry in map(json.loads, scenario_log(
        orch.settings.storage_root, sid).read_bytes().splitlines())
        if entry["event"] == "scenario.state"]
    assert moves == [states.LAUNCHING, states.RUNNING], moves


async def _states_on_bus(url: str, scenario_id: str) -> list[str]:
    """The scenario's state events in the FORGE stream, in order, up to its `running`."""
    nc = await nats_client.connect(url)
    seen: list[str] = []
    try:
        sub = await nc.jetstream().subscribe("forge.scenario.*", ordered_consumer=True)
        while states.RUNNING not in seen:
            body = json.loads((await sub.next_msg(timeout=10)).data)  # a hang guard
            if body.get("scenario_id") == scenario_id:
                seen.append(body["state"])
    finally:
        await nc.close()
    return seen


@pytest.mark.parametrize("fault", ["announce", "build"])
def test_a_resumed_launch_is_seen_on_the_bus_as_launching_before_running(
        orch: Orch, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """Observers of the bus see every launch go launching → running. `announce`: the first
    attempt's launching announce met a NATS outage, and the resume that builds the lab
    again announces it (before, the bus showed running with no launching at all).
    `build`: the first announce went out and the build failed; the resume announces again
    under the same message id, and the bus still holds one launching event, not two."""
    real_create = orch.runtime.create
    failed: list[str] = []

    def create(spec: Any) -> Any:
        if not failed:
            failed.append(spec.lab_id)
            raise OSError("the build went away")
        return real_create(spec)

    if fault == "announce":
        _announce_down_once(orch, monkeypatch, failed)
    else:
        monkeypatch.setattr(orch.runtime, "create", create)
    sid, row = _launch(orch)
    assert failed == [sid] and row.details["launch_attempts"] == 2  # it was resumed
    seen = asyncio.run(_states_on_bus(orch.nats.admin_url, sid))
    assert seen == [states.LAUNCHING, states.RUNNING], seen


def test_a_template_that_does_not_render_fails_the_scenario(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering now comes before the move: its failure fails the scenario with the reason
    at once, as the build's failure did, instead of leaving it `pending` to expire."""

    def render(*_: Any) -> Any:
        raise TemplateError([Problem("spec.assets", "no such asset")], source="lab-netplus")

    monkeypatch.setattr(launcher, "render", render)
    event = spawn_event(orch.settings)
    orch.publish(SPAWN, event)
    row = orch.wait_state(str(event["scenario_id"]), states.FAILED, states.RUNNING)
    assert row.state == states.FAILED
    assert "lab could not be created" in row.state_reason
    assert "no such asset" in row.details["error"]  # for the operator's view, not the learner
    with orch.client() as client:
        seen = client.get(f"/v1/scenarios/{event['scenario_id']}", headers=OPERATOR).json()
    assert "no such asset" in seen["error"], seen
    assert not orch.runtime.list()


def test_a_redelivered_spawn_launching_on_another_node_is_left_to_that_node(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spawn durable is shared by every node: a node that does not hold the launching
    lab neither builds it nor keeps its event (that node's reaper resumes it; sending the
    event back would bounce it between the other nodes while the holder is full)."""
    from forge.services.orchestrator import app

    real_handle, real_create = app.handle_spawn, orch.runtime.create
    built: list[str] = []
    outcomes: list[str] = []

    def audit(root: Any, transition: Transition) -> None:
        if transition.to_state == states.LAUNCHING:
            # as if another node had taken it: its row names that node
            with orch.state.ctx.db.session() as sess:
                row = sess.get(Scenario, transition.scenario_id)
                assert row is not None
                row.node_id = "node-9"
            raise OSError(5, "Input/output error")  # (a full disk goes back to the queue)

    def create(spec: Any) -> Any:
        built.append(spec.lab_id)
        return real_create(spec)

    async def handle(state: Any, event: Any) -> None:
        try:
            await real_handle(state, event)
        except Exception as exc:
            outcomes.append(type(exc).__name__)
            raise
        outcomes.append("acknowledged")

    monkeypatch.setattr(launch_build, "audit_move", audit)
    monkeypatch.setattr(orch.runtime, "create", create)
    monkeypatch.setattr(app, "handle_spawn", handle)
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish(SPAWN, event)
    deadline = time.monotonic() + 60  # a hang guard, not a timing
    while "acknowledged" not in outcomes:
        assert time.monotonic() < deadline, outcomes
        time.sleep(0.05)
    assert outcomes == ["OSError", "acknowledged"]
    assert built == [sid]  # the first attempt only: nothing built for the other node's lab
    assert orch.row(sid).state == states.LAUNCHING
    assert sid not in {i.lab_id for i in orch.runtime.list()}


async def test_a_cancelled_launch_holds_its_lock_until_its_build_thread_ends() -> None:
    """A subscriber restart cancels a handler mid-build; the build's thread runs on, so
    the scenario's lock must not be released (a redelivery would resume, list the half-
    built lab as degraded and destroy it under the build) until that thread is done.
    The stand-in state carries only what `build_lab` touches before the lab exists."""
    import asyncio
    import threading
    from types import SimpleNamespace

    release = threading.Event()
    loop = asyncio.get_running_loop()

    async def blocking(fn: Any, *args: Any) -> Any:
        return await loop.run_in_executor(None, fn, *args)

    def create(spec: Any) -> Any:
        release.wait(30)
        return SimpleNamespace(hosts={})

    state = SimpleNamespace(blocking=blocking, building=blocking,
                            runtime=SimpleNamespace(create=create))
    lock = asyncio.Lock()

    async def handler() -> None:
        async with lock:
            await launch_build.build_lab(state, SimpleNamespace(lab_id="scn-0000000000000001"),  # type: ignore[arg-type]
                                        "PRO", "lab-netplus")

    task = asyncio.ensure_future(handler())
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.sleep(0.1)
    task.cancel()  # twice: a second cancel does not end the wait either
    await asyncio.sleep(0.1)
    assert lock.locked() and not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not lock.locked()


def test_a_launch_whose_build_a_shutdown_stopped_stays_launching_for_the_next_start(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shutdown during a burst stops builds still waiting for a slot (`stop_builds`): such
    a launch is not the lab's failure. Its scenario stays `launching` (the next start's
    resume builds it), nothing is built, and the learner is not told it failed."""
    real_create = orch.runtime.create
    stopped: list[str] = []

    def create(spec: Any) -> Any:
        try:
            return real_create(spec)
        except BuildsStopped:
            stopped.append(spec.lab_id)
            raise

    monkeypatch.setattr(orch.runtime, "create", create)
    monkeypatch.setattr(reaper, "STUCK_LAUNCHING", timedelta(0))  # resumed at each pass
    orch.runtime.stop_builds()
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish(SPAWN, event)
    row = orch.wait_state(sid, states.LAUNCHING, states.FAILED, states.RUNNING)
    # The reaper resumes the launching scenario at every pass (half a second here): each
    # resume is stopped too, and none may count as an attempt (three would fail it).
    deadline = time.monotonic() + 60
    while len(stopped) < 2 + MAX_LAUNCH_ATTEMPTS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(stopped) == {sid} and len(stopped) >= 2 + MAX_LAUNCH_ATTEMPTS
    row = orch.row(sid)
    assert row.state == states.LAUNCHING, row.state_reason
    assert not orch.runtime.list()
    entries = [json.loads(line) for line in scenario_log(
        orch.settings.storage_root, sid).path.read_text().splitlines()]
    assert states.FAILED not in [e.get("data", {}).get("to") for e in entries]
    notes = [str(e["data"].get("note")) for e in entries if e.get("event") == "scenario.note"]
    # every resume was attempt 2, its attempt put back each time
    assert sum("(attempt 2)" in n for n in notes) >= 1 + MAX_LAUNCH_ATTEMPTS
    assert not [n for n in notes if "(attempt 3)" in n]


def test_a_shutdown_during_a_burst_builds_only_what_was_under_way(
        make_orch: MakeOrch, monkeypatch: pytest.MonkeyPatch) -> None:
    """The orchestrator stops while every build slot is busy and three more launches wait
    for one: the builds under way finish and run; the waiting three build nothing (their
    scenarios stay `launching`, none fails, no launch attempt is used up) and the next
    start of the node builds them."""
    first = make_orch()
    real_build = first.runtime._build
    entered: list[str] = []
    go_on = threading.Event()

    def slow_build(plan: Any, roots: Any) -> None:
        entered.append(plan.lab_id)
        assert go_on.wait(60)  # held until the stop has begun
        real_build(plan, roots)

    monkeypatch.setattr(first.runtime, "_build", slow_build)
    slots = first.runtime.build_slots
    events = [spawn_event(first.settings, subject=f"learner-{n}") for n in range(slots + 3)]
    sids = [str(e["scenario_id"]) for e in events]
    for event in events:
        first.publish(SPAWN, event)
    for sid in sids:
        first.wait_state(sid, states.LAUNCHING, states.RUNNING, states.FAILED)
    deadline = time.monotonic() + 30
    while len(entered) < slots and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(entered) == slots
    stopping = threading.Thread(target=first.stop)
    stopping.start()
    until(lambda: first.runtime.builds_stopped, "the stop never stopped the builds")
    go_on.set()
    stopping.join(120)
    rows = {sid: first.row(sid) for sid in sids}
    assert sorted(entered) == sorted(s for s, r in rows.items() if r.state == states.RUNNING)
    waiting = [s for s, r in rows.items() if r.state != states.RUNNING]
    assert len(waiting) == 3
    assert all(rows[s].state == states.LAUNCHING for s in waiting), rows
    assert all(rows[s].details.get("launch_attempts", 1) == 1 for s in waiting)
    again = make_orch()  # the node's next start resumes the launches left waiting
    for sid in waiting:
        row = again.wait_state(sid, states.RUNNING, states.FAILED, timeout=120)
        assert row.state == states.RUNNING, row.state_reason
    assert len(entered) == slots  # the first node built no more after its stop


def test_a_resume_a_shutdown_cancelled_while_it_waited_for_a_slot_keeps_its_attempts(
        make_orch: MakeOrch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's start resumes its launching scenario (attempt 2) while every build slot is
    busy; the node stops before the resume gets one. The stop cancels the resume, its
    create is refused, and the attempt is put back: three such stops must not fail a lab
    that never began building."""
    first = make_orch()
    first.runtime.stop_builds()  # the first launch is put off: launching, attempt 1
    event = spawn_event(first.settings)
    sid = str(event["scenario_id"])
    first.publish(SPAWN, event)
    first.wait_state(sid, states.LAUNCHING, states.RUNNING, states.FAILED)
    first.stop()
    assert first.row(sid).state == states.LAUNCHING
    hold, held = threading.Event(), threading.Semaphore(0)
    real_init = LocalRuntime.__init__

    def init(self: LocalRuntime, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        for _ in range(self.build_slots):  # every slot busy with someone else's build
            self._build_slots.acquire()
        held.release()

        def free() -> None:
            assert hold.wait(120)
            for _ in range(self.build_slots):
                self._build_slots.release()

        threading.Thread(target=free, daemon=True).start()

    real_create = LocalRuntime.create
    creating = threading.Event()

    def create(self: LocalRuntime, spec: Any) -> Any:
        creating.set()
        return real_create(self, spec)

    monkeypatch.setattr(LocalRuntime, "__init__", init)
    monkeypatch.setattr(LocalRuntime, "create", create)
    again = make_orch()
    assert held.acquire(timeout=30)
    assert creating.wait(30), "the start never resumed the launch"  # its create waits
    assert again.row(sid).details.get("launch_attempts", 1) == 2
    stopping = threading.Thread(target=again.stop)
    stopping.start()
    until(lambda: again.runtime.builds_stopped, "the stop never stopped the builds")
    hold.set()
    stopping.join(120)
    row = again.row(sid)
    assert row.state == states.LAUNCHING, row.state_reason
    assert row.details.get("launch_attempts", 1) == 1
    assert not again.runtime.list()


def test_the_build_threads_outnumber_any_build_slot_setting(make_orch: MakeOrch) -> None:
    """FORGE_BUILD_SLOTS goes to 256: the orchestrator's build threads are not what caps
    the builds under way (each slot needs a thread, and claims and waits need more)."""
    orch = make_orch(FORGE_BUILD_SLOTS="200")
    assert orch.settings.build_slots == 200
    assert orch.state.builds._max_workers > 200
