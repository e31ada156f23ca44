"""A cohort's LMS roster sync holds the cohort until its roster is stored, even when the
request is cancelled (the instructor's browser gone) while the worker thread writes.

Before, the guard was released with the request: a second sync could start and write the
same cohort's roster while the first worker was still writing it.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from forge.errors import ForgeError
from forge.services.spawn.web.roster_sync import one_sync, syncing


def test_a_cancelled_sync_keeps_the_cohort_busy_until_its_store_ends() -> None:
    started, finish = threading.Event(), threading.Event()

    def slow_store() -> int:
        started.set()
        finish.wait(60)
        return 1

    async def request() -> int:
        with one_sync("cohort-cancel") as sync:
            return await sync.store(slow_store)

    async def scenario() -> None:
        task = asyncio.create_task(request())
        await asyncio.to_thread(started.wait, 60)
        task.cancel()
        for _ in range(20):  # let the cancellation run its course
            await asyncio.sleep(0)
        try:
            assert syncing("cohort-cancel")  # the worker still writes
            with pytest.raises(ForgeError) as busy, one_sync("cohort-cancel"):
                pass
            assert busy.value.code == "lti_roster_busy"
        finally:
            finish.set()
            await asyncio.gather(task, return_exceptions=True)
        for _ in range(6000):  # the worker releases just after the store returns
            if not syncing("cohort-cancel"):
                break
            await asyncio.sleep(0.01)
        assert not syncing("cohort-cancel")  # stored: the next sync may run

    asyncio.run(scenario())


def test_a_failed_store_frees_the_cohort() -> None:
    def broken() -> int:
        raise RuntimeError("store down")

    async def request() -> int:
        with one_sync("cohort-fail") as sync:
            return await sync.store(broken)

    with pytest.raises(RuntimeError, match="store down"):
        asyncio.run(request())
    assert not syncing("cohort-fail")
