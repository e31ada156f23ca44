"""Build slots serve waiting creates in arrival order (a newcomer never takes a turn)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from forge.runtime.local import LocalRuntime
from forge.runtime.local.fifo_slots import FifoSlots
from tests.runtime.helpers import simple_lab

from ..support.polling import until


def test_a_released_slot_goes_to_the_longest_waiter_not_to_a_newcomer() -> None:
    slots = FifoSlots(1)
    slots.acquire()
    order: list[str] = []

    def take(name: str) -> None:
        with slots:
            order.append(name)

    waiters = []
    for name in ("a", "b", "c"):
        waiters.append(threading.Thread(target=take, args=(name,)))
        waiters[-1].start()
        until(lambda n=len(waiters): slots.waiting() == n, "the waiter queued", interval_s=0.005)
    slots.release()
    take("late")  # arrives as the slot is handed on: waits behind a, b and c
    for t in waiters:
        t.join(10)
    assert order == ["a", "b", "c", "late"]
    assert slots.waiting() == 0


class _Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: object) -> None:
    raise _Interrupted


def test_a_waiter_interrupted_leaves_the_line_and_takes_no_slot() -> None:
    """An interrupted wait (a signal's exception in the main thread) leaves the line: the
    next release goes to the waiter behind it, and no slot is lost or taken twice."""
    slots = FifoSlots(2)
    slots.acquire()
    slots.acquire()
    got: list[str] = []
    previous = signal.signal(signal.SIGUSR1, _interrupt)
    try:
        # To the main thread itself: a signal sent to the process may be taken by any of
        # its threads (xdist workers keep earlier tests' pools), which only sets Python's
        # flag; the main thread then slept on in its lock until the test's timeout (CI).
        main = threading.main_thread().ident
        assert main is not None
        timer = threading.Thread(target=lambda: (
            until(lambda: slots.waiting() == 1, "the waiter queued", interval_s=0.005),
            signal.pthread_kill(main, signal.SIGUSR1)))
        timer.start()
        with pytest.raises(_Interrupted):
            slots.acquire()  # the main thread waits; the signal interrupts it
        timer.join(10)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert slots.waiting() == 0
    behind = threading.Thread(target=lambda: (slots.acquire(), got.append("behind")))
    behind.start()
    until(lambda: slots.waiting() == 1, "the waiter queued", interval_s=0.005)
    slots.release()  # to "behind", not to the one that left
    behind.join(10)
    assert got == ["behind"] and slots.waiting() == 0
    slots.release()
    slots.release()
    for _ in range(2):  # both slots are free again: two takes without waiting
        slots.acquire()
    assert slots.waiting() == 0
    with pytest.raises(ValueError):
        FifoSlots(0)


@pytest.mark.root
def test_the_runtime_builds_waiting_labs_first_come_first_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runtime's creates wait for their build in line (the wiring: a plain semaphore
    also wakes these in order; a newcomer taking a turn is the first test's)."""
    rt = LocalRuntime(str(tmp_path / "state"), prefix="f" + str(time.monotonic_ns())[-4:],
                      build_slots=1)
    built: list[str] = []
    hold = threading.Event()

    def build(plan: object, roots: object) -> None:  # records the turn, builds nothing
        lab_id = plan.lab_id  # type: ignore[attr-defined]
        built.append(lab_id)
        if lab_id == "first":
            hold.wait(10)

    monkeypatch.setattr(rt, "_build", build)
    threads = [threading.Thread(target=rt.create, args=(simple_lab("first"),))]
    threads[0].start()
    until(lambda: built == ["first"], "the first build", interval_s=0.005)
    for i, name in enumerate(("one", "two", "three")):
        threads.append(threading.Thread(target=rt.create, args=(simple_lab(name),)))
        threads[-1].start()
        until(lambda i=i: rt._build_slots.waiting() == i + 1, "the build queued",
              interval_s=0.005)
    hold.set()
    for t in threads:
        t.join(10)
    assert built == ["first", "one", "two", "three"]
    rt.close()
