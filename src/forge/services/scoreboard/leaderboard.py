"""Per-tenant leaderboard and stats, read from the stored score.json files.

The stored results are the source of truth (retention deletes them, and the board follows);
they are read through the artifact store (`forge.evidence.artifact_store`). Each score.json
is parsed once and cached by the store's stamp of it (mtime and size on disk, the digest in
the Object Store), so a board is a listing plus cheap lookups. Only the caller's tenant is
ever included.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.evidence.artifact_store import ArtifactStore, FilesystemArtifactStore
from forge_verify.score import CRITERION_ID_RE, SCENARIO_ID_RE


@dataclass(frozen=True)
class ScoreRow:
    """The leaderboard-relevant facts of one verdict (and, for the instructor dashboard,
    the ids of the criteria it failed)."""

    scenario_id: str
    tenant_id: str
    subject: str
    track: str
    score: float
    passed: int
    total: int
    completed_at: str
    failed: tuple[str, ...] = ()


def _failed(criteria: object) -> tuple[str, ...]:
    if not isinstance(criteria, list):
        return ()
    return tuple(str(c["id"]) for c in criteria if isinstance(c, dict)
                 and c.get("passed") is not True
                 and CRITERION_ID_RE.fullmatch(str(c.get("id", ""))))


def parse_score(data: bytes | None) -> ScoreRow | None:
    """One score.json's facts, or None when absent, unreadable or its score is not a finite
    number (NaN or infinity would break every JSON answer and every ranking)."""
    if data is None:
        return None
    try:
        doc = json.loads(data)
        row = ScoreRow(str(doc["scenario_id"]), str(doc["tenant_id"]), str(doc["subject"]),
                       str(doc["track"]), float(doc["score"]), int(doc["passed"]),
                       int(doc["total"]), str(doc["completed_at"]), _failed(doc.get("criteria")))
    except (ValueError, KeyError, TypeError, OverflowError):
        return None
    return row if math.isfinite(row.score) else None


class ScoreIndex:
    """Lists the stored score.json files through the artifact store, caching parsed rows."""

    def __init__(self, store: ArtifactStore | Path) -> None:
        self.store: ArtifactStore = (FilesystemArtifactStore(store)
                                     if isinstance(store, Path) else store)
        self._cache: dict[str, tuple[object, ScoreRow | None]] = {}
        self._lock = threading.Lock()

    def rows(self) -> list[ScoreRow]:
        """Every readable verdict currently stored."""
        found: list[ScoreRow] = []
        stamps = self.store.score_stamps()
        for sid, stamp in stamps.items():
            if SCENARIO_ID_RE.fullmatch(sid) is None:
                continue
            with self._lock:
                cached = self._cache.get(sid)
            if cached is None or cached[0] != stamp:
                cached = (stamp, parse_score(self.store.read_score(sid)))
                with self._lock:
                    self._cache[sid] = cached
            if cached[1] is not None and cached[1].scenario_id == sid:
                found.append(cached[1])
        with self._lock:
            for gone in set(self._cache) - set(stamps):
                del self._cache[gone]
        return found

    def board(self, tenant_id: str, track: str | None = None, limit: int = 100,
              own: str | None = None, offset: int = 0) -> dict[str, Any]:
        """Best score per subject in one tenant (ties: earlier completion first), plus stats:
        `limit` entries from rank `offset` + 1 (`more` says whether others rank below them,
        `next_offset` is the `offset` of the next page), and `own`'s entry after them when
        it is not among them (a learner always finds their own). Without `offset` a board
        of more than the largest `limit` had entries nobody could read."""
        rows = [r for r in self.rows() if r.tenant_id == tenant_id
                and (track is None or r.track == track)]
        best: dict[str, ScoreRow] = {}
        attempts: dict[str, int] = {}
        for r in rows:
            attempts[r.subject] = attempts.get(r.subject, 0) + 1
            cur = best.get(r.subject)
            if cur is None or (r.score, _neg(r.completed_at)) > (cur.score, _neg(cur.completed_at)):
                best[r.subject] = r
        ranked = sorted(best.values(), key=lambda r: (-r.score, r.completed_at, r.subject))
        end = offset + limit
        shown = list(enumerate(ranked))[offset:end]
        shown += [(i, r) for i, r in enumerate(ranked)  # after the page, wherever it ranks
                  if own is not None and r.subject == own and not offset <= i < end]
        entries = [{"rank": i + 1, "subject": r.subject, "best_score": r.score,
                    "passed": r.passed, "total": r.total, "scenario_id": r.scenario_id,
                    "track": r.track, "completed_at": r.completed_at,
                    "attempts": attempts[r.subject]} for i, r in shown]
        scores = [r.score for r in rows]
        stats = {"scored_scenarios": len(rows), "subjects": len(best),
                 "mean_score": round(math.fsum(scores) / len(scores), 6) if scores else None,
                 "perfect_scores": sum(1 for s in scores if s >= 1.0)}
        return {"tenant_id": tenant_id, "track": track, "entries": entries,
                "more": len(ranked) > end,
                "next_offset": end if len(ranked) > end else None, "stats": stats}


PSEUDONYM_DOMAIN = b"forge leaderboard pseudonym\0"


def as_seen_by(board: dict[str, Any], subject: str, key: bytes) -> dict[str, Any]:
    """``board`` as the learner ``subject`` sees it: their own entry as it is (marked
    ``you``), everyone else's under a pseudonym (``learner-`` and 10 hex of an HMAC with
    ``key`` over tenant and subject: the same while ``key`` is, and no one can reverse it),
    without their lab id or when they finished (a classmate who knew when Alice finished
    would have found her pseudonym; review CE). Review CD: every learner of an
    organisation read the account id (often an e-mail address), best score and lab of each
    of its learners."""
    tenant = str(board["tenant_id"]).encode()
    entries = []
    for entry in board["entries"]:
        if entry["subject"] == subject:
            entries.append({**entry, "you": True})
            continue
        mac = hmac.new(key, PSEUDONYM_DOMAIN + tenant + b"\0" + entry["subject"].encode(),
                       hashlib.sha256).hexdigest()
        entries.append({k: v for k, v in entry.items()
                        if k not in ("scenario_id", "completed_at")}
                       | {"subject": "learner-" + mac[:10], "you": False})
    return {**board, "entries": entries}


def _neg(text: str) -> tuple[int, ...]:
    """Sort key that prefers earlier timestamps when compared with `>`."""
    return tuple(-ord(c) for c in text)
