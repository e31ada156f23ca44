"""Attack: tampering with the evidence a lab node ships to the scoreboard on the bus.

Services share no disk (issue 15 item 4): the full check outputs and the scenario's audit
log through `scenario.completed` travel in the completion event (inline pack) or as an
Object Store object the event names (name = scenario id + sha256, digest, size). Before,
the scoreboard read them from a directory it shared with the node, and on separate storage
roots it could not score at all. Whoever can change what travels (an inline pack, a bucket
object, the reference) must not get a verdict: a changed output, a changed audit entry, a
wrong digest, an oversized object or another scenario's evidence is refused as a failed
event with the reason, and no result is written. The scoreboard here has its own storage
root; the node's files live in another one it never reads.
Real nats-server (bus permissions on), real scoreboard app and consumer, real SQLite.
"""

# ruff: noqa: F811 - `make_board` is a fixture imported from tests/scoreboard/conftest.py

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from forge.audit.log import scenario_log_path
from forge.bus.evidence_pack import (
    INLINE_PACK_LIMIT,
    MAX_PACK_BYTES,
    EvidencePack,
    encode_pack,
    object_name,
)
from forge.bus.object_buckets import put_object
from forge.bus.permissions import EVIDENCE_BUCKET
from forge.config import Settings, load_settings

from ..scoreboard.conftest import (
    Board,
    Completion,
    MakeBoard,
    build_completion,
    make_board,  # noqa: F401 - the live-scoreboard fixture
    wait_for,
)
from ..services.conftest import prod_environ


def node_settings(tmp_path: Path) -> Settings:
    """A lab node's settings: same secrets, its own storage root."""
    return load_settings(prod_environ(tmp_path / "node"))


def pack_of(node: Settings, done: Completion, **outputs: bytes) -> EvidencePack:
    """What the node ships: its audit log through scenario.completed and its captures."""
    sid = done.scenario_id
    evidence = node.storage_root / "scenarios" / sid / "evidence"
    files = {p.name: p.read_bytes() for p in evidence.iterdir()}
    files.update(outputs)
    return EvidencePack(sid, scenario_log_path(node.storage_root, sid).read_bytes(), files)


def inline(done: Completion, pack: EvidencePack | bytes) -> dict[str, Any]:
    raw = pack if isinstance(pack, bytes) else encode_pack(pack)
    return done.variant(evidence_pack=base64.b64encode(raw).decode())


async def upload(board: Board, name: str, data: bytes) -> None:
    """Put an object as the node does (the board's test publisher is the orchestrator)."""
    await put_object(board.publisher.connection.jetstream(), EVIDENCE_BUCKET, name, data,
                     replicas=1)


def reference(name: str, data: bytes, **changes: Any) -> dict[str, Any]:
    ref = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    ref.update(changes)
    return ref


async def refused(board: Board, body: dict[str, Any], msg_id: str) -> str:
    """Publish `body`; it must end as a failed event of its scenario with no verdict."""
    sid = body["scenario_id"]
    before = len(board.failed_events())
    await board.publish(body, msg_id=msg_id)
    rows = await wait_for(lambda: board.failed_events()[before:], what=f"{msg_id} refused")
    assert rows[0].scenario_id == sid
    assert not board.results_dir(sid).exists()
    return str(rows[0].error)


async def test_tampered_evidence_is_refused_and_honest_evidence_scores(
        make_board: MakeBoard, tmp_path: Path) -> None:
    board = await make_board()
    node = node_settings(tmp_path)
    done = build_completion(node, record_in=board.settings)
    sid = done.scenario_id
    honest = pack_of(node, done)
    assert not (board.settings.storage_root / "scenarios" / sid).exists()

    # Changed output: the capture no longer has the hash the node recorded.
    forged = pack_of(node, done, **{"route-present.0.stdout": b"10.9.9.0/24 via 10.61.1.1\n"})
    assert "evidence_mismatch" in await refused(board, inline(done, forged), "t-output")

    # Changed audit entry (chain not recomputed): the hash chain is broken.
    log = honest.audit_log.replace(b'"reason":"test"', b'"reason":"tset"', 1)
    error = await refused(board, inline(done, EvidencePack(sid, log, honest.outputs)), "t-log")
    assert "audit_log_invalid" in error and "rewritten" in error

    # An audit log cut before its scenario.completed entry is not the whole story.
    cut = b"".join(honest.audit_log.splitlines(keepends=True)[:-1])
    error = await refused(board, inline(done, EvidencePack(sid, cut, honest.outputs)), "t-cut")
    assert "audit_log_invalid" in error

    # Another scenario's pack carried inline.
    other = build_completion(node, record_in=board.settings)
    error = await refused(board, inline(done, pack_of(node, other)), "t-other-inline")
    assert "evidence_wrong_scenario" in error

    # Object Store: the object named by its sha256 holds other bytes (wrong hash).
    raw = encode_pack(honest)
    swapped = encode_pack(forged)
    name = object_name(sid, raw)
    await upload(board, name, swapped)
    body = done.variant(evidence_object=reference(name, raw, size=len(swapped)))
    assert "evidence_hash_mismatch" in await refused(board, body, "t-obj-hash")

    # A reference whose sha256 is not the one in its name.
    body = done.variant(evidence_object=reference(name, raw, sha256="0" * 64))
    assert "evidence_hash_mismatch" in await refused(board, body, "t-ref-hash")

    # Oversized: the object is larger than the event says (refused before download), and a
    # reference above the bound.
    big = raw + b" " * (INLINE_PACK_LIMIT * 2)
    big_name = object_name(sid, big)
    await upload(board, big_name, big)
    body = done.variant(evidence_object=reference(big_name, big, size=len(raw)))
    assert "evidence_too_large" in await refused(board, body, "t-obj-size")
    body = done.variant(evidence_object=reference(big_name, big, size=MAX_PACK_BYTES + 1))
    assert "evidence_too_large" in await refused(board, body, "t-ref-size")

    # Another scenario's object, by name, and a pack of another scenario under this name.
    other_raw = encode_pack(pack_of(node, other))
    other_name = object_name(other.scenario_id, other_raw)
    await upload(board, other_name, other_raw)
    body = done.variant(evidence_object=reference(other_name, other_raw))
    assert "evidence_wrong_scenario" in await refused(board, body, "t-obj-other")
    hijack = f"{sid}.{hashlib.sha256(other_raw).hexdigest()}"
    await upload(board, hijack, other_raw)
    body = done.variant(evidence_object=reference(hijack, other_raw))
    assert "evidence_wrong_scenario" in await refused(board, body, "t-obj-hijack")

    # Nothing was adopted from any refused event; the honest object then scores.
    assert not scenario_log_path(board.settings.storage_root, sid).exists()
    await upload(board, name, raw)
    await board.publish(done.variant(evidence_object=reference(name, raw)), msg_id="honest")
    results = board.results_dir(sid)
    await wait_for(results.is_dir, what="honest verdict")
    doc = json.loads((results / "score.json").read_bytes())
    assert (doc["passed"], doc["total"]) == (2, 2)
    # The scoreboard keeps its own copy of the chain and appends its verdict to it (after
    # the results are in place: wait for the entry, not only for the results).
    chain = scenario_log_path(board.settings.storage_root, sid)
    kept = await wait_for(lambda: (b'"event":"score.finalized"' in (data := chain.read_bytes())
                                   and data), what="the verdict's audit entry")
    assert kept.startswith(honest.audit_log)
