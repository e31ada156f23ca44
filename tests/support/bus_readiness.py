"""A service's `nats` readiness check run on its own over one publisher, once or until it
passes (within a bound: the client reconnects and JetStream recovers on their own)."""

from __future__ import annotations

import asyncio
from typing import Any

from forge.bus import Publisher
from forge.bus.subjects import STREAM
from forge.services.common.bus import jetstream_check
from forge.services.common.readiness import Readiness


async def nats_readiness(publisher: Publisher, timeout_s: float = 3.0,
                         ) -> tuple[bool, dict[str, Any]]:
    """(ready, body) of a readiness with only the `nats` check over ``publisher``."""
    readiness = Readiness()
    readiness.add("nats", lambda: jetstream_check(publisher, STREAM), timeout_s=timeout_s)
    return await readiness.run()


async def until_ready(publisher: Publisher, bound_s: float, timeout_s: float = 3.0,
                      ) -> dict[str, Any]:
    """The readiness body once it passes, or the last one at ``bound_s``."""
    deadline = asyncio.get_running_loop().time() + bound_s
    while True:
        ok, body = await nats_readiness(publisher, timeout_s)
        if ok or asyncio.get_running_loop().time() > deadline:
            return body
        await asyncio.sleep(0.2)
