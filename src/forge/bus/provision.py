"""Creating the Forge streams from synchronous code (the embedded server, `forge nats`)."""

from __future__ import annotations

import asyncio
import threading

from forge.bus.bounded_close import close_client
from forge.bus.dial import connect
from forge.bus.permissions import BusCredentials
from forge.bus.subjects import FORGE_STREAMS, StreamSpec, ensure_streams


async def provision_streams_async(
    url: str, credentials: BusCredentials, specs: tuple[StreamSpec, ...] = FORGE_STREAMS,
    timeout: float = 10.0,
) -> list[str]:
    """Connect as `credentials`, ensure the streams exist with Forge's config, disconnect."""
    nc = await connect(url, "forge-provision", credentials=credentials, timeout=timeout)
    try:
        return await ensure_streams(nc.jetstream(), specs)
    finally:
        await close_client(nc, 5.0)


def provision_streams(
    url: str, credentials: BusCredentials, specs: tuple[StreamSpec, ...] = FORGE_STREAMS
) -> list[str]:
    """Blocking `provision_streams_async`, safe to call with or without a running loop."""
    result: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(provision_streams_async(url, credentials, specs)))
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=run, name="forge-provision", daemon=True)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return result[0]
