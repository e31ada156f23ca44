"""Choosing the artifact store (`FORGE_ARTIFACT_STORE`) and its JetStream implementation.

`ObjectStoreArtifactStore` keeps results in the Object Store bucket `forge-artifacts`
(`forge.bus.artifact_objects`), so a scoreboard replica on any machine, or an operator's
`forge artifacts fetch`, reads the same results without a shared disk. Scoring runs in a
worker thread; the store hands each bus call to the event loop that owns the connection
(`bind` at start) and waits for it, so the interface stays synchronous like the filesystem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from forge.bus.artifact_objects import (
    RetentionListing,
    delete_result_files,
    read_result_file,
    read_result_files,
    replace_signature_file,
    retention_listing,
    scored_ids,
    write_result_files,
)
from forge.bus.connection import BusConnection
from forge.bus.errors import BusUnavailable
from forge.bus.permissions import ARTIFACT_BUCKET
from forge.config.settings import Settings
from forge.evidence.artifact_store import ArtifactStore, FilesystemArtifactStore
from forge.evidence.artifacts import (
    RESULT_FILE_NAMES,
    Artifacts,
    ResultConflict,
    ResultsWritten,
)
from forge_verify.bundle import sha256_hex
from forge_verify.score import require_scenario_id
from forge_verify.verdict import SCORE_NAME

T = TypeVar("T")
CALL_TIMEOUT_S = 30.0


class ObjectStoreArtifactStore:
    """Results in the JetStream Object Store (multi-machine installs)."""

    def __init__(self, connection: BusConnection, replicas: int = 1) -> None:
        self.connection = connection
        self.replicas = replicas
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run_listing: RetentionListing | None = None  # the current retention run's

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop that owns the connection (call at start, from that loop)."""
        self._loop = loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise BusUnavailable("artifact store: not started (no event loop bound)")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(CALL_TIMEOUT_S)
        except TimeoutError:
            future.cancel()
            raise BusUnavailable(f"artifact store: no answer in {CALL_TIMEOUT_S:.0f} s") \
                from None

    def write(self, artifacts: Artifacts) -> ResultsWritten:
        """Store the files once; identical results again are a no-op, others conflict."""
        sid = require_scenario_id(artifacts.scenario_id)
        files = artifacts.files()

        async def go() -> bool:
            return await write_result_files(self.connection.jetstream(), sid, files,
                                            replicas=self.replicas)

        created = self._run(go())
        if not created:
            existing = self.read(sid) or {}
            differing = [n for n in (SCORE_NAME, artifacts.bundle_name)
                         if existing.get(n) != files[n]]
            if differing:
                raise ResultConflict(sid, differing)
        return ResultsWritten(Path(ARTIFACT_BUCKET) / sid, created,
                              sha256_hex(artifacts.score_json), artifacts.bundle_name,
                              sha256_hex(artifacts.bundle))

    def read(self, scenario_id: str) -> dict[str, bytes] | None:
        """The stored files, or None."""
        sid = require_scenario_id(scenario_id)

        async def go() -> dict[str, bytes] | None:
            return await read_result_files(self.connection.jetstream(), sid)

        return self._run(go())

    def score_stamps(self) -> dict[str, object]:
        """The digest of each stored score.json, by scenario id."""
        async def go() -> dict[str, str]:
            return await scored_ids(self.connection.jetstream())

        return dict(self._run(go()))

    def read_score(self, scenario_id: str) -> bytes | None:
        """score.json's bytes (only that object is downloaded), or None."""
        return self.read_file(scenario_id, SCORE_NAME)

    def read_file(self, scenario_id: str, name: str) -> bytes | None:
        """One result file (only that object is downloaded), or None; a name that is not
        a result file's is None."""
        sid = require_scenario_id(scenario_id)
        if name not in RESULT_FILE_NAMES:
            return None

        async def go() -> bytes | None:
            return await read_result_file(self.connection.jetstream(), sid, name)

        return self._run(go())

    def _listing(self) -> RetentionListing:
        async def go() -> RetentionListing:
            return await retention_listing(self.connection.jetstream())

        return self._run(go())

    def retention_ids(self) -> list[str]:
        """Ids whose score.json is in the bucket. Starts a retention run: both buckets are
        listed once here, and the run's other calls use that listing."""
        self._run_listing = self._listing()
        return self._run_listing.scored

    def interrupted_deletes(self) -> list[str]:
        """Ids whose `.deleting` marker outlived their score.json (a delete cut short)."""
        listing = self._run_listing or self._listing()
        return listing.interrupted

    def delete(self, scenario_id: str) -> None:
        """Delete the four objects and the scenario's evidence packs (idempotent)."""
        sid = require_scenario_id(scenario_id)
        listing = self._run_listing
        packs = None if listing is None else listing.packs.get(sid, [])

        async def go() -> None:
            await delete_result_files(self.connection.jetstream(), sid,
                                      replicas=self.replicas, packs=packs)

        self._run(go())


    def replace_signature_file(self, scenario_id: str, name: str, data: bytes) -> bool:
        """Replace the verdict.sig or verdict.pub object; False when the set is gone."""
        sid = require_scenario_id(scenario_id)

        async def go() -> bool:
            return await replace_signature_file(self.connection.jetstream(), sid, name, data,
                                                replicas=self.replicas)

        return self._run(go())


def make_artifact_store(settings: Settings, connection: BusConnection | None) -> ArtifactStore:
    """The store `FORGE_ARTIFACT_STORE` names (`jetstream` needs the service's connection)."""
    if settings.artifact_store == "jetstream":
        if connection is None:
            raise ValueError("FORGE_ARTIFACT_STORE=jetstream needs a NATS connection")
        return ObjectStoreArtifactStore(connection, settings.nats_replicas)
    return FilesystemArtifactStore(settings.storage_root)


__all__ = ["ObjectStoreArtifactStore", "make_artifact_store"]
