"""A paced peer check (`forge.services.common.peer_check`): however many readiness runs
come, and however they end, the peer is asked once per ask window; an agreement stands
longer; an operator's run asks again (review BW: runs that timed out waiting each started
an ask of their own, so a slow peer got one ask per anonymous run)."""

from __future__ import annotations

import asyncio

import pytest

from forge.services.common import peer_check
from forge.services.common.peer_check import PacedCheck
from forge.services.common.readiness import FRESH, CheckFailed, Readiness

AGREED = "agree"


class Peer:
    """Answers each ask with the next of ``answers`` (an exception is raised), after
    ``delay_s`` and once ``gate`` (if any) is open; counts the asks."""

    def __init__(self, *answers: str | Exception, delay_s: float = 0.0,
                 gate: asyncio.Event | None = None) -> None:
        self.answers = list(answers)
        self.delay_s = delay_s
        self.gate = gate
        self.asks = 0

    async def ask(self) -> str:
        self.asks += 1
        await asyncio.sleep(self.delay_s)
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers[min(self.asks, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(peer_check, "monotonic", clock.monotonic)  # not asyncio's clock
    return clock


def _paced(peer: Peer) -> PacedCheck:
    return PacedCheck(peer.ask, lambda d: d == AGREED, agreed_for_s=30.0, retry_s=1.0)


def test_runs_at_once_share_one_ask(clock: Clock) -> None:
    peer = Peer(AGREED, delay_s=0.05)
    check = _paced(peer)

    async def many() -> list[str]:
        return await asyncio.gather(*(check.check() for _ in range(50)))

    assert asyncio.run(many()) == [AGREED] * 50
    assert peer.asks == 1


def test_an_agreement_stands_longer_than_anything_else(clock: Clock) -> None:
    peer = Peer(AGREED, CheckFailed("keys differ"), TypeError("odd answer"), AGREED)
    check = _paced(peer)

    async def run() -> None:
        assert await check.check() == AGREED
        clock.now += 29
        assert await check.check() == AGREED and peer.asks == 1  # agreement: 30 s
        clock.now += 2
        with pytest.raises(CheckFailed, match="keys differ"):
            await check.check()
        clock.now += 0.5
        with pytest.raises(CheckFailed):  # a disagreement stands 1 s, no new ask
            await check.check()
        assert peer.asks == 2
        clock.now += 1
        for _ in range(3):  # an answer that could not be read: held as well, not re-asked
            with pytest.raises(TypeError):
                await check.check()
        assert peer.asks == 3
        clock.now += 1
        assert await check.check() == AGREED and peer.asks == 4

    asyncio.run(run())


def test_an_operators_run_asks_again_but_not_more_than_once_a_second(clock: Clock) -> None:
    peer = Peer(AGREED)
    check = _paced(peer)

    async def run() -> None:
        await check.check()
        token = FRESH.set(True)
        try:
            await check.check()
            assert peer.asks == 1  # the last ask is younger than 1 s
            clock.now += 1
            await check.check()
            await check.check()
            assert peer.asks == 2
        finally:
            FRESH.reset(token)
        clock.now += 5
        await check.check()
        assert peer.asks == 2  # anyone else: the agreement stands

    asyncio.run(run())


def test_runs_that_give_up_waiting_neither_cancel_nor_repeat_the_ask() -> None:
    """A peer slower than the readiness timeout: each run times out, one ask goes on."""

    async def flood() -> tuple[Peer, list[dict[str, object]]]:
        gate = asyncio.Event()  # the peer answers only after the flood, however slow it is
        peer = Peer(AGREED, gate=gate)
        check = _paced(peer)
        readiness = Readiness()
        readiness.add("peer_keys", check.check, timeout_s=0.02)
        bodies = []
        for _ in range(10):
            bodies.append((await readiness.run())[1])
        gate.set()
        await asyncio.sleep(0.1)  # the ask ends meanwhile; its outcome is kept
        bodies.append((await readiness.run())[1])
        return peer, bodies

    peer, bodies = asyncio.run(flood())
    assert peer.asks == 1
    assert all("timed out" in str(b["checks"]["peer_keys"]["detail"]) for b in bodies[:10])
    assert bodies[-1]["checks"]["peer_keys"] == {"ok": True, "detail": AGREED}


def test_a_failure_found_before_the_peers_agree_again_refuses_nobody_after(
        clock: Clock) -> None:
    """spawn_service refuses spawns (503 keys_not_agreed) on the check's standing failure.
    The orchestrator restarted with the right keys a few seconds after the last failed ask:
    the next spawn was refused on that old finding (its new ask ran in the background), so
    the first learner after the fix was told to come back in a minute. A stale failure is
    asked again and that ask decides; while the peers still disagree, it refuses."""
    peer = Peer(CheckFailed("keys differ"), CheckFailed("keys differ"), AGREED)
    check = _paced(peer)

    async def run() -> None:
        with pytest.raises(CheckFailed):
            await check.check()
        assert await check.standing_failure(10.0) is not None  # the same ask: refused
        clock.now += 3
        assert await check.standing_failure(10.0) is not None  # asked again: still apart
        assert peer.asks == 2
        clock.now += 3  # the peer restarted with the right keys; nothing asked since
        assert await check.standing_failure(10.0) is None
        assert peer.asks == 3
        clock.now += 3
        assert await check.standing_failure(10.0) is None and peer.asks == 3  # agreement

    asyncio.run(run())


def test_a_failure_older_than_the_limit_is_asked_again_not_forgotten(clock: Clock) -> None:
    """The last failed ask is older than `max_age_s` (nobody ran readiness for a while, or
    a loaded machine took that long between the readiness run and the spawn): the spawn
    was let through on no finding, to fail at the orchestrator. The stale failure is asked
    again and that ask decides."""
    peer = Peer(CheckFailed("keys differ"), CheckFailed("keys differ"), AGREED)
    check = _paced(peer)

    async def run() -> None:
        with pytest.raises(CheckFailed):
            await check.check()
        clock.now += 30  # far past the 10 s a finding stands for
        assert await check.standing_failure(10.0) is not None  # asked again: still apart
        assert peer.asks == 2
        clock.now += 30
        assert await check.standing_failure(10.0) is None  # asked again: agreed
        assert peer.asks == 3

    asyncio.run(run())
