"""Verdicts whose chain entry is written but not yet sealed, kept on this replica's disk.

A scoreboard replica appends `score.finalized` to its own copy of a scenario's chain, commits
the shared store's marker, then seals the chain (a signed checkpoint) and adds the verdict to
its global log. A crash between the entry and the seal must not lose the seal for good: the
marker tells every other replica the verdict is audited, so none of them acts, and this
replica may never get the completion again. So before the entry is written an empty file
`<STORAGE_ROOT>/scoreboard/unsealed/<scenario_id>` is created, and it is removed only once
the seal and the global-log entry are written; the scoreboard's sweep (at start and
periodically) finishes any it finds. Listing one small directory keeps the sweep cheap.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from forge_verify.score import SCENARIO_ID_RE

CHECKPOINT = "audit.checkpoint"
FINALIZED = "score.finalized"


def unsealed_dir(storage_root: Path) -> Path:
    """Where this replica keeps its not-yet-sealed verdicts."""
    return storage_root / "scoreboard" / "unsealed"


def mark_unsealed(storage_root: Path, scenario_id: str) -> None:
    """Record (durably) that `scenario_id`'s verdict entry is about to be written."""
    folder = unsealed_dir(storage_root)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / scenario_id, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def is_unsealed(storage_root: Path, scenario_id: str) -> bool:
    """Whether `scenario_id`'s verdict may still want its seal or global-log entry."""
    return (unsealed_dir(storage_root) / scenario_id).exists()


def clear_unsealed(storage_root: Path, scenario_id: str) -> None:
    """The verdict is sealed and in the global log (or was never written)."""
    (unsealed_dir(storage_root) / scenario_id).unlink(missing_ok=True)


def unsealed(storage_root: Path, older_than_s: float) -> list[str]:
    """Scenario ids marked unsealed at least `older_than_s` ago (younger ones are being
    scored right now)."""
    folder = unsealed_dir(storage_root)
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than_s
    found = []
    for entry in os.scandir(folder):
        if SCENARIO_ID_RE.fullmatch(entry.name) and entry.stat().st_mtime <= cutoff:
            found.append(entry.name)
    return sorted(found)


def _events(chain: bytes) -> Iterator[dict[str, Any]]:
    for line in chain.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            yield entry


def last_verdict(chain: bytes) -> tuple[dict[str, Any] | None, bool]:
    """The data of the chain's last `score.finalized` entry (None if it has none) and
    whether an `audit.checkpoint` follows it (sealed), whatever else was appended between
    (on a one-machine install the orchestrator's `scenario.state` shares the chain)."""
    data: dict[str, Any] | None = None
    sealed = False
    for entry in _events(chain):
        if entry.get("event") == FINALIZED and isinstance(entry.get("data"), dict):
            data, sealed = entry["data"], False
        elif entry.get("event") == CHECKPOINT and data is not None:
            sealed = True
    return data, sealed


def in_global_log(global_lines: Iterable[bytes], scenario_id: str,
                  score_sha256: str) -> bool:
    """Whether a global log's lines (`AuditLog.lines`, read one at a time: the log grows
    with every verdict of the installation, and was read whole into memory for each
    verdict a crash left unsealed) hold the `score.finalized` entry of this verdict."""
    needle = scenario_id.encode()
    for line in global_lines:
        if needle not in line or FINALIZED.encode() not in line:
            continue
        if (scenario_id, score_sha256) in finalized_verdicts(line):
            return True
    return False


def finalized_verdicts(global_chain: bytes) -> set[tuple[str, str]]:
    """(scenario id, score sha256) of every `score.finalized` entry of a global log."""
    found: set[tuple[str, str]] = set()
    for line in global_chain.splitlines():
        if FINALIZED.encode() not in line:
            continue
        for entry in _events(line):
            data = entry.get("data")
            if entry.get("event") == FINALIZED and isinstance(data, dict):
                found.add((str(data.get("scenario_id")), str(data.get("score_sha256"))))
    return found


__all__ = ["clear_unsealed", "finalized_verdicts", "in_global_log", "is_unsealed",
           "last_verdict", "mark_unsealed", "unsealed", "unsealed_dir"]
